//! Abandoned calls (CONTRACT §4): a call in progress, or an accepted
//! tutoring session, whose two participants have had no connection at all
//! for the abandon time ends as `ENDED` with end reason `abandoned`, so
//! neither stays blocked from every later call. On the server's clock: the
//! tests jump over the abandon time instead of waiting for it (20 s here,
//! under the 60 s invitation TTL, so an invitation stays what it is).

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

const START: &str = "/api/call-sessions/start";
const ABANDON_SECS: u64 = 20;
/// Long enough for a sweep that is due to have run and committed.
const SETTLE: Duration = Duration::from_millis(300);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(|c| c.abandon_secs = ABANDON_SECS).await
}

struct Call {
    id: String,
    doctor: String,
    patient: String,
}

/// A direct call the doctor has confirmed (both sides acted over REST).
async fn confirmed_call(app: &TestApp, doctor: &str, patient: &str) -> Call {
    let patient = app.token(patient, "patient");
    let (status, body) = app
        .post(START, &patient, json!({ "doctor_id": doctor }))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["call_session_id"].as_str().unwrap().to_owned();
    let doctor = app.token(doctor, "doctor");
    let (status, body) = app
        .post(
            &format!("/api/call-sessions/{id}/confirm"),
            &doctor,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    Call {
        id,
        doctor,
        patient,
    }
}

/// The call as an admin sees it (an admin's request is nobody's sign of life).
async fn call_now(app: &TestApp, id: &str) -> Value {
    let (status, body) = app
        .get(
            &format!("/api/call-sessions/{id}"),
            &app.token("root", "admin"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// Waits until the call is `status`, up to `within`; how long it took.
async fn until_status(app: &TestApp, id: &str, status: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if call_now(app, id).await["status"] == status {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "not {status} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_call_nobody_is_connected_to_ends_as_abandoned() {
    let app = spawn().await;
    let call = confirmed_call(&app, "ab-d1", "ab-p1").await;
    let doctor = app.connect(&call.doctor).await;
    let patient = app.connect(&call.patient).await;
    let (status, body) = app
        .post(
            &format!("/api/call-sessions/{}/activate", call.id),
            &call.patient,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Connected sockets keep it going, whether or not they joined its room.
    app.advance(secs(3 * ABANDON_SECS));
    tokio::time::sleep(SETTLE).await;
    assert_eq!(call_now(&app, &call.id).await["status"], "ACTIVE");
    doctor.disconnect();
    patient.disconnect();
    tokio::time::sleep(SETTLE).await;
    app.advance(secs(ABANDON_SECS - 2));
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        call_now(&app, &call.id).await["status"],
        "ACTIVE",
        "not before the abandon time"
    );
    // Past it by a sweep's period (a quarter of the time), so the next
    // sweep is due at once.
    app.advance(secs(ABANDON_SECS / 4));
    until_status(&app, &call.id, "ENDED", secs(5)).await;
    let ended = call_now(&app, &call.id).await;
    assert_eq!(ended["endReason"], "abandoned", "{ended}");
    assert!(ended["endedAt"].is_string());
    let actions = app.audit_actions(&call.id).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "call.abandon").count(),
        1,
        "one audit row: {actions:?}"
    );
    // Both are free again: a new call between them starts.
    let (status, body) = app
        .post(START, &call.patient, json!({ "doctor_id": "ab-d1" }))
        .await;
    assert_eq!(status, 201, "{body}");
    // An invitation is not a call in progress: it only expires.
    app.advance(secs(ABANDON_SECS + 5));
    tokio::time::sleep(SETTLE).await;
    let fresh = body["data"]["call_session_id"].as_str().unwrap();
    assert_eq!(call_now(&app, fresh).await["status"], "INVITED");
    app.stop().await;
}

#[tokio::test]
async fn a_reconnect_or_rest_polling_within_the_time_keeps_a_call() {
    let app = spawn().await;
    let call = confirmed_call(&app, "ab-d2", "ab-p2").await;
    // Both tabs close; the doctor comes back within the time and stays.
    let d = app.connect(&call.doctor).await;
    d.disconnect();
    tokio::time::sleep(SETTLE).await;
    app.advance(secs(ABANDON_SECS / 2));
    let d = app.connect(&call.doctor).await;
    app.advance(secs(2 * ABANDON_SECS));
    tokio::time::sleep(SETTLE).await;
    assert_eq!(call_now(&app, &call.id).await["status"], "CONFIRMED");
    d.disconnect();
    tokio::time::sleep(SETTLE).await;
    // No socket at all, but the patient polls REST (a blocked websocket).
    for _ in 0..4 {
        app.advance(secs(ABANDON_SECS / 2));
        let (status, _) = app
            .get(&format!("/api/call-sessions/{}", call.id), &call.patient)
            .await;
        assert_eq!(status, 200);
        tokio::time::sleep(SETTLE).await;
    }
    assert_eq!(call_now(&app, &call.id).await["status"], "CONFIRMED");
    // The polling stops: now it goes.
    app.advance(secs(ABANDON_SECS));
    until_status(&app, &call.id, "ENDED", secs(5)).await;
    assert_eq!(call_now(&app, &call.id).await["endReason"], "abandoned");
    app.stop().await;
}

#[tokio::test]
async fn an_abandoned_queue_call_closes_its_entry() {
    let app = spawn().await;
    let doctor = app.token("ab-d3", "doctor");
    let patient = app.token("ab-p3", "patient");
    let (_, s) = app
        .post(
            "/api/schedules",
            &doctor,
            json!({ "date": "2026-12-02", "startTime": "09:00", "endTime": "17:00" }),
        )
        .await;
    let schedule = id_of(&s["data"]);
    app.post(
        &format!("/api/schedules/{schedule}/start"),
        &doctor,
        json!({}),
    )
    .await;
    let (_, e) = app
        .post(
            &format!("/api/schedules/{schedule}/join-queue"),
            &patient,
            json!({}),
        )
        .await;
    let entry = id_of(&e["data"]);
    app.post(
        &format!("/api/queue/{entry}/toggle-ready"),
        &patient,
        json!({ "isReady": true }),
    )
    .await;
    let (status, c) = app
        .post(
            &format!("/api/schedules/{schedule}/start-call"),
            &doctor,
            json!({ "patientId": "ab-p3" }),
        )
        .await;
    assert_eq!(status, 201, "{c}");
    let call = id_of(&c["data"]);
    let (status, _) = app
        .post(
            &format!("/api/call-sessions/{call}/confirm"),
            &patient,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    app.advance(secs(ABANDON_SECS));
    until_status(&app, &call, "ENDED", secs(5)).await;
    let (_, entry_now) = app
        .get(&format!("/api/queue/{entry}"), &app.token("root", "admin"))
        .await;
    assert_eq!(entry_now["data"]["status"], "DONE", "{entry_now}");
    assert!(
        app.audit_actions(&call)
            .await
            .contains(&"call.abandon".to_owned())
    );
    app.stop().await;
}

#[tokio::test]
async fn an_accepted_tutoring_session_nobody_attends_ends_as_abandoned() {
    let app = spawn().await;
    let learner = app.token("ab-l", "learner");
    let teacher = app.token("ab-t", "teacher");
    let (status, s) = app
        .post(
            "/api/sessions",
            &learner,
            json!({ "host_id": "ab-t", "skill_name": "Chess" }),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    let id = id_of(&s["data"]);
    let (status, _) = app
        .post(&format!("/api/sessions/{id}/accept"), &teacher, json!({}))
        .await;
    assert_eq!(status, 200);
    let admin = app.token("root", "admin");
    app.advance(secs(ABANDON_SECS));
    let started = Instant::now();
    let session = loop {
        let (_, body) = app.get(&format!("/api/sessions/{id}"), &admin).await;
        if body["data"]["status"] == "ended" {
            break body["data"].clone();
        }
        assert!(started.elapsed() < secs(5), "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(session["end_reason"], "abandoned", "{session}");
    assert_eq!(
        app.audit_actions(&id).await.last().map(String::as_str),
        Some("session.abandon")
    );
    app.stop().await;
}

#[tokio::test]
async fn the_clock_starts_again_at_a_restart() {
    let mut app = spawn().await;
    let call = confirmed_call(&app, "ab-d4", "ab-p4").await;
    // Gone for most of the time before the restart...
    app.advance(secs(ABANDON_SECS - 2));
    app.restart().await;
    app.advance(secs(ABANDON_SECS - 2));
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        call_now(&app, &call.id).await["status"],
        "CONFIRMED",
        "presence is not persisted: everyone gets the whole time after a start"
    );
    // Past it by a sweep's period (a quarter of the time), so the next
    // sweep is due at once.
    app.advance(secs(ABANDON_SECS / 4));
    until_status(&app, &call.id, "ENDED", secs(5)).await;
    app.stop().await;
}
