//! Schedules (CONTRACT §4, the queue consultation): a host creates one,
//! starts it (guests hear `doctor_online`) and ends it (`doctor_offline`;
//! the waiting entries close).

use std::sync::Arc;

use consultd_domain::{
    AuditAction, Principal, Schedule, ScheduleCommand, ScheduleId, ScheduleStatus, Slot, Status,
};
use consultd_persistence::{QueueRepo, ScheduleRepo};

use super::context::{Context, new_id, require_host};
use super::journal::Subject;
use super::outbox::{Audience, Notices, Push};
use super::queue_rows::{apply_entry, queue_snapshot};
use super::views::{DoctorPresence, ScheduleView};
use crate::error::ApiError;

#[derive(Clone)]
pub struct ScheduleService {
    ctx: Arc<Context>,
}

impl ScheduleService {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    pub async fn create_schedule(
        &self,
        p: &Principal,
        date: &str,
        start_time: &str,
        end_time: &str,
    ) -> Result<ScheduleView, ApiError> {
        require_host(p)?;
        let slot = Slot::parse(date, start_time, end_time)?;
        let now = self.ctx.now();
        let schedule = Schedule::create(ScheduleId::new(new_id()), p.user_id.clone(), slot, now);
        let txn = self.ctx.db.begin_write().await?;
        ScheduleRepo.insert(&*txn, &schedule).await?;
        let to = schedule.status.as_str();
        let (action, subject) = (AuditAction::ScheduleCreate, Subject::Schedule(&schedule));
        let journal = &self.ctx.journal;
        journal
            .created(&*txn, Some(p), action, subject, to, now)
            .await?;
        self.ctx.commit(txn).await?;
        Ok(ScheduleView::from(&schedule))
    }

    /// Any signed-in user may read a schedule (guests need it to queue).
    pub async fn schedule(&self, id: &str) -> Result<ScheduleView, ApiError> {
        let s = ScheduleRepo
            .find(self.ctx.db.conn(), id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such schedule"))?;
        Ok(ScheduleView::from(&s))
    }

    /// The caller's own schedules (hosts), newest first.
    pub async fn my_schedules(&self, p: &Principal) -> Result<Vec<ScheduleView>, ApiError> {
        require_host(p)?;
        let list = ScheduleRepo
            .for_host(self.ctx.db.conn(), p.user_id.as_str(), 200)
            .await?;
        Ok(list.iter().map(ScheduleView::from).collect())
    }

    /// `start` / `end` by the owner. Ending closes the waiting entries.
    pub async fn schedule_command(
        &self,
        p: &Principal,
        id: &str,
        command: ScheduleCommand,
    ) -> Result<ScheduleView, ApiError> {
        require_host(p)?;
        let now = self.ctx.now();
        let txn = self.ctx.db.begin_write().await?;
        let mut schedule = ScheduleRepo
            .lock(&*txn, id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such schedule"))?;
        let Some(t) = schedule.handle(&p.user_id, command)? else {
            return Ok(ScheduleView::from(&schedule));
        };
        ScheduleRepo.apply(&*txn, &schedule.id, t, now).await?;
        let journal = &self.ctx.journal;
        let subject = Subject::Schedule(&schedule);
        journal
            .moved(&*txn, Some(p), command.action(), subject, t, now)
            .await?;
        let mut closed = 0;
        if t.to == ScheduleStatus::Completed {
            for mut entry in QueueRepo.list(&*txn, id).await? {
                if let Some(change) = entry.close() {
                    apply_entry(&*txn, journal, Some(p), &entry, &change, now).await?;
                    closed += 1;
                }
            }
        }
        let news = if closed > 0 {
            Some(queue_snapshot(&*txn, &schedule).await?)
        } else {
            None
        };
        let presence = DoctorPresence {
            doctor_id: schedule.host_id.to_string(),
            schedule_id: schedule.id.to_string(),
        };
        let notices = match t.to {
            ScheduleStatus::Online => {
                Notices::new().push(Audience::Guests, Push::DoctorOnline(presence))
            }
            ScheduleStatus::Completed => {
                let offline = Notices::new().push(Audience::Guests, Push::DoctorOffline(presence));
                match news {
                    Some(news) => news.after(offline),
                    None => offline,
                }
            }
            ScheduleStatus::Upcoming => Notices::new(),
        };
        self.ctx
            .commit_with(txn, schedule.id.as_str(), notices)
            .await?;
        Ok(ScheduleView::from(&schedule))
    }
}
