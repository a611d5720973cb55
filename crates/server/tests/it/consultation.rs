//! CONTRACT §4 end to end: the seed-001 flow with real sockets and real
//! HTTP, its refusals, its races, and expiry across restarts. Every test
//! runs on SQLite, and on PostgreSQL when `TEST_DATABASE_URL` is set.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);

/// A doctor with an online schedule and one patient, both with tokens.
struct Clinic {
    app: TestApp,
    doctor: String,
    patient: String,
    admin: String,
    schedule: String,
}

impl Clinic {
    async fn open() -> Self {
        Self::open_with(|_| {}).await
    }

    async fn open_with(tweak: impl FnOnce(&mut consultd_server::config::Config)) -> Self {
        let app = TestApp::spawn_with(tweak).await;
        let doctor = app.token("d1", "doctor");
        let patient = app.token("p1", "patient");
        let admin = app.token("root", "admin");
        let (status, body) = app
            .post(
                "/api/schedules",
                &doctor,
                json!({ "date": "2026-11-21", "startTime": "09:00", "endTime": "17:00" }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let schedule = body["data"]["id"].as_str().unwrap().to_owned();
        let (status, body) = app
            .post(
                &format!("/api/schedules/{schedule}/start"),
                &doctor,
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        Self {
            app,
            doctor,
            patient,
            admin,
            schedule,
        }
    }

    fn path(&self, tail: &str) -> String {
        format!("/api/schedules/{}/{tail}", self.schedule)
    }

    /// Joins and marks ready; returns the entry id.
    async fn ready(&self, token: &str) -> String {
        let (status, body) = self
            .app
            .post(&self.path("join-queue"), token, json!({}))
            .await;
        assert_eq!(status, 201, "{body}");
        let entry = body["data"]["id"].as_str().unwrap().to_owned();
        let (status, body) = self
            .app
            .post(
                &format!("/api/queue/{entry}/toggle-ready"),
                token,
                json!({ "isReady": true }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["status"], "READY");
        entry
    }

    /// Invites `patient_id`; returns the call.
    async fn invite(&self, patient_id: &str) -> Value {
        let (status, body) = self
            .app
            .post(
                &self.path("start-call"),
                &self.doctor,
                json!({ "patientId": patient_id }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"].clone()
    }

    async fn call_post(&self, call: &str, action: &str, token: &str) -> (u16, Value) {
        self.app
            .post(
                &format!("/api/call-sessions/{call}/{action}"),
                token,
                json!({}),
            )
            .await
    }

    async fn call_status(&self, call: &str) -> String {
        let (status, body) = self
            .app
            .get(&format!("/api/call-sessions/{call}"), &self.admin)
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"]["status"].as_str().unwrap().to_owned()
    }

    async fn entry_status(&self, entry: &str) -> String {
        let (status, body) = self
            .app
            .get(&format!("/api/queue/{entry}"), &self.admin)
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"]["status"].as_str().unwrap().to_owned()
    }

    async fn audit(&self, entity: &str) -> Vec<Value> {
        let (status, body) = self
            .app
            .get(&format!("/api/audit-logs?entityId={entity}"), &self.admin)
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"].as_array().unwrap().clone()
    }

    /// `n` identical POSTs at once; their statuses.
    async fn concurrently(&self, n: usize, path: &str, token: &str, body: Value) -> Vec<u16> {
        let answers = self.app.post_many(n, path, token, body).await;
        answers.into_iter().map(|(status, _)| status).collect()
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

fn transitions(rows: &[Value]) -> Vec<(String, Option<String>, String)> {
    rows.iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["from"].as_str().map(str::to_owned),
                r["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_nine_phase_flow_of_seed_001() {
    let app = TestApp::spawn().await;
    let doctor_token = app.token("d1", "doctor");
    let patient_token = app.token("p1", "patient");
    let admin = app.token("root", "admin");
    let mut doctor = app.connect(&doctor_token).await;
    let mut patient = app.connect(&patient_token).await;
    // Bystanders: another patient and another doctor see nothing of this call.
    let mut other_patient = app.connect(&app.token("p2", "patient")).await;
    let mut other_doctor = app.connect(&app.token("d2", "doctor")).await;

    // Phase 1: setup. The schedule comes online; every guest hears it.
    let (status, body) = app
        .post(
            "/api/schedules",
            &doctor_token,
            json!({ "date": "2026-11-21", "start_time": "09:00", "end_time": "12:30" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let schedule = body["data"].clone();
    assert_eq!(schedule["status"], "UPCOMING");
    assert_eq!(schedule["doctorId"], "d1");
    assert_eq!(schedule["startTime"], "09:00");
    let sid = schedule["id"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post(
            &format!("/api/schedules/{sid}/start"),
            &doctor_token,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["data"]["status"].clone()),
        (200, json!("ONLINE"))
    );
    for guest in [&mut patient, &mut other_patient] {
        let online = guest.expect_event("doctor_online").await;
        assert_eq!(online[0], json!({ "doctorId": "d1", "scheduleId": sid }));
    }

    // Phase 2: the patient queues; the doctor's queue shows them.
    let (status, body) = app
        .post(
            &format!("/api/schedules/{sid}/join-queue"),
            &patient_token,
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let entry = body["data"].clone();
    assert_eq!(entry["status"], "WAITING");
    assert_eq!(entry["position"], 1);
    assert_eq!(entry["patientId"], "p1");
    assert_eq!(entry["patientName"], "patient p1");
    let eid = entry["id"].as_str().unwrap().to_owned();
    let update = doctor.expect_event("queue_updated").await;
    assert_eq!(update[0]["scheduleId"], sid);
    assert_eq!(update[0]["queue"][0]["status"], "WAITING");

    // Phase 3: ready.
    let (status, body) = app
        .post(
            &format!("/api/queue/{eid}/toggle-ready"),
            &patient_token,
            json!({ "isReady": true }),
        )
        .await;
    assert_eq!(
        (status, body["data"]["status"].clone()),
        (200, json!("READY"))
    );
    let update = doctor.expect_event("queue_updated").await;
    assert_eq!(update[0]["queue"][0]["status"], "READY");

    // Phase 4: the invitation reaches the patient only.
    let (status, body) = app
        .post(
            &format!("/api/schedules/{sid}/start-call"),
            &doctor_token,
            json!({ "patientId": "p1" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let call = body["data"].clone();
    let cid = call["id"].as_str().unwrap().to_owned();
    assert_eq!(call["callSessionId"], cid);
    assert_eq!(call["status"], "INVITED");
    assert_eq!(call["doctorId"], "d1");
    assert_eq!(call["doctorName"], "doctor d1");
    assert_eq!(call["patientId"], "p1");
    assert_eq!(call["scheduleId"], sid);
    assert_eq!(call["queueEntryId"], eid);
    assert_eq!(call["callType"], "video");
    assert!(call["roomId"].is_string());
    for key in [
        "appointmentId",
        "doctorPeerId",
        "patientPeerId",
        "confirmedAt",
        "endedAt",
    ] {
        assert!(
            call.get(key).is_some_and(Value::is_null),
            "{key} present and null"
        );
    }
    let created =
        chrono::DateTime::parse_from_rfc3339(call["createdAt"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(call["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_seconds(), 60, "default TTL");
    assert!(call["expiresAt"].as_str().unwrap().ends_with('Z'));
    let invitation = patient.expect_event("call_invitation").await;
    assert_eq!(invitation[0], call);
    // The doctor polls; the patient polls: the same call.
    let (_, body) = app.get("/api/call-sessions/status", &doctor_token).await;
    assert_eq!(body["data"]["id"], cid);
    assert_eq!(body["data"]["status"], "INVITED");
    let (_, body) = app.get("/api/pending-invitation", &patient_token).await;
    assert_eq!(body["data"], call);

    // Phase 5: the patient accepts; both hear it; the entry is IN_CALL.
    let (status, body) = app
        .post(
            &format!("/api/call-sessions/{cid}/confirm"),
            &patient_token,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["data"]["status"].clone()),
        (200, json!("CONFIRMED"))
    );
    assert!(body["data"]["confirmedAt"].is_string());
    for side in [&mut doctor, &mut patient] {
        let confirmed = side.expect_event("call_confirmed").await;
        assert_eq!(confirmed[0]["id"], cid);
        assert_eq!(confirmed[0]["status"], "CONFIRMED");
    }
    let (_, body) = app.get(&format!("/api/queue/{eid}"), &patient_token).await;
    assert_eq!(body["data"]["status"], "IN_CALL");
    let (_, body) = app.get("/api/pending-invitation", &patient_token).await;
    assert_eq!(body["data"], Value::Null);

    // Phase 6: both load the call room.
    for token in [&doctor_token, &patient_token] {
        let (status, body) = app.get(&format!("/api/call-sessions/{cid}"), token).await;
        assert_eq!(
            (status, body["data"]["status"].clone()),
            (200, json!("CONFIRMED"))
        );
    }

    // Phase 8: peer ids, each told to the other side only.
    let (status, _) = app
        .post(
            &format!("/api/call-sessions/{cid}/set-peer-id"),
            &doctor_token,
            json!({ "peerId": "abc123" }),
        )
        .await;
    assert_eq!(status, 200);
    let update = patient.expect_event("peer_id_updated").await;
    assert_eq!(
        update[0],
        json!({ "callSessionId": cid, "role": "doctor", "peerId": "abc123" })
    );
    let (status, body) = app
        .post(
            &format!("/api/call-sessions/{cid}/set-peer-id"),
            &patient_token,
            json!({ "peer_id": "xyz789" }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["doctorPeerId"], "abc123");
    assert_eq!(body["data"]["patientPeerId"], "xyz789");
    let update = doctor.expect_event("peer_id_updated").await;
    assert_eq!(
        update[0],
        json!({ "callSessionId": cid, "role": "patient", "peerId": "xyz789" })
    );

    // Phase 9: both activate (the second is a no-op, announced once).
    for token in [&doctor_token, &patient_token] {
        let (status, body) = app
            .post(
                &format!("/api/call-sessions/{cid}/activate"),
                token,
                json!({}),
            )
            .await;
        assert_eq!(
            (status, body["data"]["status"].clone()),
            (200, json!("ACTIVE"))
        );
    }
    for side in [&mut doctor, &mut patient] {
        assert_eq!(
            side.expect_event("call_activated").await[0]["status"],
            "ACTIVE"
        );
        side.expect_no_event("call_activated", QUIET).await;
    }

    // Termination: the patient ends; both hear it once; the entry is DONE.
    for token in [&patient_token, &doctor_token] {
        let (status, body) = app
            .post(&format!("/api/call-sessions/{cid}/end"), token, json!({}))
            .await;
        assert_eq!(
            (status, body["data"]["status"].clone()),
            (200, json!("ENDED"))
        );
        assert!(body["data"]["endedAt"].is_string());
    }
    for side in [&mut doctor, &mut patient] {
        assert_eq!(side.expect_event("call_ended").await[0]["status"], "ENDED");
        side.expect_no_event("call_ended", QUIET).await;
    }
    let (_, body) = app.get(&format!("/api/queue/{eid}"), &patient_token).await;
    assert_eq!(body["data"]["status"], "DONE");

    // The audit log has every transition, with its actor.
    let (status, body) = app
        .get(&format!("/api/audit-logs?entityId={cid}"), &admin)
        .await;
    assert_eq!(status, 200);
    let rows = body["data"].as_array().unwrap();
    assert_eq!(
        transitions(rows),
        vec![
            ("call.invite".into(), None, "INVITED".into()),
            (
                "call.confirm".into(),
                Some("INVITED".into()),
                "CONFIRMED".into()
            ),
            (
                "call.activate".into(),
                Some("CONFIRMED".into()),
                "ACTIVE".into()
            ),
            ("call.end".into(), Some("ACTIVE".into()), "ENDED".into()),
        ]
    );
    let actors: Vec<&str> = rows.iter().map(|r| r["actor"].as_str().unwrap()).collect();
    assert_eq!(actors, ["d1", "p1", "d1", "p1"]);
    assert_eq!(rows[1]["actorRole"], "patient");
    assert_eq!(rows[0]["entity"], "call_session");
    let (_, body) = app
        .get(&format!("/api/audit-logs?entityId={eid}"), &admin)
        .await;
    let entry_moves: Vec<String> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["to"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        entry_moves,
        ["WAITING", "READY", "READY", "IN_CALL", "DONE"]
    );

    // Post-call: the doctor ends the practice; guests hear it.
    let (status, body) = app
        .post(
            &format!("/api/schedules/{sid}/end"),
            &doctor_token,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["data"]["status"].clone()),
        (200, json!("COMPLETED"))
    );
    assert_eq!(
        patient.expect_event("doctor_offline").await[0]["scheduleId"],
        sid
    );

    // Nobody else heard anything about this call.
    for ev in other_patient.drain(QUIET).await {
        assert!(
            ev.0 == "doctor_online" || ev.0 == "doctor_offline",
            "bystander got {ev:?}"
        );
    }
    other_doctor.expect_silence(QUIET).await;
    app.stop().await;
}

#[tokio::test]
async fn decline_returns_the_patient_to_the_queue_and_the_doctor_can_invite_the_next() {
    let c = Clinic::open().await;
    let mut doctor = c.app.connect(&c.doctor).await;
    let e1 = c.ready(&c.patient).await;
    let p2 = c.app.token("p2", "patient");
    c.ready(&p2).await;
    let call = c.invite("p1").await;
    let cid = call["id"].as_str().unwrap();
    let (status, body) = c.call_post(cid, "decline", &c.patient).await;
    assert_eq!(
        (status, body["data"]["status"].clone()),
        (200, json!("DECLINED"))
    );
    assert_eq!(
        doctor.expect_event("call_declined").await[0]["status"],
        "DECLINED"
    );
    assert_eq!(c.entry_status(&e1).await, "WAITING");
    let (_, body) = c.app.get("/api/call-sessions/status", &c.doctor).await;
    assert_eq!(body["data"]["status"], "DECLINED");
    // Declined is final; the doctor is free for the next patient.
    assert_eq!(c.call_post(cid, "confirm", &c.patient).await.0, 409);
    let next = c.invite("p2").await;
    assert_eq!(next["patientId"], "p2");
    c.stop().await;
}

#[tokio::test]
async fn the_doctor_cancels_an_invitation() {
    let c = Clinic::open().await;
    let mut patient = c.app.connect(&c.patient).await;
    let entry = c.ready(&c.patient).await;
    let cid = c.invite("p1").await["id"].as_str().unwrap().to_owned();
    assert_eq!(patient.expect_event("call_invitation").await[0]["id"], cid);
    let (status, body) = c.call_post(&cid, "cancel", &c.doctor).await;
    assert_eq!(
        (status, body["data"]["status"].clone()),
        (200, json!("CANCELLED"))
    );
    assert_eq!(patient.expect_event("call_cancelled").await[0]["id"], cid);
    assert_eq!(c.entry_status(&entry).await, "WAITING");
    // Too late to accept it; the invitation is gone from the poll too.
    assert_eq!(c.call_post(&cid, "confirm", &c.patient).await.0, 409);
    let (_, body) = c.app.get("/api/pending-invitation", &c.patient).await;
    assert_eq!(body["data"], Value::Null);
    c.stop().await;
}

#[tokio::test]
async fn an_unanswered_invitation_expires_once_at_its_deadline() {
    // The default 60 s TTL, jumped over on the server's clock.
    let c = Clinic::open().await;
    let mut doctor = c.app.connect(&c.doctor).await;
    let mut patient = c.app.connect(&c.patient).await;
    let entry = c.ready(&c.patient).await;
    let call = c.invite("p1").await;
    let cid = call["id"].as_str().unwrap().to_owned();
    let expires =
        chrono::DateTime::parse_from_rfc3339(call["expiresAt"].as_str().unwrap()).unwrap();
    c.app.advance(Duration::from_secs(59));
    doctor.expect_no_event("call_expired", QUIET).await;
    c.app.advance(Duration::from_secs(1));
    for side in [&mut doctor, &mut patient] {
        let expired = side.expect_event("call_expired").await;
        assert_eq!(expired[0]["id"], cid);
        assert_eq!(expired[0]["status"], "EXPIRED");
        let ended =
            chrono::DateTime::parse_from_rfc3339(expired[0]["endedAt"].as_str().unwrap()).unwrap();
        assert!(
            ended >= expires,
            "expired at {ended}, before its deadline {expires}"
        );
    }
    c.app.advance(Duration::from_secs(60));
    for side in [&mut doctor, &mut patient] {
        side.expect_no_event("call_expired", QUIET).await;
    }
    assert_eq!(c.entry_status(&entry).await, "WAITING");
    // Answering now is "gone".
    let (status, body) = c.call_post(&cid, "confirm", &c.patient).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (410, json!("expired"))
    );
    let expiries = c
        .audit(&cid)
        .await
        .into_iter()
        .filter(|r| r["action"] == "call.expire")
        .collect::<Vec<_>>();
    assert_eq!(expiries.len(), 1);
    assert_eq!(expiries[0]["actor"], Value::Null, "the server expired it");
    c.stop().await;
}

#[tokio::test]
async fn the_whole_flow_works_by_polling_alone() {
    let c = Clinic::open().await;
    c.ready(&c.patient).await;
    let cid = c.invite("p1").await["id"].as_str().unwrap().to_owned();
    // The patient discovers the invitation by polling.
    let (_, body) = c.app.get("/api/pending-invitation", &c.patient).await;
    assert_eq!(body["data"]["id"], cid);
    assert_eq!(c.call_post(&cid, "confirm", &c.patient).await.0, 200);
    // The doctor discovers the confirmation by polling.
    let (_, body) = c.app.get("/api/call-sessions/status", &c.doctor).await;
    assert_eq!(body["data"]["status"], "CONFIRMED");
    // Peer ids by polling the call.
    c.app
        .post(
            &format!("/api/call-sessions/{cid}/set-peer-id"),
            &c.doctor,
            json!({ "peerId": "d-peer" }),
        )
        .await;
    let (_, body) = c
        .app
        .get(&format!("/api/call-sessions/{cid}"), &c.patient)
        .await;
    assert_eq!(body["data"]["doctorPeerId"], "d-peer");
    assert_eq!(c.call_post(&cid, "activate", &c.patient).await.0, 200);
    assert_eq!(c.call_post(&cid, "end", &c.doctor).await.0, 200);
    // The patient's 3-second poll sees the end.
    let (_, body) = c
        .app
        .get(&format!("/api/call-sessions/{cid}"), &c.patient)
        .await;
    assert_eq!(body["data"]["status"], "ENDED");
    c.stop().await;
}

#[tokio::test]
async fn a_reconnecting_invitee_is_sent_the_live_invitation_again() {
    let c = Clinic::open().await;
    c.ready(&c.patient).await;
    // Invited while offline.
    let cid = c.invite("p1").await["id"].as_str().unwrap().to_owned();
    let mut tab = c.app.connect(&c.patient).await;
    assert_eq!(tab.expect_event("call_invitation").await[0]["id"], cid);
    // Over v3 (socket.io-client 2.x) too.
    let mut legacy = SioClient::connect(c.app.addr, Handshake::query(&c.patient).legacy())
        .await
        .unwrap();
    assert_eq!(legacy.expect_event("call_invitation").await[0]["id"], cid);
    // The doctor, who is not the invitee, is not sent it.
    let mut doctor = c.app.connect(&c.doctor).await;
    doctor.expect_no_event("call_invitation", QUIET).await;
    // Once answered, a reconnect brings nothing.
    assert_eq!(c.call_post(&cid, "confirm", &c.patient).await.0, 200);
    let mut later = c.app.connect(&c.patient).await;
    later.expect_no_event("call_invitation", QUIET).await;
    c.stop().await;
}

#[tokio::test]
async fn queue_order_is_join_order_and_joining_twice_returns_the_live_entry() {
    let c = Clinic::open().await;
    let mut ids = vec![];
    for n in 1..=4 {
        let token = c.app.token(&format!("q{n}"), "patient");
        let (status, body) = c.app.post(&c.path("join-queue"), &token, json!({})).await;
        assert_eq!(status, 201);
        assert_eq!(body["data"]["position"], n);
        ids.push(body["data"]["id"].clone());
        // A second join: the same entry, 200.
        let (status, again) = c.app.post(&c.path("join-queue"), &token, json!({})).await;
        assert_eq!((status, &again["data"]["id"]), (200, &body["data"]["id"]));
    }
    let (status, body) = c.app.get(&c.path("queue"), &c.doctor).await;
    assert_eq!(status, 200);
    let queue = body["data"].as_array().unwrap();
    assert_eq!(
        queue.iter().map(|e| e["id"].clone()).collect::<Vec<_>>(),
        ids
    );
    assert_eq!(
        queue
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );

    // Ending the schedule closes every waiting entry; a completed schedule takes nobody.
    let (status, _) = c.app.post(&c.path("end"), &c.doctor, json!({})).await;
    assert_eq!(status, 200);
    let (_, body) = c.app.get(&c.path("queue"), &c.doctor).await;
    assert!(
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["status"] == "DONE")
    );
    let (status, body) = c
        .app
        .post(&c.path("join-queue"), &c.patient, json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("conflict"))
    );
    // Restarting the practice reopens it.
    assert_eq!(
        c.app.post(&c.path("start"), &c.doctor, json!({})).await.0,
        200
    );
    assert_eq!(
        c.app
            .post(&c.path("join-queue"), &c.patient, json!({}))
            .await
            .0,
        201
    );
    c.stop().await;
}

#[tokio::test]
async fn the_host_resets_an_entry_after_a_call_and_not_during_one() {
    let c = Clinic::open().await;
    let entry = c.ready(&c.patient).await;
    let cid = c.invite("p1").await["id"].as_str().unwrap().to_owned();
    let reset = format!("/api/queue/{entry}/reset");
    assert_eq!(
        c.app.post(&reset, &c.doctor, json!({})).await.0,
        409,
        "invited"
    );
    c.call_post(&cid, "confirm", &c.patient).await;
    assert_eq!(
        c.app.post(&reset, &c.doctor, json!({})).await.0,
        409,
        "in call"
    );
    c.call_post(&cid, "end", &c.patient).await;
    assert_eq!(c.entry_status(&entry).await, "DONE");
    let (status, body) = c.app.post(&reset, &c.doctor, json!({})).await;
    assert_eq!(
        (status, body["data"]["status"].clone()),
        (200, json!("WAITING"))
    );
    c.stop().await;
}

/// Every refusal: the contract's code, and nothing changed.
#[tokio::test]
async fn illegal_requests_are_refused_and_change_nothing() {
    let c = Clinic::open().await;
    let entry = c.ready(&c.patient).await;
    let call = c.invite("p1").await;
    let cid = call["id"].as_str().unwrap().to_owned();
    let other_doctor = c.app.token("d2", "doctor");
    let stranger = c.app.token("p9", "patient");
    let audit_before = c.audit(&cid).await.len() + c.audit(&entry).await.len();
    let e = |tail: &str| format!("/api/queue/{entry}/{tail}");
    let k = |tail: &str| format!("/api/call-sessions/{cid}/{tail}");
    let s = |tail: &str| c.path(tail);
    let cases: Vec<(&str, String, &String, Value, u16, &str)> = vec![
        // A guest on host routes, a host on guest routes, an admin writing: 403.
        (
            "guest creates a schedule",
            "/api/schedules".into(),
            &c.patient,
            json!({"date":"2026-11-22","startTime":"09:00","endTime":"10:00"}),
            403,
            "forbidden",
        ),
        (
            "guest starts a schedule",
            s("start"),
            &c.patient,
            json!({}),
            403,
            "forbidden",
        ),
        (
            "guest ends a schedule",
            s("end"),
            &c.patient,
            json!({}),
            403,
            "forbidden",
        ),
        (
            "guest starts a call",
            s("start-call"),
            &c.patient,
            json!({"patientId":"p1"}),
            403,
            "forbidden",
        ),
        (
            "guest resets",
            e("reset"),
            &c.patient,
            json!({}),
            403,
            "forbidden",
        ),
        (
            "host joins a queue",
            s("join-queue"),
            &c.doctor,
            json!({}),
            403,
            "forbidden",
        ),
        (
            "host toggles ready",
            e("toggle-ready"),
            &c.doctor,
            json!({"isReady":false}),
            403,
            "forbidden",
        ),
        (
            "admin starts a call",
            s("start-call"),
            &c.admin,
            json!({"patientId":"p1"}),
            403,
            "forbidden",
        ),
        // Not yours: 404, existence not leaked.
        (
            "another doctor ends my schedule",
            s("end"),
            &other_doctor,
            json!({}),
            404,
            "not_found",
        ),
        (
            "another doctor invites from my queue",
            s("start-call"),
            &other_doctor,
            json!({"patientId":"p1"}),
            404,
            "not_found",
        ),
        (
            "another doctor resets my entry",
            e("reset"),
            &other_doctor,
            json!({}),
            404,
            "not_found",
        ),
        (
            "a stranger toggles my entry",
            e("toggle-ready"),
            &stranger,
            json!({"isReady":false}),
            404,
            "not_found",
        ),
        (
            "a stranger confirms",
            k("confirm"),
            &stranger,
            json!({}),
            404,
            "not_found",
        ),
        (
            "a stranger ends",
            k("end"),
            &stranger,
            json!({}),
            404,
            "not_found",
        ),
        (
            "a stranger sets a peer id",
            k("set-peer-id"),
            &stranger,
            json!({"peerId":"x"}),
            404,
            "not_found",
        ),
        (
            "unknown schedule",
            "/api/schedules/nope/start".into(),
            &c.doctor,
            json!({}),
            404,
            "not_found",
        ),
        (
            "unknown entry",
            "/api/queue/nope/toggle-ready".into(),
            &c.patient,
            json!({"isReady":true}),
            404,
            "not_found",
        ),
        (
            "unknown call",
            "/api/call-sessions/nope/confirm".into(),
            &c.patient,
            json!({}),
            404,
            "not_found",
        ),
        (
            "invite someone not queued",
            s("start-call"),
            &c.doctor,
            json!({"patientId":"p9"}),
            404,
            "not_found",
        ),
        // The wrong side of the invitation: 403.
        (
            "the inviter confirms",
            k("confirm"),
            &c.doctor,
            json!({}),
            403,
            "forbidden",
        ),
        (
            "the inviter declines",
            k("decline"),
            &c.doctor,
            json!({}),
            403,
            "forbidden",
        ),
        (
            "the invitee cancels",
            k("cancel"),
            &c.patient,
            json!({}),
            403,
            "forbidden",
        ),
        // The state does not allow it: 409.
        (
            "activate before confirm",
            k("activate"),
            &c.patient,
            json!({}),
            409,
            "conflict",
        ),
        (
            "end before confirm",
            k("end"),
            &c.doctor,
            json!({}),
            409,
            "conflict",
        ),
        (
            "toggle off while invited",
            e("toggle-ready"),
            &c.patient,
            json!({"isReady":false}),
            409,
            "conflict",
        ),
        (
            "reset while invited",
            e("reset"),
            &c.doctor,
            json!({}),
            409,
            "conflict",
        ),
        (
            "a second invitation",
            s("start-call"),
            &c.doctor,
            json!({"patientId":"p1"}),
            409,
            "conflict",
        ),
    ];
    for (what, path, token, body, status, code) in cases {
        let (got, answer) = c.app.post(&path, token, body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(answer["success"], false, "{what}");
        assert_eq!(answer["error"]["code"], code, "{what}");
    }
    // Reads: the queue and the host's poll are the host's; the audit log the admin's.
    for (what, path, token, status) in [
        ("guest reads a queue", s("queue"), &c.patient, 403),
        (
            "another doctor reads my queue",
            s("queue"),
            &other_doctor,
            404,
        ),
        (
            "guest polls host status",
            "/api/call-sessions/status".to_owned(),
            &c.patient,
            403,
        ),
        (
            "stranger reads the call",
            format!("/api/call-sessions/{cid}"),
            &stranger,
            404,
        ),
        (
            "doctor reads the audit log",
            "/api/audit-logs".to_owned(),
            &c.doctor,
            403,
        ),
        (
            "stranger reads the entry",
            format!("/api/queue/{entry}"),
            &stranger,
            404,
        ),
    ] {
        assert_eq!(c.app.get(&path, token).await.0, status, "{what}");
    }
    // Nothing changed.
    assert_eq!(c.call_status(&cid).await, "INVITED");
    assert_eq!(c.entry_status(&entry).await, "READY");
    assert_eq!(
        c.audit(&cid).await.len() + c.audit(&entry).await.len(),
        audit_before
    );
    let (_, body) = c
        .app
        .get(&format!("/api/call-sessions/{cid}"), &c.patient)
        .await;
    assert_eq!(body["data"], call);
    c.stop().await;
}

#[tokio::test]
async fn an_upcoming_schedule_takes_a_queue_but_no_calls() {
    let c = Clinic::open().await;
    let (_, body) = c
        .app
        .post(
            "/api/schedules",
            &c.doctor,
            json!({"date":"2026-11-22","startTime":"09:00","endTime":"10:00"}),
        )
        .await;
    let upcoming = body["data"]["id"].as_str().unwrap().to_owned();
    let join = format!("/api/schedules/{upcoming}/join-queue");
    let (status, body) = c.app.post(&join, &c.patient, json!({})).await;
    assert_eq!(status, 201);
    let entry = body["data"]["id"].as_str().unwrap().to_owned();
    c.app
        .post(
            &format!("/api/queue/{entry}/toggle-ready"),
            &c.patient,
            json!({"isReady": true}),
        )
        .await;
    let (status, body) = c
        .app
        .post(
            &format!("/api/schedules/{upcoming}/start-call"),
            &c.doctor,
            json!({"patientId": "p1"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("conflict"))
    );
    // Ending a schedule that never started is refused too.
    assert_eq!(
        c.app
            .post(
                &format!("/api/schedules/{upcoming}/end"),
                &c.doctor,
                json!({})
            )
            .await
            .0,
        409
    );
    c.stop().await;
}

#[tokio::test]
async fn bad_input_gets_bad_request_and_changes_nothing() {
    let c = Clinic::open().await;
    let entry = c.ready(&c.patient).await;
    let toggle = format!("/api/queue/{entry}/toggle-ready");
    let start_call = c.path("start-call");
    let cases: Vec<(&str, &String, &str)> = vec![
        (&toggle, &c.patient, "{\"isReady\": "),
        (&toggle, &c.patient, "not json"),
        (&toggle, &c.patient, "[true]"),
        (&toggle, &c.patient, "{\"isReady\": \"false\"}"),
        (&toggle, &c.patient, "{\"isReady\": 0}"),
        (&toggle, &c.patient, "{\"isReady\": null}"),
        (&toggle, &c.patient, "{}"),
        (&toggle, &c.patient, ""),
        (&start_call, &c.doctor, "{}"),
        (&start_call, &c.doctor, "{\"patientId\": 1.5}"),
        (&start_call, &c.doctor, "{\"patientId\": true}"),
        (&start_call, &c.doctor, "{\"patientId\": \"\"}"),
        (&start_call, &c.doctor, "{\"patientId\": [\"p1\"]}"),
        (
            &start_call,
            &c.doctor,
            "{\"patientId\": \"p1\", \"callType\": \"fax\"}",
        ),
        (
            &start_call,
            &c.doctor,
            "{\"patientId\": \"p1\", \"callType\": 7}",
        ),
    ];
    for (path, token, body) in &cases {
        let (status, answer) = c.app.post_raw(path, token, body).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_request", "{body}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    for body in [
        json!({}),
        json!({"date": "2026-11-21"}),
        json!({"date": "tomorrow", "startTime": "09:00", "endTime": "10:00"}),
        json!({"date": "2026-11-21", "startTime": "10:00", "endTime": "09:00"}),
        json!({"date": "2026-11-21", "startTime": 9, "endTime": 10}),
        json!({"date": "2026-11-21", "startTime": "9am", "endTime": "10am"}),
    ] {
        let (status, answer) = c.app.post("/api/schedules", &c.doctor, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    // Ids no one could have issued: a NUL (which PostgreSQL cannot even
    // store) or 300 characters. Not found in a path, bad in a body.
    let (status, answer) = c
        .app
        .post_raw(&start_call, &c.doctor, "{\"patientId\": \"p\\u0000\"}")
        .await;
    assert_eq!(status, 400, "{answer}");
    for path in [
        "/api/call-sessions/%00".to_owned(),
        format!("/api/schedules/{}", "s".repeat(300)),
        "/api/queue/a%00b/toggle-ready".to_owned(),
    ] {
        let (status, answer) = c.app.get(&path, &c.admin).await;
        assert!(
            status == 404 || status == 405 || status == 400,
            "{path}: {status} {answer}"
        );
        assert_eq!(answer["success"], false, "{path}");
    }
    let (status, _) = c
        .app
        .post(
            "/api/queue/a%00b/toggle-ready",
            &c.patient,
            json!({"isReady": true}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = c.app.get("/api/audit-logs?limit=0", &c.admin).await;
    assert_eq!(status, 400);
    let (status, _) = c.app.get("/api/audit-logs?limit=lots", &c.admin).await;
    assert_eq!(status, 400);
    // No token, a garbage token: 401 with the envelope.
    let (status, answer) = c
        .app
        .post_raw(&toggle, "garbage", "{\"isReady\":false}")
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (401, json!("unauthorized"))
    );
    // Nothing changed: still READY, and no call was made.
    assert_eq!(c.entry_status(&entry).await, "READY");
    let (_, body) = c.app.get("/api/call-sessions/status", &c.doctor).await;
    assert_eq!(body["data"], Value::Null);
    // A peer id must be a sensible string.
    let cid = c.invite("p1").await["id"].as_str().unwrap().to_owned();
    c.call_post(&cid, "confirm", &c.patient).await;
    let peer = format!("/api/call-sessions/{cid}/set-peer-id");
    for body in [
        json!({}),
        json!({"peerId": ""}),
        json!({"peerId": 5}),
        json!({"peerId": "nul\u{0}"}),
        json!({"peerId": "x".repeat(300)}),
    ] {
        assert_eq!(
            c.app.post(&peer, &c.doctor, body.clone()).await.0,
            400,
            "{body}"
        );
    }
    let (_, body) = c
        .app
        .get(&format!("/api/call-sessions/{cid}"), &c.doctor)
        .await;
    assert_eq!(body["data"]["doctorPeerId"], Value::Null);
    c.stop().await;
}

#[tokio::test]
async fn concurrent_confirms_have_exactly_one_winner() {
    let c = Clinic::open().await;
    c.ready(&c.patient).await;
    let cid = c.invite("p1").await["id"].as_str().unwrap().to_owned();
    let path = format!("/api/call-sessions/{cid}/confirm");
    let statuses = c.concurrently(10, &path, &c.patient, json!({})).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    let confirms = c
        .audit(&cid)
        .await
        .into_iter()
        .filter(|r| r["action"] == "call.confirm")
        .count();
    assert_eq!(confirms, 1);
    c.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_start_calls_make_one_invitation() {
    let c = Clinic::open().await;
    let mut patient = c.app.connect(&c.patient).await;
    c.ready(&c.patient).await;
    let statuses = c
        .concurrently(
            20,
            &c.path("start-call"),
            &c.doctor,
            json!({ "patientId": "p1" }),
        )
        .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    patient.expect_event("call_invitation").await;
    patient.expect_no_event("call_invitation", QUIET).await;
    let invites = c
        .audit("")
        .await
        .into_iter()
        .filter(|r| r["action"] == "call.invite")
        .count();
    assert_eq!(invites, 1);
    c.stop().await;
}

#[tokio::test]
async fn a_doctor_has_one_live_call_and_a_patient_one_live_invitation() {
    let c = Clinic::open().await;
    c.ready(&c.patient).await;
    let p2 = c.app.token("p2", "patient");
    c.ready(&p2).await;
    c.invite("p1").await;
    let (status, _) = c
        .app
        .post(&c.path("start-call"), &c.doctor, json!({"patientId": "p2"}))
        .await;
    assert_eq!(status, 409, "the doctor is busy");
    // Another doctor cannot invite p1 while p1 has a live invitation.
    let d2 = c.app.token("d2", "doctor");
    let (_, body) = c
        .app
        .post(
            "/api/schedules",
            &d2,
            json!({"date":"2026-11-21","startTime":"09:00","endTime":"10:00"}),
        )
        .await;
    let s2 = body["data"]["id"].as_str().unwrap().to_owned();
    c.app
        .post(&format!("/api/schedules/{s2}/start"), &d2, json!({}))
        .await;
    let (_, body) = c
        .app
        .post(
            &format!("/api/schedules/{s2}/join-queue"),
            &c.patient,
            json!({}),
        )
        .await;
    let e2 = body["data"]["id"].as_str().unwrap().to_owned();
    c.app
        .post(
            &format!("/api/queue/{e2}/toggle-ready"),
            &c.patient,
            json!({"isReady": true}),
        )
        .await;
    let (status, _) = c
        .app
        .post(
            &format!("/api/schedules/{s2}/start-call"),
            &d2,
            json!({"patientId": "p1"}),
        )
        .await;
    assert_eq!(status, 409, "the patient is busy");
    c.stop().await;
}

#[tokio::test]
async fn an_invitation_made_before_a_restart_expires_on_time_once() {
    let mut c = Clinic::open().await;
    c.ready(&c.patient).await;
    let call = c.invite("p1").await;
    let cid = call["id"].as_str().unwrap().to_owned();
    let expires =
        chrono::DateTime::parse_from_rfc3339(call["expiresAt"].as_str().unwrap()).unwrap();
    c.app.restart().await;
    let mut patient = c.app.connect(&c.patient).await;
    let mut doctor = c.app.connect(&c.doctor).await;
    // Reconnected before the deadline: the invitation is still live and re-sent.
    assert_eq!(patient.expect_event("call_invitation").await[0]["id"], cid);
    c.app.advance(Duration::from_secs(60));
    let expired = doctor.expect_event("call_expired").await;
    let at = chrono::DateTime::parse_from_rfc3339(expired[0]["endedAt"].as_str().unwrap()).unwrap();
    assert!(at >= expires, "expired at {at}, deadline {expires}");
    assert_eq!(patient.expect_event("call_expired").await[0]["id"], cid);
    c.app.advance(Duration::from_secs(60));
    doctor.expect_no_event("call_expired", QUIET).await;
    let rows = c.audit(&cid).await;
    assert_eq!(
        rows.iter().filter(|r| r["action"] == "call.expire").count(),
        1
    );
    c.stop().await;
}

#[tokio::test]
async fn an_invitation_whose_deadline_passed_while_down_expires_at_start_once() {
    let mut c = Clinic::open().await;
    let entry = c.ready(&c.patient).await;
    let cid = c.invite("p1").await["id"].as_str().unwrap().to_owned();
    c.app.halt().await;
    // Down for longer than the 60 s TTL.
    c.app.advance(Duration::from_secs(90));
    c.app.start_again().await;
    // Within moments of the start, without anyone asking.
    let mut status = String::new();
    for _ in 0..50 {
        status = c.call_status(&cid).await;
        if status == "EXPIRED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "EXPIRED");
    assert_eq!(c.entry_status(&entry).await, "WAITING");
    // A second restart does not expire it again.
    c.app.restart().await;
    tokio::time::sleep(QUIET).await;
    let rows = c.audit(&cid).await;
    assert_eq!(
        rows.iter().filter(|r| r["action"] == "call.expire").count(),
        1
    );
    // No stale invitation on reconnect either.
    let mut patient = c.app.connect(&c.patient).await;
    patient.expect_no_event("call_invitation", QUIET).await;
    c.stop().await;
}

/// Many guests joining and readying at once: every request succeeds
/// promptly (no stall between row locks, the pool and the push-order lock),
/// there is one push per change, and the host's last `queue_updated` is the
/// final state. (Reordered pushes are rare enough that this test also passes
/// without the push-order lock; it guards liveness and the end state.)
#[tokio::test]
async fn a_rush_on_one_queue_ends_with_a_current_queue_update() {
    let c = Clinic::open().await;
    let mut doctor = c.app.connect(&c.doctor).await;
    let guests = 30;
    let tasks: Vec<_> = (0..guests)
        .map(|n| {
            let (http, base) = (c.app.http.clone(), c.app.url(""));
            let token = c.app.token(&format!("rush{n}"), "patient");
            let join = c.app.url(&c.path("join-queue"));
            tokio::spawn(async move {
                let res = http.post(join).bearer_auth(&token).send().await.unwrap();
                assert_eq!(res.status().as_u16(), 201);
                let body: Value = res.json().await.unwrap();
                let entry = body["data"]["id"].as_str().unwrap().to_owned();
                let res = http
                    .post(format!("{base}/api/queue/{entry}/toggle-ready"))
                    .bearer_auth(&token)
                    .json(&json!({ "isReady": true }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status().as_u16(), 200);
            })
        })
        .collect();
    tokio::time::timeout(WAIT, async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("every join and toggle answered in time");
    let updates: Vec<Value> = doctor
        .drain(Duration::from_millis(500))
        .await
        .into_iter()
        .filter(|(name, _)| name == "queue_updated")
        .map(|(_, args)| args[0].clone())
        .collect();
    assert_eq!(updates.len(), guests * 2, "one push per change");
    let last = &updates.last().unwrap()["queue"];
    assert_eq!(last.as_array().unwrap().len(), guests);
    assert!(
        last.as_array()
            .unwrap()
            .iter()
            .all(|e| e["status"] == "READY"),
        "{last}"
    );
    // And the pushes grew monotonically: never a shorter queue after a longer one.
    let sizes: Vec<usize> = updates
        .iter()
        .map(|u| u["queue"].as_array().unwrap().len())
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
    c.stop().await;
}
