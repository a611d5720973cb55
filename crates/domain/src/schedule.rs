//! A host's practice session (the queue consultation app's schedule).
//!
//! ```text
//! UPCOMING ──start──▶ ONLINE ──end──▶ COMPLETED
//!                       ▲                │
//!                       └────start───────┘  (restart after an interruption)
//! ```
//! `start` on `ONLINE` and `end` on `COMPLETED` are no-ops; `end` on
//! `UPCOMING` is refused (there is nothing to end).

use chrono::{NaiveDate, NaiveTime};

use crate::audit::AuditAction;
use crate::identity::UserId;
use crate::ids::ScheduleId;
use crate::time::Timestamp;
use crate::transition::{Status, Transition};

/// Why a schedule or queue command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// Not the caller's schedule or entry; the caller must not learn it exists.
    #[error("not found")]
    NotYours,
    #[error("{0}")]
    BadInput(&'static str),
    /// The current state does not allow it (409).
    #[error("{0}")]
    Illegal(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScheduleStatus {
    Upcoming,
    Online,
    Completed,
}

impl Status for ScheduleStatus {
    const ALL: &'static [Self] = &[Self::Upcoming, Self::Online, Self::Completed];

    fn as_str(self) -> &'static str {
        match self {
            Self::Upcoming => "UPCOMING",
            Self::Online => "ONLINE",
            Self::Completed => "COMPLETED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScheduleCommand {
    Start,
    End,
}

impl ScheduleCommand {
    pub const ALL: &'static [Self] = &[Self::Start, Self::End];

    pub fn action(self) -> AuditAction {
        match self {
            Self::Start => AuditAction::ScheduleStart,
            Self::End => AuditAction::ScheduleEnd,
        }
    }
}

/// When a schedule takes place, as the client wrote it (validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `HH:MM` or `HH:MM:SS`.
    pub start_time: String,
    pub end_time: String,
}

impl Slot {
    /// Checks the formats and that the slot ends after it starts.
    pub fn parse(date: &str, start_time: &str, end_time: &str) -> Result<Self, QueueError> {
        NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map_err(|_| QueueError::BadInput("date must be YYYY-MM-DD"))?;
        let start = parse_time(start_time)
            .ok_or(QueueError::BadInput("startTime must be HH:MM or HH:MM:SS"))?;
        let end = parse_time(end_time)
            .ok_or(QueueError::BadInput("endTime must be HH:MM or HH:MM:SS"))?;
        if end <= start {
            return Err(QueueError::BadInput("endTime must be after startTime"));
        }
        Ok(Self {
            date: date.to_owned(),
            start_time: start_time.to_owned(),
            end_time: end_time.to_owned(),
        })
    }
}

fn parse_time(raw: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(raw, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(raw, "%H:%M"))
        .ok()
        .filter(|_| raw.len() == 5 || raw.len() == 8)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub id: ScheduleId,
    pub host_id: UserId,
    pub slot: Slot,
    pub status: ScheduleStatus,
    pub created_at: Timestamp,
}

impl Schedule {
    pub fn create(id: ScheduleId, host_id: UserId, slot: Slot, now: Timestamp) -> Self {
        Self {
            id,
            host_id,
            slot,
            status: ScheduleStatus::Upcoming,
            created_at: now,
        }
    }

    pub fn is_owned_by(&self, user: &UserId) -> bool {
        &self.host_id == user
    }

    /// Whether guests may (still) be in its queue.
    pub fn is_open(&self) -> bool {
        self.status != ScheduleStatus::Completed
    }

    /// The owner's command. `Ok(None)` is an accepted no-op.
    pub fn handle(
        &mut self,
        actor: &UserId,
        command: ScheduleCommand,
    ) -> Result<Option<Transition<ScheduleStatus>>, QueueError> {
        if !self.is_owned_by(actor) {
            return Err(QueueError::NotYours);
        }
        use ScheduleCommand as C;
        use ScheduleStatus as S;
        let to = match (self.status, command) {
            (S::Upcoming | S::Completed, C::Start) => S::Online,
            (S::Online, C::End) => S::Completed,
            (S::Online, C::Start) | (S::Completed, C::End) => return Ok(None),
            (S::Upcoming, C::End) => {
                return Err(QueueError::Illegal(
                    "a schedule that has not started cannot end",
                ));
            }
        };
        let from = self.status;
        self.status = to;
        Ok(Some(Transition::new(from, to)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn schedule(status: ScheduleStatus) -> Schedule {
        let mut s = Schedule::create(
            ScheduleId::new("s1"),
            UserId::new("doc").unwrap(),
            Slot::parse("2026-11-21", "09:00", "17:00").unwrap(),
            chrono::Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap(),
        );
        s.status = status;
        s
    }

    #[test]
    fn every_status_and_command() {
        use ScheduleCommand as C;
        use ScheduleStatus as S;
        let table = [
            (S::Upcoming, C::Start, Ok(Some(S::Online))),
            (S::Upcoming, C::End, Err(())),
            (S::Online, C::Start, Ok(None)),
            (S::Online, C::End, Ok(Some(S::Completed))),
            (S::Completed, C::Start, Ok(Some(S::Online))),
            (S::Completed, C::End, Ok(None)),
        ];
        assert_eq!(table.len(), S::ALL.len() * C::ALL.len());
        let owner = UserId::new("doc").unwrap();
        for (from, cmd, expected) in table {
            let mut s = schedule(from);
            let got = s.handle(&owner, cmd);
            match expected {
                Ok(Some(to)) => {
                    assert_eq!(got, Ok(Some(Transition::new(from, to))), "{from:?} {cmd:?}");
                    assert_eq!(s.status, to);
                }
                Ok(None) => {
                    assert_eq!(got, Ok(None), "{from:?} {cmd:?}");
                    assert_eq!(s.status, from);
                }
                Err(()) => {
                    assert!(
                        matches!(got, Err(QueueError::Illegal(_))),
                        "{from:?} {cmd:?}"
                    );
                    assert_eq!(s.status, from);
                }
            }
            // Nobody else may drive it, in any state.
            let mut s = schedule(from);
            assert_eq!(
                s.handle(&UserId::new("other").unwrap(), cmd),
                Err(QueueError::NotYours)
            );
            assert_eq!(s.status, from);
        }
    }

    #[test]
    fn slots_are_validated() {
        assert!(Slot::parse("2026-11-21", "09:00:00", "09:30:00").is_ok());
        for (d, s, e) in [
            ("21/11/2026", "09:00", "10:00"),
            ("2026-02-30", "09:00", "10:00"),
            ("2026-11-21", "9:00", "10:00"),
            ("2026-11-21", "09:00", "25:00"),
            ("2026-11-21", "10:00", "09:00"),
            ("2026-11-21", "10:00", "10:00"),
            ("", "", ""),
        ] {
            assert!(
                matches!(Slot::parse(d, s, e), Err(QueueError::BadInput(_))),
                "{d} {s} {e}"
            );
        }
    }
}
