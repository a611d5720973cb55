//! CONTRACT §5 end to end (the direct call app): a patient calls a doctor directly,
//! with real sockets and real HTTP, on SQLite and (with `TEST_DATABASE_URL`)
//! PostgreSQL.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);
const START: &str = "/api/call-sessions/start";

/// The fields §5 promises in the envelope and in `call_invitation`.
const SNAKE_FIELDS: &[&str] = &[
    "appointment_id",
    "call_session_id",
    "call_type",
    "status",
    "doctor_id",
    "patient_id",
    "room_id",
    "expires_at",
];

async fn call_post(app: &TestApp, call: &str, action: &str, token: &str) -> (u16, Value) {
    app.post(
        &format!("/api/call-sessions/{call}/{action}"),
        token,
        json!({}),
    )
    .await
}

fn is_iso_millis(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    s.len() == 24 && s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

#[tokio::test]
async fn the_talk_now_flow_of_seed_000() {
    let app = TestApp::spawn().await;
    // the direct call app's doctor ids are numbers.
    let doctor_token = app.token("123", "doctor");
    let patient_token = app.token("p1", "patient");
    let mut doctor = app.connect(&doctor_token).await;
    let mut patient = app.connect(&patient_token).await;
    let mut bystanders = vec![
        app.connect(&app.token("d2", "doctor")).await,
        app.connect(&app.token("p2", "patient")).await,
    ];

    // Exactly the seed's request body.
    let (status, body) = app
        .post(
            START,
            &patient_token,
            json!({
                "call_type": "voice",
                "appointment_id": "direct_session_1234567890",
                "doctor_id": 123
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], true);
    let call = body["data"].clone();
    for field in SNAKE_FIELDS {
        assert!(
            call.get(field).is_some_and(|v| !v.is_null()),
            "{field} missing: {call}"
        );
    }
    assert_eq!(call["appointment_id"], "direct_session_1234567890");
    assert_eq!(call["call_type"], "voice");
    assert_eq!(call["status"], "INVITED");
    assert_eq!(call["doctor_id"], "123");
    assert_eq!(call["patient_id"], "p1");
    assert_eq!(call["patient_name"], "patient p1");
    assert_eq!(
        call["doctor_name"],
        Value::Null,
        "not known before the doctor acts"
    );
    assert!(is_iso_millis(&call["expires_at"]), "{call}");
    // §4's spelling rides along for clients of the queue flow.
    assert_eq!(call["callSessionId"], call["call_session_id"]);
    assert_eq!(call["appointmentId"], call["appointment_id"]);
    let cid = call["call_session_id"].as_str().unwrap().to_owned();
    let expires = chrono::DateTime::parse_from_rfc3339(call["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let created = chrono::DateTime::parse_from_rfc3339(call["created_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert_eq!(expires - created, 60_000, "the default TTL");

    // The doctor is invited with the same fields; the caller is not.
    let invitation = doctor.expect_event("call_invitation").await;
    for field in SNAKE_FIELDS {
        assert_eq!(invitation[0][field], call[field], "{field}");
    }
    patient.expect_no_event("call_invitation", QUIET).await;
    // The doctor's poll sees it too.
    let (status, body) = app.get("/api/pending-invitation", &doctor_token).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["call_session_id"], cid.as_str());
    let (_, body) = app.get("/api/pending-invitation", &patient_token).await;
    assert_eq!(body["data"], Value::Null, "the caller is not invited");

    // A retry by the caller returns the same live call (200), not a second one.
    let (status, body) = app
        .post(
            START,
            &patient_token,
            json!({ "appointment_id": "direct_session_1234567890", "doctor_id": "123" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["call_session_id"], cid.as_str());
    doctor.expect_no_event("call_invitation", QUIET).await;
    // Another caller under the same key is refused.
    let other = app.token("p3", "patient");
    let (status, body) = app
        .post(
            START,
            &other,
            json!({ "appointment_id": "direct_session_1234567890", "doctor_id": "123" }),
        )
        .await;
    assert_eq!((status, &body["error"]["code"]), (409, &json!("conflict")));

    // The doctor confirms; both hear it, with both spellings.
    let (status, body) = call_post(&app, &cid, "confirm", &doctor_token).await;
    assert_eq!(
        (status, &body["data"]["status"]),
        (200, &json!("CONFIRMED"))
    );
    for side in [&mut doctor, &mut patient] {
        let ev = side.expect_event("call_confirmed").await;
        assert_eq!(ev[0]["call_session_id"], cid.as_str());
        assert_eq!(ev[0]["appointment_id"], "direct_session_1234567890");
        assert_eq!(ev[0]["status"], "CONFIRMED");
        assert_eq!(ev[0]["doctor_name"], "doctor 123");
        assert_eq!(ev[0]["doctorName"], "doctor 123");
    }
    // Peer ids, activate (both sides send it), end.
    let (status, _) = app
        .post(
            &format!("/api/call-sessions/{cid}/set-peer-id"),
            &patient_token,
            json!({ "peerId": "peer-p1" }),
        )
        .await;
    assert_eq!(status, 200);
    let ev = doctor.expect_event("peer_id_updated").await;
    assert_eq!(ev[0]["peerId"], "peer-p1");
    for token in [&doctor_token, &patient_token] {
        let (status, body) = call_post(&app, &cid, "activate", token).await;
        assert_eq!((status, &body["data"]["status"]), (200, &json!("ACTIVE")));
    }
    assert_eq!(
        patient.expect_event("call_activated").await[0]["status"],
        "ACTIVE"
    );
    let (status, body) = call_post(&app, &cid, "end", &patient_token).await;
    assert_eq!((status, &body["data"]["status"]), (200, &json!("ENDED")));
    for side in [&mut doctor, &mut patient] {
        let ev = side.expect_event("call_ended").await;
        assert!(is_iso_millis(&ev[0]["ended_at"]), "{}", ev[0]);
    }
    let (status, body) = call_post(&app, &cid, "end", &doctor_token).await;
    assert_eq!((status, &body["data"]["status"]), (200, &json!("ENDED")));
    // The caller's poll: the call, any status, with its appointment id.
    let (status, body) = app
        .get(&format!("/api/call-sessions/{cid}"), &patient_token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["appointment_id"], "direct_session_1234567890");
    let (_, body) = app.get("/api/call-sessions/status", &doctor_token).await;
    assert_eq!(body["data"]["call_session_id"], cid.as_str());
    assert_eq!(
        app.audit_actions(&cid).await,
        ["call.start", "call.confirm", "call.activate", "call.end"]
    );
    // Once over, the key is free: the same appointment can be called again.
    let (status, body) = app
        .post(
            START,
            &patient_token,
            json!({ "appointment_id": "direct_session_1234567890", "doctor_id": 123 }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_ne!(body["data"]["call_session_id"], cid.as_str());
    for b in &mut bystanders {
        b.expect_silence(QUIET).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_missing_appointment_id_is_generated_and_a_double_tap_is_one_call() {
    let app = TestApp::spawn().await;
    let patient = app.token("p1", "patient");
    for (n, appointment) in [json!(null), json!(""), Value::Null]
        .into_iter()
        .enumerate()
    {
        let doctor = format!("d{n}");
        let mut body = json!({ "doctor_id": doctor, "call_type": "video" });
        if n < 2 {
            body["appointment_id"] = appointment;
        }
        let before = chrono::Utc::now().timestamp_millis();
        let (status, answer) = app.post(START, &patient, body.clone()).await;
        assert_eq!(status, 201, "{answer}");
        let data = &answer["data"];
        let key = data["appointment_id"].as_str().unwrap().to_owned();
        let ms: i64 = key
            .strip_prefix("direct_session_")
            .unwrap_or_else(|| panic!("{key}"))
            .parse()
            .unwrap();
        assert!(ms >= before - 1 && ms <= chrono::Utc::now().timestamp_millis());
        // Without a key, the caller's live call to this doctor is the answer.
        let (status, again) = app.post(START, &patient, body).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["data"]["call_session_id"], data["call_session_id"]);
        assert_eq!(again["data"]["appointment_id"], key.as_str());
        let cid = data["call_session_id"].as_str().unwrap();
        let (status, _) = call_post(&app, cid, "cancel", &patient).await;
        assert_eq!(status, 200);
    }
    // An integer key is a key like any other.
    let (status, body) = app
        .post(
            START,
            &patient,
            json!({ "doctor_id": "d9", "appointment_id": 42 }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["appointment_id"], "42");
    assert_eq!(body["data"]["call_type"], "video");
    app.stop().await;
}

#[tokio::test]
async fn decline_cancel_and_expiry_follow_the_one_machine() {
    let app = TestApp::spawn().await;
    let doctor_token = app.token("d1", "doctor");
    let patient_token = app.token("p1", "patient");
    let mut doctor = app.connect(&doctor_token).await;
    let mut patient = app.connect(&patient_token).await;
    let start = |key: &str| json!({ "doctor_id": "d1", "appointment_id": key });

    // Decline: the doctor only.
    let (_, body) = app.post(START, &patient_token, start("a1")).await;
    let cid = body["data"]["id"].as_str().unwrap().to_owned();
    let (status, body) = call_post(&app, &cid, "decline", &patient_token).await;
    assert_eq!((status, &body["error"]["code"]), (403, &json!("forbidden")));
    let (status, body) = call_post(&app, &cid, "cancel", &doctor_token).await;
    assert_eq!((status, &body["error"]["code"]), (403, &json!("forbidden")));
    let (status, body) = call_post(&app, &cid, "decline", &doctor_token).await;
    assert_eq!((status, &body["data"]["status"]), (200, &json!("DECLINED")));
    for side in [&mut doctor, &mut patient] {
        assert_eq!(side.expect_event("call_declined").await[0]["id"], cid);
    }

    // Cancel: the caller only.
    let (_, body) = app.post(START, &patient_token, start("a2")).await;
    let cid = body["data"]["id"].as_str().unwrap().to_owned();
    let (status, body) = call_post(&app, &cid, "cancel", &patient_token).await;
    assert_eq!(
        (status, &body["data"]["status"]),
        (200, &json!("CANCELLED"))
    );
    for side in [&mut doctor, &mut patient] {
        assert_eq!(side.expect_event("call_cancelled").await[0]["id"], cid);
    }

    // Expiry: both told once, never early; a late answer is 410.
    let (_, body) = app.post(START, &patient_token, start("a3")).await;
    let cid = body["data"]["id"].as_str().unwrap().to_owned();
    let deadline =
        chrono::DateTime::parse_from_rfc3339(body["data"]["expires_at"].as_str().unwrap()).unwrap();
    // The default 60 s TTL, jumped over on the server's clock.
    app.advance(Duration::from_secs(59));
    doctor.expect_no_event("call_expired", QUIET).await;
    app.advance(Duration::from_secs(1));
    for side in [&mut doctor, &mut patient] {
        let ev = side.expect_event("call_expired").await;
        assert_eq!(ev[0]["id"], cid);
        let at = chrono::DateTime::parse_from_rfc3339(ev[0]["ended_at"].as_str().unwrap()).unwrap();
        assert!(at >= deadline, "expired at {at}, deadline {deadline}");
    }
    let (status, body) = call_post(&app, &cid, "confirm", &doctor_token).await;
    assert_eq!((status, &body["error"]["code"]), (410, &json!("expired")));
    doctor.expect_no_event("call_expired", QUIET).await;
    assert_eq!(app.audit_actions(&cid).await, ["call.start", "call.expire"]);
    app.stop().await;
}

#[tokio::test]
async fn refusals_are_clear_and_change_nothing() {
    let app = TestApp::spawn().await;
    let patient = app.token("p1", "patient");
    let doctor = app.token("d1", "doctor");
    let admin = app.token("root", "admin");
    let bad_bodies = [
        json!({}),
        json!({ "doctor_id": null }),
        json!({ "doctor_id": "" }),
        json!({ "doctor_id": 1.5 }),
        json!({ "doctor_id": ["d1"] }),
        json!({ "doctor_id": "p1" }),
        json!({ "doctor_id": "d1", "call_type": "fax" }),
        json!({ "doctor_id": "d1", "call_type": 1 }),
        json!({ "doctor_id": "d1", "appointment_id": {} }),
        json!({ "doctor_id": "d1", "appointment_id": true }),
        json!({ "doctor_id": "d1", "appointment_id": 1.5 }),
        json!({ "doctor_id": "d1", "appointment_id": "x".repeat(257) }),
        json!({ "doctor_id": "d1", "appointment_id": "a\u{0}b" }),
        json!({ "doctor_id": "x".repeat(257) }),
    ];
    for body in bad_bodies {
        let (status, answer) = app.post(START, &patient, body.clone()).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (400, &json!("bad_request")),
            "{body}"
        );
    }
    for raw in ["{", "[]", "\"x\"", "{\"doctor_id\":}"] {
        let (status, _) = app.post_raw(START, &patient, raw).await;
        assert_eq!(status, 400, "{raw}");
    }
    // Wrong role class, and no token.
    for token in [&doctor, &admin] {
        let (status, body) = app.post(START, token, json!({ "doctor_id": "d1" })).await;
        assert_eq!((status, &body["error"]["code"]), (403, &json!("forbidden")));
    }
    let (status, _) = app.post(START, "", json!({ "doctor_id": "d1" })).await;
    assert_eq!(status, 401);
    let (_, body) = app.get("/api/pending-invitation", &doctor).await;
    assert_eq!(body["data"], Value::Null, "nothing was created");

    // A busy doctor, a busy caller.
    let (status, body) = app
        .post(
            START,
            &patient,
            json!({ "doctor_id": "d1", "appointment_id": "a1" }),
        )
        .await;
    assert_eq!(status, 201);
    let cid = body["data"]["id"].as_str().unwrap().to_owned();
    let p2 = app.token("p2", "patient");
    let (status, body) = app.post(START, &p2, json!({ "doctor_id": "d1" })).await;
    assert_eq!((status, &body["error"]["code"]), (409, &json!("conflict")));
    let (status, body) = app
        .post(
            START,
            &patient,
            json!({ "doctor_id": "d2", "appointment_id": "a2" }),
        )
        .await;
    assert_eq!((status, &body["error"]["code"]), (409, &json!("conflict")));
    // Strangers: not found, whatever they try.
    let eve = app.token("eve", "doctor");
    for action in ["confirm", "decline", "cancel", "activate", "end"] {
        let (status, _) = call_post(&app, &cid, action, &eve).await;
        assert_eq!(status, 404, "{action}");
    }
    let (status, _) = app.get(&format!("/api/call-sessions/{cid}"), &eve).await;
    assert_eq!(status, 404);
    // A direct call is a call, not a tutoring session.
    let (status, _) = app.get(&format!("/api/sessions/{cid}"), &patient).await;
    assert_eq!(status, 404);
    assert_eq!(app.audit_actions(&cid).await, ["call.start"]);
    let (_, body) = app
        .get(&format!("/api/call-sessions/{cid}"), &patient)
        .await;
    assert_eq!(body["data"]["status"], "INVITED");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_starts_make_one_call() {
    let app = TestApp::spawn().await;
    let mut doctor = app.connect(&app.token("d1", "doctor")).await;
    let patient = app.token("p1", "patient");
    let body = json!({ "doctor_id": "d1", "appointment_id": "appt-1" });
    // One caller tapping ten times at once: one call, the rest get it back.
    let answers = app.post_many(10, START, &patient, body.clone()).await;
    let created: Vec<_> = answers.iter().filter(|(s, _)| *s == 201).collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    let cid = &created[0].1["data"]["id"];
    for (status, answer) in &answers {
        assert!(*status == 201 || *status == 200, "{answer}");
        assert_eq!(&answer["data"]["id"], cid);
    }
    // One invitation. (The connect-time resync may deliver the same one a
    // second time if it ran after the call was made: same call, same id.)
    let invited: std::collections::HashSet<String> = doctor
        .drain(QUIET)
        .await
        .into_iter()
        .filter(|(n, _)| n == "call_invitation")
        .map(|(_, args)| args[0]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(invited.len(), 1, "{invited:?}");
    assert!(invited.contains(cid.as_str().unwrap()));
    // Eight other callers racing for one free doctor: one wins.
    let (status, _) = call_post(&app, cid.as_str().unwrap(), "cancel", &patient).await;
    assert_eq!(status, 200);
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let token = app.token(&format!("racer{n}"), "patient");
            let (http, url) = (app.http.clone(), app.url(START));
            tokio::spawn(async move {
                let res = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({ "doctor_id": "d1", "appointment_id": format!("k{n}") }))
                    .send()
                    .await
                    .unwrap();
                res.status().as_u16()
            })
        })
        .collect();
    let mut statuses = vec![];
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);

    // Twenty unrelated calls without a key, at once: keys generated in the
    // same millisecond must not refuse anyone.
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let token = app.token(&format!("solo{n}"), "patient");
            let (http, url) = (app.http.clone(), app.url(START));
            tokio::spawn(async move {
                let res = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({ "doctor_id": format!("doc{n}") }))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                (status, res.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut keys = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 201, "{body}");
        keys.insert(body["data"]["appointment_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(keys.len(), 20, "every generated key is distinct");
    app.stop().await;
}

#[tokio::test]
async fn an_invitation_survives_a_restart_and_expires_once() {
    let mut app = TestApp::spawn().await;
    let doctor_token = app.token("d1", "doctor");
    let patient_token = app.token("p1", "patient");
    let (status, body) = app
        .post(START, &patient_token, json!({ "doctor_id": "d1" }))
        .await;
    assert_eq!(status, 201);
    let cid = body["data"]["id"].as_str().unwrap().to_owned();
    app.restart().await;
    let mut doctor = app.connect(&doctor_token).await;
    let mut patient = app.connect(&patient_token).await;
    // The doctor reconnects before the deadline: invited again.
    let again = doctor.expect_event("call_invitation").await;
    assert_eq!(again[0]["call_session_id"], cid.as_str());
    assert!(again[0]["appointment_id"].is_string());
    app.advance(Duration::from_secs(60));
    for side in [&mut doctor, &mut patient] {
        assert_eq!(side.expect_event("call_expired").await[0]["id"], cid);
    }
    app.advance(Duration::from_secs(60));
    doctor.expect_no_event("call_expired", QUIET).await;
    assert_eq!(app.audit_actions(&cid).await, ["call.start", "call.expire"]);
    app.stop().await;
}
