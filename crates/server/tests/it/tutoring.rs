//! CONTRACT §6 end to end (the tutoring request app): a learner asks a teacher for a
//! session, with real sockets and real HTTP, on SQLite and (with
//! `TEST_DATABASE_URL`) PostgreSQL.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);

struct School {
    app: TestApp,
    teacher: String,
    learner: String,
}

impl School {
    async fn open_with(tweak: impl FnOnce(&mut consultd_server::config::Config)) -> Self {
        let app = TestApp::spawn_with(tweak).await;
        Self {
            teacher: app.token("t1", "teacher"),
            learner: app.token("l1", "learner"),
            app,
        }
    }

    async fn open() -> Self {
        Self::open_with(|_| {}).await
    }

    /// The learner asks t1 for a session; returns the row.
    async fn request(&self) -> Value {
        let (status, body) = self
            .app
            .post(
                "/api/sessions",
                &self.learner,
                json!({ "host_id": "t1", "skill_name": "Piano" }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"].clone()
    }

    async fn act(&self, id: &str, action: &str, token: &str) -> (u16, Value) {
        self.app
            .post(&format!("/api/sessions/{id}/{action}"), token, json!({}))
            .await
    }

    async fn pending(&self, token: &str) -> Vec<Value> {
        let (status, body) = self.app.get("/api/sessions?status=pending", token).await;
        assert_eq!(status, 200, "{body}");
        body["data"].as_array().unwrap().clone()
    }

    async fn audit(&self, id: &str) -> Vec<String> {
        self.app.audit_actions(id).await
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

#[tokio::test]
async fn the_call_flow_of_seed_003() {
    let s = School::open().await;
    let mut teacher = s.app.connect(&s.teacher).await;
    let mut learner = s.app.connect(&s.learner).await;
    let mut bystanders = vec![
        s.app.connect(&s.app.token("t2", "teacher")).await,
        s.app.connect(&s.app.token("l2", "learner")).await,
    ];

    // 1–4: the request, and the teacher's incoming notification (the row).
    let row = s.request().await;
    let id = id_of(&row);
    assert_eq!(row["status"], "pending");
    assert_eq!(row["host_id"], "t1");
    assert_eq!(row["learner_id"], "l1");
    assert_eq!(row["skill_name"], "Piano");
    for absent in ["room_id", "started_at", "ended_at", "end_reason"] {
        assert_eq!(row[absent], Value::Null, "{absent}");
    }
    assert_eq!(
        millis(&row["expires_at"]) - millis(&row["created_at"]),
        60_000
    );
    assert_eq!(teacher.expect_event("session:incoming").await[0], row);
    assert_eq!(s.pending(&s.teacher).await, std::slice::from_ref(&row));

    // 5–8: accept; the learner hears `session:accepted`, both `session:updated`.
    let (status, body) = s.act(&id, "accept", &s.teacher).await;
    assert_eq!(status, 200, "{body}");
    let accepted = body["data"].clone();
    assert_eq!(accepted["status"], "accepted");
    // The teacher's name is known from their own token once they act.
    assert_eq!(row["host_name"], Value::Null);
    assert_eq!(accepted["host_name"], "teacher t1");
    assert_eq!(accepted["learner_name"], "learner l1");
    let room = accepted["room_id"].as_str().unwrap().to_owned();
    assert!(room.starts_with("room-"), "{room}");
    assert!(millis(&accepted["started_at"]) >= millis(&row["created_at"]));
    assert_eq!(learner.expect_event("session:accepted").await[0], accepted);
    for side in [&mut teacher, &mut learner] {
        assert_eq!(side.expect_event("session:updated").await[0], accepted);
    }
    teacher.expect_no_event("session:accepted", QUIET).await;
    assert!(s.pending(&s.teacher).await.is_empty());
    let (status, body) = s.app.get(&format!("/api/sessions/{id}"), &s.learner).await;
    assert_eq!((status, &body["data"]), (200, &accepted));

    // 13–16: either ends it; both see it ended.
    let (status, body) = s.act(&id, "end", &s.learner).await;
    assert_eq!(status, 200, "{body}");
    let ended = body["data"].clone();
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["end_reason"], "ended");
    assert_eq!(ended["room_id"], room.as_str());
    assert!(ended["ended_at"].is_string());
    for side in [&mut teacher, &mut learner] {
        assert_eq!(side.expect_event("session:updated").await[0], ended);
    }
    // Both sides press "End Call": the second is a no-op.
    let (status, body) = s.act(&id, "end", &s.teacher).await;
    assert_eq!((status, &body["data"]), (200, &ended));
    teacher.expect_no_event("session:updated", QUIET).await;
    assert_eq!(
        s.audit(&id).await,
        ["session.create", "session.accept", "session.end"]
    );
    for b in &mut bystanders {
        b.expect_silence(QUIET).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn reject_and_cancel_end_a_request_with_their_reason() {
    let s = School::open().await;
    let mut teacher = s.app.connect(&s.teacher).await;
    let mut learner = s.app.connect(&s.learner).await;
    let id = id_of(&s.request().await);
    let (status, body) = s.act(&id, "reject", &s.teacher).await;
    assert_eq!(status, 200, "{body}");
    for side in [&mut teacher, &mut learner] {
        let ev = side.expect_event("session:updated").await;
        assert_eq!(ev[0]["status"], "rejected");
        assert_eq!(ev[0]["end_reason"], "rejected");
        assert_eq!(ev[0]["room_id"], Value::Null);
    }
    let id = id_of(&s.request().await);
    let (status, body) = s.act(&id, "cancel", &s.learner).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "cancelled");
    assert_eq!(body["data"]["end_reason"], "cancelled");
    for side in [&mut teacher, &mut learner] {
        assert_eq!(
            side.expect_event("session:updated").await[0]["end_reason"],
            "cancelled"
        );
    }
    // Several requests may wait for one teacher at once (the tutoring request app's list).
    let a = id_of(&s.request().await);
    let other = s.app.token("l2", "learner");
    let (status, body) = s
        .app
        .post(
            "/api/sessions",
            &other,
            json!({ "hostId": "t1", "skillName": "Chess" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let b = id_of(&body["data"]);
    let pending: Vec<String> = s.pending(&s.teacher).await.iter().map(id_of).collect();
    assert_eq!(pending, [b.clone(), a.clone()], "newest first");
    // A learner's list is their own.
    let mine: Vec<String> = s.pending(&other).await.iter().map(id_of).collect();
    assert_eq!(mine, [b]);
    let (_, body) = s.app.get("/api/sessions", &s.learner).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 3);
    s.stop().await;
}

#[tokio::test]
async fn refusals_are_clear_and_change_nothing() {
    let s = School::open().await;
    let admin = s.app.token("root", "admin");
    for token in [&s.teacher, &admin] {
        let (status, body) = s
            .app
            .post(
                "/api/sessions",
                token,
                json!({ "host_id": "t1", "skill_name": "Piano" }),
            )
            .await;
        assert_eq!((status, &body["error"]["code"]), (403, &json!("forbidden")));
    }
    for bad in [
        json!({}),
        json!({ "host_id": "t1" }),
        json!({ "skill_name": "Piano" }),
        json!({ "host_id": "t1", "skill_name": "  " }),
        json!({ "host_id": "t1", "skill_name": 7 }),
        json!({ "host_id": "t1", "skill_name": "x".repeat(201) }),
        json!({ "host_id": "l1", "skill_name": "Piano" }),
        json!({ "host_id": true, "skill_name": "Piano" }),
    ] {
        let (status, body) = s.app.post("/api/sessions", &s.learner, bad.clone()).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("bad_request")),
            "{bad}"
        );
    }
    let (status, _) = s.app.post_raw("/api/sessions", &s.learner, "{").await;
    assert_eq!(status, 400);
    let (status, _) = s.app.get("/api/sessions?status=bogus", &s.teacher).await;
    assert_eq!(status, 400);

    let id = id_of(&s.request().await);
    let eve = s.app.token("eve", "teacher");
    let refusals = [
        ("accept", &s.learner, 403, "forbidden"),
        ("reject", &s.learner, 403, "forbidden"),
        ("cancel", &s.teacher, 403, "forbidden"),
        ("end", &s.teacher, 409, "conflict"),
        ("end", &s.learner, 409, "conflict"),
        ("accept", &eve, 404, "not_found"),
        ("reject", &eve, 404, "not_found"),
        ("end", &eve, 404, "not_found"),
    ];
    for (action, token, status, code) in refusals {
        let (got, body) = s.act(&id, action, token).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{action}"
        );
    }
    let (status, _) = s.app.get(&format!("/api/sessions/{id}"), &eve).await;
    assert_eq!(status, 404);
    // A session is not a call: the call routes do not see it, and back.
    let (status, _) = s
        .app
        .get(&format!("/api/call-sessions/{id}"), &s.learner)
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .app
        .post(
            &format!("/api/call-sessions/{id}/confirm"),
            &s.teacher,
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
    let (_, body) = s.app.get("/api/pending-invitation", &s.teacher).await;
    assert_eq!(body["data"], Value::Null);
    for path in ["/api/sessions/nope", "/api/sessions/nope/accept"] {
        let (status, _) = s.app.get(path, &s.teacher).await;
        assert_eq!(status, 404, "{path}");
    }
    assert_eq!(s.audit(&id).await, ["session.create"]);

    // After a decision, the other decisions conflict.
    let (status, _) = s.act(&id, "reject", &s.teacher).await;
    assert_eq!(status, 200);
    for (action, token) in [("accept", &s.teacher), ("cancel", &s.learner)] {
        let (status, body) = s.act(&id, action, token).await;
        assert_eq!((status, &body["error"]["code"]), (409, &json!("conflict")));
    }
    assert_eq!(s.audit(&id).await, ["session.create", "session.reject"]);
    s.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_accepts_have_one_winner() {
    let s = School::open().await;
    let mut learner = s.app.connect(&s.learner).await;
    let id = id_of(&s.request().await);
    let answers = s
        .app
        .post_many(
            20,
            &format!("/api/sessions/{id}/accept"),
            &s.teacher,
            json!({}),
        )
        .await;
    let mut statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    statuses.sort_unstable();
    let mut expected = vec![200];
    expected.extend([409; 19]);
    assert_eq!(statuses, expected, "{answers:?}");
    for (status, body) in &answers {
        if *status == 409 {
            assert_eq!(body["error"]["code"], "conflict");
        }
    }
    let accepted = learner
        .drain(QUIET)
        .await
        .into_iter()
        .filter(|(n, _)| n == "session:accepted")
        .count();
    assert_eq!(accepted, 1);
    assert_eq!(s.audit(&id).await, ["session.create", "session.accept"]);
    s.stop().await;
}

#[tokio::test]
async fn an_unanswered_request_is_cancelled_as_expired_and_both_are_told() {
    let s = School::open().await;
    let mut teacher = s.app.connect(&s.teacher).await;
    let mut learner = s.app.connect(&s.learner).await;
    let row = s.request().await;
    let id = id_of(&row);
    // The default 60 s TTL, jumped over on the server's clock.
    s.app.advance(Duration::from_secs(59));
    teacher.expect_no_event("session:updated", QUIET).await;
    s.app.advance(Duration::from_secs(1));
    for side in [&mut teacher, &mut learner] {
        let ev = side.expect_event("session:updated").await;
        assert_eq!(ev[0]["id"], id.as_str());
        assert_eq!(ev[0]["status"], "cancelled");
        assert_eq!(ev[0]["end_reason"], "expired");
        assert!(millis(&ev[0]["ended_at"]) >= millis(&row["expires_at"]));
    }
    let (status, body) = s.act(&id, "accept", &s.teacher).await;
    assert_eq!((status, &body["error"]["code"]), (410, &json!("expired")));
    assert!(s.pending(&s.teacher).await.is_empty());
    teacher.expect_no_event("session:updated", QUIET).await;
    assert_eq!(s.audit(&id).await, ["session.create", "session.expire"]);
    s.stop().await;
}

#[tokio::test]
async fn a_request_pending_across_a_restart_expires_once() {
    let mut s = School::open().await;
    let row = s.request().await;
    let id = id_of(&row);
    s.app.restart().await;
    let mut teacher = s.app.connect(&s.teacher).await;
    let mut learner = s.app.connect(&s.learner).await;
    // The teacher comes back before the deadline: the request is shown again.
    assert_eq!(teacher.expect_event("session:incoming").await[0], row);
    s.app.advance(Duration::from_secs(60));
    for side in [&mut teacher, &mut learner] {
        assert_eq!(
            side.expect_event("session:updated").await[0]["end_reason"],
            "expired"
        );
    }
    s.app.advance(Duration::from_secs(60));
    teacher.expect_no_event("session:updated", QUIET).await;
    // A deadline that passed while the server was down fires at start, once.
    let id2 = id_of(&s.request().await);
    s.app.halt().await;
    s.app.advance(Duration::from_secs(90));
    s.app.start_again().await;
    let mut status = Value::Null;
    for _ in 0..50 {
        let (_, body) = s.app.get(&format!("/api/sessions/{id2}"), &s.learner).await;
        status = body["data"]["end_reason"].clone();
        if status == "expired" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "expired");
    s.app.restart().await;
    tokio::time::sleep(QUIET).await;
    for id in [&id, &id2] {
        assert_eq!(s.audit(id).await, ["session.create", "session.expire"]);
    }
    let mut teacher = s.app.connect(&s.teacher).await;
    teacher.expect_no_event("session:incoming", QUIET).await;
    s.stop().await;
}

/// The connect resync reads only what a user may be owed (`socket::owed`):
/// a teacher who was told everything and answered it is sent nothing on
/// reconnect, and a request that arrives after that, while they are away,
/// is sent on the next connect again: a mark cleared by an empty resync
/// comes back with the next push.
#[tokio::test]
async fn a_request_made_after_an_empty_resync_is_resynced_on_the_next_connect() {
    let s = School::open().await;
    let first = id_of(&s.request().await);
    let mut teacher = s.app.connect(&s.teacher).await;
    assert_eq!(
        id_of(&teacher.expect_event("session:incoming").await[0]),
        first
    );
    assert_eq!(s.act(&first, "reject", &s.teacher).await.0, 200);
    drop(teacher);
    // Nothing owed: nothing sent (and the mark is gone).
    let mut again = s.app.connect(&s.teacher).await;
    again.expect_no_event("session:incoming", QUIET).await;
    drop(again);
    let second = id_of(&s.request().await);
    let mut back = s.app.connect(&s.teacher).await;
    assert_eq!(
        id_of(&back.expect_event("session:incoming").await[0]),
        second
    );
    back.expect_no_event("session:incoming", QUIET).await;
    // A learner is never sent a teacher's requests, marked or not.
    let mut learner = s.app.connect(&s.learner).await;
    learner.expect_no_event("session:incoming", QUIET).await;
    s.stop().await;
}
