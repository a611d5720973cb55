//! The call, tutoring and chat machines without websockets: a real database,
//! a frozen clock, and a transport fake that, at every push, reads the row
//! the push is about from a second connection. A push sent before its
//! transaction committed would find the old status there.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use consultd_domain::{
    CallCommand, CallId, ChatId, Principal, Role, RoleClass, RoleMap, Status, TutoringCommand,
    UserId,
};
use consultd_persistence::testing::TestDatabase;
use consultd_persistence::{CallRepo, ChatRepo, Db};

use super::outbox::{Audience, Outbox, Push, RoomControl};
use super::{ChatCommand, Context, Services, Settings};
use crate::clock::{Clock, ManualClock};
use crate::timers::{self, Timer};

/// One push or room operation, with the status its row had in the database
/// at that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Push {
        event: &'static str,
        to: Audience,
        stored: Option<&'static str>,
    },
    CloseCall(CallId),
    ChatEnded(ChatId),
}

struct Witness {
    db: Db,
    seen: Mutex<Vec<Seen>>,
}

impl Witness {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *crate::sync::lock(&self.seen))
    }

    fn events(&self) -> Vec<(&'static str, Option<&'static str>)> {
        self.take()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Push { event, stored, .. } => Some((event, stored)),
                _ => None,
            })
            .collect()
    }

    /// The stored status of the call or chat session a push is about.
    async fn stored(&self, push: &Push) -> Option<&'static str> {
        let conn = self.db.conn();
        let body = serde_json::to_value(push).ok()?;
        let id = body["id"].as_str()?;
        match push {
            Push::ChatStatus(_) | Push::ChatMessage(_) => {
                let session = ChatRepo.find(conn, id).await.ok()??;
                Some(session.status.as_str())
            }
            _ => {
                let record = CallRepo.find(conn, id).await.ok()??;
                Some(record.call.status.as_str())
            }
        }
    }
}

#[async_trait]
impl Outbox for Witness {
    async fn push(&self, to: Audience, push: Push) {
        let stored = self.stored(&push).await;
        let event = push.event();
        crate::sync::lock(&self.seen).push(Seen::Push { event, to, stored });
    }

    async fn push_json(&self, _: Audience, event: &str, _: serde_json::Value) {
        // Only a bus listener delivers JSON; services hand over typed pushes.
        panic!("a service pushed `{event}` as JSON");
    }
}

impl RoomControl for Witness {
    fn close_call(&self, call: &CallId) {
        crate::sync::lock(&self.seen).push(Seen::CloseCall(call.clone()));
    }

    fn chat_ended(&self, chat: &ChatId) {
        crate::sync::lock(&self.seen).push(Seen::ChatEnded(chat.clone()));
    }
}

struct Harness {
    services: Services,
    witness: Arc<Witness>,
    clock: ManualClock,
    timer_task: tokio::task::JoinHandle<()>,
    _db: TestDatabase,
}

impl Harness {
    async fn new() -> Self {
        let test_db = TestDatabase::from_env().await.expect("test database");
        let db = Db::connect(&test_db.url).await.expect("connect");
        db.migrate_up().await.expect("migrate");
        let witness = Arc::new(Witness {
            db: db.clone(),
            seen: Mutex::default(),
        });
        let clock = ManualClock::frozen(chrono::Utc::now());
        let (timer, rx) = Timer::channel();
        let ctx = Context::new(
            db,
            super::Ports {
                outbox: witness.clone(),
                rooms: witness.clone(),
                peers: Arc::new(super::peers::NoBroker),
            },
            timer,
            Arc::new(clock.clone()),
            None,
            super::Journal::default(),
        );
        let settings = Settings {
            invite_ttl: chrono::Duration::seconds(60),
            session_ttl: chrono::Duration::seconds(60),
            chat_duration: consultd_domain::ChatDuration::from_secs_clamped(1800),
        };
        let services = Services::new(ctx, settings);
        let timer_task = tokio::spawn(timers::run(
            rx,
            services.clone(),
            Vec::new(),
            Arc::new(clock.clone()),
        ));
        Self {
            services,
            witness,
            clock,
            timer_task,
            _db: test_db,
        }
    }

    /// Waits (real time, briefly) until the timer has pushed `n` events.
    async fn until_pushed(&self, n: usize) -> Vec<(&'static str, Option<&'static str>)> {
        let mut got = Vec::new();
        for _ in 0..200 {
            got.extend(self.witness.events());
            if got.len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        got
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.timer_task.abort();
    }
}

fn user(id: &str, role: &str) -> Principal {
    let (role, class): (Role, RoleClass) = RoleMap::default().resolve(role).expect("known role");
    Principal {
        user_id: UserId::new(id).expect("user id"),
        role,
        class,
        name: None,
    }
}

#[tokio::test]
async fn a_call_is_announced_after_each_commit_and_its_room_closed_at_the_end() {
    let h = Harness::new().await;
    let (doctor, patient) = (user("d1", "doctor"), user("p1", "patient"));
    let (call, created) = h
        .services
        .direct
        .start_direct_call(&patient, "d1", None, super::CallType::Video)
        .await
        .expect("start");
    assert!(created);
    let id = call.id.to_string();
    assert_eq!(h.witness.events(), [("call_invitation", Some("INVITED"))]);

    let calls = &h.services.calls;
    calls
        .call_command(&doctor, &id, CallCommand::Confirm)
        .await
        .expect("confirm");
    calls
        .call_command(&patient, &id, CallCommand::Activate)
        .await
        .expect("activate");
    calls
        .call_command(&patient, &id, CallCommand::End)
        .await
        .expect("end");
    let seen = h.witness.take();
    let pushes: Vec<_> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Push { event, stored, .. } => Some((*event, *stored)),
            _ => None,
        })
        .collect();
    assert_eq!(
        pushes,
        [
            ("call_confirmed", Some("CONFIRMED")),
            ("call_activated", Some("ACTIVE")),
            ("call_ended", Some("ENDED")),
        ]
    );
    // The room closes once the end is stored, before the end is announced.
    let close = seen.iter().position(|s| matches!(s, Seen::CloseCall(_)));
    let ended = seen.iter().position(|s| {
        matches!(
            s,
            Seen::Push {
                event: "call_ended",
                ..
            }
        )
    });
    assert!(close.is_some() && close < ended, "{seen:?}");

    // An illegal move is refused and announces nothing.
    let refused = calls
        .call_command(&doctor, &id, CallCommand::Confirm)
        .await
        .expect_err("confirm after end");
    assert_eq!(refused.status().as_u16(), 409);
    assert!(h.witness.take().is_empty());
}

#[tokio::test]
async fn an_invitation_expires_on_the_clock_after_the_expiry_is_stored() {
    let h = Harness::new().await;
    let patient = user("p1", "patient");
    let (call, _) = h
        .services
        .direct
        .start_direct_call(&patient, "d1", None, super::CallType::Voice)
        .await
        .expect("start");
    h.witness.take();
    h.clock.advance(Duration::from_secs(59));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(h.witness.take().is_empty(), "not due yet");
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(h.until_pushed(1).await, [("call_expired", Some("EXPIRED"))]);
    let record = CallRepo
        .find(h.services.calls.ctx.db.conn(), call.id.as_str())
        .await
        .expect("read")
        .expect("row");
    assert_eq!(record.call.ended_at, Some(h.clock.now()));
}

#[tokio::test]
async fn a_tutoring_request_is_announced_after_each_commit() {
    let h = Harness::new().await;
    let (teacher, learner) = (user("t1", "teacher"), user("l1", "learner"));
    let skill = consultd_domain::SkillName::parse("Piano").expect("skill");
    let session = h
        .services
        .tutoring
        .create_session(&learner, "t1", skill)
        .await
        .expect("create");
    assert_eq!(h.witness.events(), [("session:incoming", Some("INVITED"))]);
    let id = session.id.to_string();
    let tutoring = &h.services.tutoring;
    tutoring
        .session_command(&teacher, &id, TutoringCommand::Accept)
        .await
        .expect("accept");
    let accepted = h.witness.events();
    assert!(!accepted.is_empty());
    assert!(
        accepted.iter().all(|(_, s)| *s == Some("CONFIRMED")),
        "{accepted:?}"
    );
    // Two accepts: the second finds it taken and announces nothing.
    let again = tutoring
        .session_command(&teacher, &id, TutoringCommand::Reject)
        .await;
    assert!(again.is_err());
    assert!(h.witness.take().is_empty());
}

#[tokio::test]
async fn a_chat_session_is_announced_after_each_commit() {
    let h = Harness::new().await;
    let (mechanic, customer) = (user("m1", "mechanic"), user("c1", "customer"));
    let chat = &h.services.chat;
    let session = chat
        .create_chat(&customer, None, None)
        .await
        .expect("create");
    let id = session.id.clone();
    chat.chat_command(&mechanic, &id, ChatCommand::Accept)
        .await
        .expect("accept");
    assert_eq!(h.witness.events(), [("session:status", Some("waiting"))]);
    let both = [customer.user_id.clone(), mechanic.user_id.clone()];
    chat.chat_presence(&id, &both).await.expect("both present");
    assert_eq!(h.witness.events(), [("session:status", Some("live"))]);

    // Thirty minutes later the timer ends it: stored, room told, announced.
    h.clock.advance(Duration::from_secs(30 * 60));
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen.extend(h.witness.take());
        if seen.iter().any(|s| matches!(s, Seen::Push { .. })) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        seen,
        [
            Seen::ChatEnded(ChatId::new(&id)),
            Seen::Push {
                event: "session:status",
                to: Audience::Users(both.to_vec()),
                stored: Some("ended"),
            },
        ]
    );
}
