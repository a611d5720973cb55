//! CONTRACT §3 (WebRTC signaling) and §7 presence in signaling rooms, end to
//! end: the real server, real websockets, SQLite and (with
//! `TEST_DATABASE_URL`) PostgreSQL.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(400);
const START: &str = "/api/call-sessions/start";

/// A live direct call between doctor `d1` and patient `p1`.
struct Call {
    id: String,
    room: String,
    appointment: String,
    doctor: String,
    patient: String,
}

async fn direct_call(app: &TestApp, doctor: &str, patient: &str) -> Call {
    let patient_token = app.token(patient, "patient");
    let (status, body) = app
        .post(START, &patient_token, json!({ "doctor_id": doctor }))
        .await;
    assert_eq!(status, 201, "{body}");
    let data = &body["data"];
    Call {
        id: data["call_session_id"].as_str().unwrap().to_owned(),
        room: data["room_id"].as_str().unwrap().to_owned(),
        appointment: data["appointment_id"].as_str().unwrap().to_owned(),
        doctor: app.token(doctor, "doctor"),
        patient: patient_token,
    }
}

/// A live call whose doctor and patient have both joined its room, with
/// everything they were told so far drained.
async fn in_room(app: &TestApp, doctor: &str, patient: &str) -> (Call, SioClient, SioClient) {
    let call = direct_call(app, doctor, patient).await;
    let mut d = app.connect(&call.doctor).await;
    let mut p = app.connect(&call.patient).await;
    join(&mut d, &call.room).await;
    join(&mut p, &call.room).await;
    d.drain(QUIET).await;
    p.drain(QUIET).await;
    (call, d, p)
}

async fn join(c: &mut SioClient, room: &str) -> Value {
    c.emit_ack("webrtc:join_room", json!({ "roomId": room }))
        .await
}

/// The events named `name` among those received within `wait`.
async fn collect(c: &mut SioClient, name: &str, wait: Duration) -> Vec<Value> {
    c.drain(wait)
        .await
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, mut args)| args.remove(0))
        .collect()
}

#[tokio::test]
async fn offer_answer_and_candidates_flow_verbatim_and_in_order() {
    let app = TestApp::spawn().await;
    let call = direct_call(&app, "d1", "p1").await;
    let mut doctor = app.connect(&call.doctor).await;
    let mut doctor_tab2 = app.connect(&call.doctor).await;
    let mut patient = app.connect(&call.patient).await;
    patient.drain(QUIET).await;
    doctor_tab2.drain(QUIET).await;

    // The doctor joins by call id: nobody else is there yet.
    let ack = join(&mut doctor, &call.id).await;
    assert_eq!(ack, json!({ "ok": true, "roomId": call.id, "peers": [] }));
    // The patient joins by the appointment id of the direct call app.
    let ack = join(&mut patient, &call.appointment).await;
    assert_eq!(
        ack,
        json!({ "ok": true, "roomId": call.appointment, "peers": [{ "userId": "d1", "role": "doctor" }] })
    );
    let joined = doctor.expect_event("webrtc:peer_joined").await;
    assert_eq!(
        joined[0],
        json!({ "roomId": call.id, "userId": "p1", "role": "patient" })
    );
    doctor.drain(QUIET).await;

    // Forwarded verbatim, plus `from`/`fromSocketId`; a forged `from` is replaced.
    let offer = json!({
        "roomId": call.id,
        "offer": { "type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" },
        "extra": [1, 2.5, null, { "nested": "é\u{1F600}" }],
        "from": "forged",
    });
    let ack = doctor.emit_ack("webrtc:offer", offer.clone()).await;
    assert_eq!(ack, json!({ "ok": true }));
    let got = patient.expect_event("webrtc:offer").await.remove(0);
    let mut expected = offer.clone();
    expected["from"] = json!("d1");
    expected["fromSocketId"] = json!(doctor.sid);
    assert_eq!(got, expected);

    let answer =
        json!({ "roomId": call.appointment, "answer": { "type": "answer", "sdp": "v=0\r\n" } });
    patient.emit("webrtc:answer", answer.clone());
    let got = doctor.expect_event("webrtc:answer").await.remove(0);
    assert_eq!(got["answer"], answer["answer"]);
    assert_eq!(
        got["roomId"],
        json!(call.appointment),
        "the sender's spelling"
    );
    assert_eq!(got["from"], "p1");
    assert_eq!(got["fromSocketId"], json!(patient.sid));

    // 200 candidates without waiting: every one arrives, in order.
    for i in 0..200 {
        doctor.emit(
            "webrtc:ice_candidate",
            json!({ "roomId": call.id, "candidate": { "candidate": format!("candidate:{i}"), "sdpMLineIndex": 0 } }),
        );
    }
    let got = collect(&mut patient, "webrtc:ice_candidate", Duration::from_secs(2)).await;
    let order: Vec<String> = got
        .iter()
        .map(|c| c["candidate"]["candidate"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..200).map(|i| format!("candidate:{i}")).collect();
    assert_eq!(order, want);

    // Never back to the sender, nor to the sender's other tab (not in the room).
    let back = doctor.drain(QUIET).await;
    assert!(
        back.iter().all(|(n, _)| !n.starts_with("webrtc:ice")),
        "{back:?}"
    );
    doctor_tab2.expect_silence(QUIET).await;
    app.stop().await;
}

#[tokio::test]
async fn a_socket_may_signal_right_after_its_join_without_waiting() {
    let app = TestApp::spawn().await;
    let call = direct_call(&app, "d1", "p1").await;
    let mut patient = app.connect(&call.patient).await;
    join(&mut patient, &call.room).await;
    let mut doctor = app.connect(&call.doctor).await;
    doctor.drain(QUIET).await;
    patient.drain(QUIET).await;
    // A 20 KB SDP, emitted right behind the join (the join reads the database).
    let sdp: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect::<String>()
        + "\r\n\u{00e9}\"\\";
    let join_ack = doctor.emit_ack_later("webrtc:join_room", json!({ "roomId": call.room }));
    let offer_ack = doctor.emit_ack_later(
        "webrtc:offer",
        json!({ "roomId": call.room, "offer": { "type": "offer", "sdp": sdp } }),
    );
    assert_eq!(join_ack.await.unwrap()["ok"], true);
    assert_eq!(offer_ack.await.unwrap(), json!({ "ok": true }));
    let got = patient.expect_event("webrtc:offer").await.remove(0);
    assert_eq!(got["offer"]["sdp"].as_str().unwrap(), sdp, "byte for byte");
    app.stop().await;
}

#[tokio::test]
async fn a_late_joiner_is_replayed_the_latest_offer_and_the_candidates_after_it() {
    let app = TestApp::spawn().await;
    let call = direct_call(&app, "d1", "p1").await;
    let mut doctor = app.connect(&call.doctor).await;
    join(&mut doctor, &call.room).await;
    let cand =
        |i: u32| json!({ "roomId": call.room, "candidate": { "candidate": format!("c{i}") } });
    doctor.emit("webrtc:ice_candidate", cand(0));
    doctor.emit(
        "webrtc:offer",
        json!({ "roomId": call.room, "offer": "first" }),
    );
    doctor.emit("webrtc:ice_candidate", cand(1));
    // A renegotiation: the first offer and its candidate are dropped.
    doctor.emit(
        "webrtc:offer",
        json!({ "roomId": call.room, "offer": "second" }),
    );
    doctor.emit("webrtc:ice_candidate", cand(2));
    doctor.emit("webrtc:ice_candidate", cand(3));
    // For someone else: never replayed to the patient.
    let ack = doctor
        .emit_ack(
            "webrtc:ice_candidate",
            json!({ "roomId": call.room, "to": "p1", "candidate": "to-p1" }),
        )
        .await;
    assert_eq!(code(&ack), "not_found", "p1 is not in the room yet");

    let mut patient = app.connect(&call.patient).await;
    patient.drain(QUIET).await;
    let ack = patient.emit_ack_later("webrtc:join_room", json!({ "roomId": call.room }));
    let ack = ack.await.unwrap();
    assert_eq!(ack["peers"], json!([{ "userId": "d1", "role": "doctor" }]));
    let replay: Vec<(String, Value)> = patient
        .drain(QUIET)
        .await
        .into_iter()
        .filter(|(n, _)| n.starts_with("webrtc:"))
        .map(|(n, mut a)| (n, a.remove(0)))
        .collect();
    let names: Vec<&str> = replay.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "webrtc:offer",
            "webrtc:ice_candidate",
            "webrtc:ice_candidate"
        ]
    );
    assert_eq!(replay[0].1["offer"], "second");
    assert_eq!(replay[0].1["from"], "d1");
    assert_eq!(replay[0].1["fromSocketId"], json!(doctor.sid));
    assert_eq!(replay[1].1["candidate"]["candidate"], "c2");
    assert_eq!(replay[2].1["candidate"]["candidate"], "c3");

    // The patient answers; a second doctor tab joining later gets the answer
    // (and not the doctor's own offer).
    patient.emit(
        "webrtc:answer",
        json!({ "roomId": call.room, "answer": "A" }),
    );
    doctor.expect_event("webrtc:answer").await;
    let mut doctor_tab2 = app.connect(&call.doctor).await;
    doctor_tab2.drain(QUIET).await;
    join(&mut doctor_tab2, &call.room).await;
    let replay = doctor_tab2.drain(QUIET).await;
    let names: Vec<&str> = replay
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.starts_with("webrtc:"))
        .collect();
    assert_eq!(names, ["webrtc:answer"]);
    app.stop().await;
}

#[tokio::test]
async fn replay_is_bounded_in_count_and_bytes() {
    let app = TestApp::spawn_with(|c| {
        c.replay_max_messages = 3;
        c.replay_max_bytes = 100_000;
    })
    .await;
    let call = direct_call(&app, "d1", "p1").await;
    let mut doctor = app.connect(&call.doctor).await;
    join(&mut doctor, &call.room).await;
    doctor.emit("webrtc:offer", json!({ "roomId": call.room, "offer": "o" }));
    for i in 0..10 {
        doctor.emit(
            "webrtc:ice_candidate",
            json!({ "roomId": call.room, "candidate": i }),
        );
    }
    doctor
        .emit_ack(
            "webrtc:ice_candidate",
            json!({ "roomId": call.room, "candidate": 10 }),
        )
        .await;
    let mut patient = app.connect(&call.patient).await;
    patient.drain(QUIET).await;
    join(&mut patient, &call.room).await;
    let replay = collect(&mut patient, "webrtc:ice_candidate", QUIET).await;
    let kept: Vec<&Value> = replay.iter().map(|c| &c["candidate"]).collect();
    assert_eq!(kept, [&json!(0), &json!(1)], "offer + two candidates = 3");
    app.stop().await;
}

#[tokio::test]
async fn to_targets_one_user_and_unknown_targets_are_not_found() {
    let app = TestApp::spawn().await;
    let (call, mut doctor, mut patient) = in_room(&app, "d1", "p1").await;

    let ack = doctor
        .emit_ack(
            "webrtc:offer",
            json!({ "roomId": call.room, "to": "p1", "offer": 1 }),
        )
        .await;
    assert_eq!(ack["ok"], true);
    assert_eq!(patient.expect_event("webrtc:offer").await[0]["to"], "p1");
    for to in [json!("nobody"), json!("d1"), json!(42)] {
        let ack = doctor
            .emit_ack(
                "webrtc:offer",
                json!({ "roomId": call.room, "to": to, "offer": 2 }),
            )
            .await;
        assert_eq!(code(&ack), "not_found", "to {to}");
    }
    for to in [json!(true), json!({}), json!([]), json!("")] {
        let ack = doctor
            .emit_ack(
                "webrtc:offer",
                json!({ "roomId": call.room, "to": to, "offer": 3 }),
            )
            .await;
        assert_eq!(code(&ack), "bad_request", "to {to}");
    }
    patient.expect_no_event("webrtc:offer", QUIET).await;
    app.stop().await;
}

#[tokio::test]
async fn strangers_are_forbidden_and_receive_nothing() {
    let app = TestApp::spawn().await;
    let (call, doctor, mut patient) = in_room(&app, "d1", "p1").await;

    let mut strangers = vec![
        app.connect(&app.token("d2", "doctor")).await,
        app.connect(&app.token("p2", "patient")).await,
        app.connect(&app.token("a1", "admin")).await,
    ];
    for s in &mut strangers {
        s.drain(QUIET).await;
        for room in [
            &call.id,
            &call.room,
            &call.appointment,
            &"no-such-room".to_owned(),
        ] {
            let ack = join(s, room).await;
            assert_eq!(code(&ack), "forbidden", "{room}: {ack}");
        }
        let ack = s
            .emit_ack("webrtc:offer", json!({ "roomId": call.room, "offer": "x" }))
            .await;
        assert_eq!(code(&ack), "forbidden");
        // Without an ack: the same refusal as an `error` event.
        s.emit(
            "webrtc:ice_candidate",
            json!({ "roomId": call.room, "candidate": "x" }),
        );
        let err = s.expect_event("error").await;
        assert_eq!(err[0]["error"]["code"], "forbidden");
    }
    doctor.emit(
        "webrtc:offer",
        json!({ "roomId": call.room, "offer": "secret" }),
    );
    patient.emit(
        "webrtc:answer",
        json!({ "roomId": call.room, "answer": "secret" }),
    );
    patient.expect_event("webrtc:offer").await;
    for s in &mut strangers {
        s.expect_silence(QUIET).await;
    }
    // Failed joins leave nothing behind; the call's room is the only one.
    assert_eq!(app.server().rooms().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn bad_payloads_are_bad_requests_and_signaling_needs_a_join() {
    let app = TestApp::spawn().await;
    let call = direct_call(&app, "d1", "p1").await;
    let mut doctor = app.connect(&call.doctor).await;
    for payload in [
        json!({}),
        json!({ "roomId": null }),
        json!({ "roomId": "" }),
        json!({ "roomId": 1.5 }),
        json!({ "roomId": ["x"] }),
        json!({ "roomId": "x".repeat(201) }),
        json!("room"),
        json!(7),
        Value::Null,
    ] {
        for event in ["webrtc:join_room", "webrtc:offer", "webrtc:leave_room"] {
            let ack = doctor.emit_ack(event, payload.clone()).await;
            assert_eq!(code(&ack), "bad_request", "{event} {payload}");
        }
    }
    let ack = doctor
        .emit_ack("webrtc:offer", json!({ "roomId": call.room, "offer": 1 }))
        .await;
    assert_eq!(code(&ack), "forbidden", "not joined yet");
    assert_eq!(join(&mut doctor, &call.room).await["ok"], true);
    // Joining twice answers the same and changes nothing.
    assert_eq!(join(&mut doctor, &call.room).await["ok"], true);
    let ack = doctor
        .emit_ack("webrtc:offer", json!({ "roomId": call.room, "offer": 1 }))
        .await;
    assert_eq!(ack, json!({ "ok": true }));
    // Another room id the socket did not join: forbidden even if it names
    // the same call.
    let ack = doctor
        .emit_ack(
            "webrtc:offer",
            json!({ "roomId": call.appointment, "offer": 1 }),
        )
        .await;
    assert_eq!(code(&ack), "forbidden");
    app.stop().await;
}

#[tokio::test]
async fn legacy_names_are_spoken_to_the_sockets_that_use_them() {
    let app = TestApp::spawn().await;
    let call = direct_call(&app, "d1", "p1").await;
    let mut doctor = app.connect(&call.doctor).await;
    let mut patient = app.connect(&call.patient).await;
    doctor.drain(QUIET).await;
    patient.drain(QUIET).await;
    // Before the WebRTC signaling app's fix: `join_consultation_room` with an appointment id.
    let ack = doctor
        .emit_ack(
            "join_consultation_room",
            json!({ "appointmentId": call.appointment }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["roomId"], json!(call.appointment));
    join(&mut patient, &call.room).await;
    // peer_joined has no legacy form.
    doctor.expect_event("webrtc:peer_joined").await;
    doctor.drain(QUIET).await;

    doctor.emit(
        "webrtc_offer",
        json!({ "appointmentId": call.appointment, "offer": "legacy" }),
    );
    let got = patient.expect_event("webrtc:offer").await.remove(0);
    assert_eq!(got["offer"], "legacy");
    assert_eq!(got["appointmentId"], json!(call.appointment));
    assert_eq!(got["from"], "d1");
    patient.emit(
        "webrtc:answer",
        json!({ "roomId": call.room, "answer": "new" }),
    );
    patient.emit(
        "webrtc:ice_candidate",
        json!({ "roomId": call.room, "candidate": "c" }),
    );
    let events = doctor.drain(QUIET).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["webrtc_answer", "webrtc_ice_candidate"]);
    // `consultationId` works too, on another socket of the patient.
    let mut patient2 = app.connect(&call.patient).await;
    patient2.drain(QUIET).await;
    let ack = patient2
        .emit_ack(
            "join_consultation_room",
            json!({ "consultationId": call.id }),
        )
        .await;
    assert_eq!(ack["ok"], true);
    doctor.emit(
        "webrtc_ice_candidate",
        json!({ "appointmentId": call.appointment, "candidate": "x" }),
    );
    patient2.expect_event("webrtc_ice_candidate").await;
    patient.expect_event("webrtc:ice_candidate").await;
    app.stop().await;
}

#[tokio::test]
async fn presence_is_by_user_two_tabs_are_one_presence() {
    let app = TestApp::spawn().await;
    let call = direct_call(&app, "d1", "p1").await;
    let mut doctor = app.connect(&call.doctor).await;
    join(&mut doctor, &call.room).await;
    let sync = doctor.expect_event("presence:sync").await.remove(0);
    assert_eq!(sync["roomId"], json!(call.room));
    assert_eq!(sync["users"]["d1"]["role"], "doctor");
    assert_eq!(sync["users"]["d1"]["connections"], 1);
    doctor.drain(QUIET).await;

    let mut tab1 = app.connect(&call.patient).await;
    let mut tab2 = app.connect(&call.patient).await;
    join(&mut tab1, &call.room).await;
    let events = doctor.drain(QUIET).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["webrtc:peer_joined", "presence:join", "presence:sync"]
    );
    assert_eq!(
        events[1].1[0],
        json!({ "roomId": call.room, "userId": "p1", "role": "patient" })
    );
    let users = &events[2].1[0]["users"];
    assert_eq!(users["p1"]["connections"], 1);
    let online_at = users["p1"]["onlineAt"].clone();
    assert_eq!(
        online_at.as_str().unwrap().len(),
        24,
        "ISO-8601 ms: {online_at}"
    );

    // The second tab: a count, not a new presence.
    join(&mut tab2, &call.room).await;
    let events = doctor.drain(QUIET).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["presence:sync"]);
    assert_eq!(events[0].1[0]["users"]["p1"]["connections"], 2);
    assert_eq!(events[0].1[0]["users"]["p1"]["onlineAt"], online_at);

    // One tab leaves: still present.
    let ack = tab1
        .emit_ack("webrtc:leave_room", json!({ "roomId": call.room }))
        .await;
    assert_eq!(ack["ok"], true);
    let events = doctor.drain(QUIET).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["presence:sync"]);
    assert_eq!(events[0].1[0]["users"]["p1"]["connections"], 1);
    // The left tab hears nothing more from the room.
    tab1.drain(QUIET).await;
    doctor.emit("webrtc:offer", json!({ "roomId": call.room, "offer": 1 }));
    tab2.expect_event("webrtc:offer").await;
    tab1.expect_no_event("webrtc:offer", QUIET).await;

    // The last tab goes away (disconnect, not leave): the patient has left.
    tab2.disconnect();
    let events = doctor.drain(QUIET).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["webrtc:peer_left", "presence:leave", "presence:sync"]
    );
    assert_eq!(
        events[0].1[0],
        json!({ "roomId": call.room, "userId": "p1" })
    );
    assert_eq!(
        events[2].1[0]["users"],
        json!({ "d1": events[2].1[0]["users"]["d1"] })
    );
    app.stop().await;
}

#[tokio::test]
async fn when_the_call_ends_its_sockets_leave_the_room() {
    let app = TestApp::spawn().await;
    let (call, mut doctor, mut patient) = in_room(&app, "d1", "p1").await;
    doctor.emit("webrtc:offer", json!({ "roomId": call.room, "offer": 1 }));
    patient.expect_event("webrtc:offer").await;
    assert_eq!(app.server().rooms().len(), 1);

    let (status, body) = app
        .post(
            &format!("/api/call-sessions/{}/cancel", call.id),
            &call.patient,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.server().rooms().len(),
        0,
        "the room and its replay are freed"
    );
    let ack = doctor
        .emit_ack("webrtc:offer", json!({ "roomId": call.room, "offer": 2 }))
        .await;
    assert_eq!(code(&ack), "forbidden");
    patient.expect_no_event("webrtc:offer", QUIET).await;
    for room in [&call.id, &call.appointment] {
        let ack = join(&mut patient, room).await;
        assert_eq!(code(&ack), "forbidden", "an ended call has no room");
    }
    app.stop().await;
}

/// A join racing the call's end never leaves a socket in an ended call's room.
#[tokio::test]
async fn a_join_racing_the_end_of_the_call_never_outlives_it() {
    let app = TestApp::spawn().await;
    for round in 0..15 {
        let call = direct_call(&app, &format!("d{round}"), &format!("p{round}")).await;
        let mut doctor = app.connect(&call.doctor).await;
        let joined = doctor.emit_ack_later("webrtc:join_room", json!({ "roomId": call.room }));
        let (status, _) = app
            .post(
                &format!("/api/call-sessions/{}/decline", call.id),
                &call.doctor,
                json!({}),
            )
            .await;
        assert_eq!(status, 200);
        let joined = joined.await.unwrap();
        let ack = doctor
            .emit_ack("webrtc:offer", json!({ "roomId": call.room, "offer": 1 }))
            .await;
        assert_eq!(code(&ack), "forbidden", "round {round}: join said {joined}");
        assert_eq!(app.server().rooms().len(), 0, "round {round}");
        doctor.disconnect();
    }
    app.stop().await;
}

#[tokio::test]
async fn tutoring_rooms_open_when_the_session_is_accepted() {
    let app = TestApp::spawn().await;
    let learner = app.token("l1", "learner");
    let teacher = app.token("t1", "teacher");
    let (status, body) = app
        .post(
            "/api/sessions",
            &learner,
            json!({ "host_id": "t1", "skill_name": "Piano" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    let room = format!("room-{id}");
    let mut l = app.connect(&learner).await;
    let mut t = app.connect(&teacher).await;
    assert_eq!(code(&join(&mut l, &room).await), "forbidden", "pending");
    assert_eq!(
        code(&join(&mut l, &id).await),
        "forbidden",
        "a session id is not a room"
    );
    let (status, body) = app
        .post(&format!("/api/sessions/{id}/accept"), &teacher, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["room_id"], json!(room));
    assert_eq!(join(&mut l, &room).await["ok"], true);
    assert_eq!(join(&mut t, &room).await["ok"], true);
    t.emit("webrtc:offer", json!({ "roomId": room, "offer": "o" }));
    assert_eq!(l.expect_event("webrtc:offer").await[0]["from"], "t1");
    let (status, _) = app
        .post(&format!("/api/sessions/{id}/end"), &learner, json!({}))
        .await;
    assert_eq!(status, 200);
    let ack = t
        .emit_ack("webrtc:offer", json!({ "roomId": room, "offer": "o" }))
        .await;
    assert_eq!(code(&ack), "forbidden");
    app.stop().await;
}

#[tokio::test]
async fn oversized_events_are_too_large_and_floods_are_rate_limited() {
    let app = TestApp::spawn_with(|c| {
        c.event_rate = 50;
        c.event_burst = 50;
    })
    .await;
    let (call, mut doctor, mut patient) = in_room(&app, "d1", "p1").await;

    let big = "x".repeat(65 * 1024);
    let ack = doctor
        .emit_ack("webrtc:offer", json!({ "roomId": call.room, "offer": big }))
        .await;
    assert_eq!(code(&ack), "too_large");
    // Near the engine's 1 MiB frame limit: still answered, not dropped.
    let huge = "x".repeat(900 * 1024);
    let ack = doctor
        .emit_ack(
            "webrtc:offer",
            json!({ "roomId": call.room, "offer": huge }),
        )
        .await;
    assert_eq!(code(&ack), "too_large");
    patient.expect_no_event("webrtc:offer", QUIET).await;

    let mut limited = 0;
    let mut pending = vec![];
    for i in 0..120 {
        pending.push(doctor.emit_ack_later(
            "webrtc:ice_candidate",
            json!({ "roomId": call.room, "candidate": i }),
        ));
    }
    for rx in pending {
        if code(&rx.await.unwrap()) == "rate_limited" {
            limited += 1;
        }
    }
    assert!(limited >= 60, "{limited} of 120 refused");
    // Refused events were not relayed.
    let got = collect(&mut patient, "webrtc:ice_candidate", QUIET).await;
    assert_eq!(got.len(), 120 - limited);
    app.stop().await;
}

/// Round trip of one relayed message between a quiet pair, in microseconds.
async fn round_trips(a: &mut SioClient, b: &mut SioClient, room: &str, n: usize) -> Vec<u128> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        a.emit(
            "webrtc:ice_candidate",
            json!({ "roomId": room, "candidate": i }),
        );
        b.expect_event("webrtc:ice_candidate").await;
        b.emit(
            "webrtc:ice_candidate",
            json!({ "roomId": room, "candidate": i }),
        );
        a.expect_event("webrtc:ice_candidate").await;
        out.push(t.elapsed().as_micros());
    }
    out.sort_unstable();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_socket_does_not_slow_a_quiet_pair() {
    // Room for the quiet pair's few hundred events a second; the flooder
    // sends tens of thousands.
    let app = TestApp::spawn_with(|c| {
        c.event_rate = 2000;
        c.event_burst = 2000;
    })
    .await;
    let (quiet, mut qa, mut qb) = in_room(&app, "d1", "p1").await;
    let loud = direct_call(&app, "d2", "p2").await;
    let mut victim = app.connect(&loud.patient).await;
    join(&mut victim, &loud.room).await;

    round_trips(&mut qa, &mut qb, &quiet.room, 50).await; // warm up
    let before = round_trips(&mut qa, &mut qb, &quiet.room, 200).await;

    // The flooder sends as fast as its websocket takes it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = tokio::spawn(flood(
        app.addr,
        app.token("d2", "doctor"),
        loud.room.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during = round_trips(&mut qa, &mut qb, &quiet.room, 200).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, refused) = flood.await.unwrap();
    let median = |v: &[u128]| v[v.len() / 2];
    eprintln!(
        "quiet pair round trip median {} µs before, {} µs during a flood of {sent} events",
        median(&before),
        median(&during)
    );
    assert!(sent > 10_000, "the flood was real: {sent}");
    assert!(
        median(&during) <= 2 * median(&before),
        "before {:?} during {:?}",
        median(&before),
        median(&during)
    );
    // The flooder was told to slow down.
    assert!(refused > 0, "rate_limited errors seen by the flooder");
    victim.drain(QUIET).await;
    app.stop().await;
}

/// A raw Engine.IO client that joins `room` and then sends candidates as
/// fast as TCP takes them until `stop`; returns (sent, `rate_limited` seen).
async fn flood(
    addr: std::net::SocketAddr,
    token: String,
    room: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u64, u64) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (mut sink, mut stream) = ws.split();
    let mut next = async || loop {
        // Pings ("2") need no answer within this short test.
        if let Some(Ok(Message::Text(t))) = stream.next().await
            && t.as_str() != "2"
        {
            return t.to_string();
        }
    };
    assert!(next().await.starts_with('0'));
    sink.send(Message::text(format!("40{}", json!({ "token": token }))))
        .await
        .unwrap();
    let answer = next().await;
    assert!(answer.starts_with("40"), "{answer}");
    let join = format!("420{}", json!(["webrtc:join_room", { "roomId": room }]));
    sink.send(Message::text(join)).await.unwrap();
    while !next().await.starts_with("430") {}
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = {
        let refused = refused.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                if let Message::Text(t) = m
                    && t.contains("rate_limited")
                {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    let frame = format!(
        "42{}",
        json!(["webrtc:ice_candidate", { "roomId": room, "candidate": "flood" }])
    );
    let mut sent = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for _ in 0..100 {
            sink.feed(Message::text(frame.clone())).await.unwrap();
        }
        sink.flush().await.unwrap();
        sent += 100;
    }
    let _ = sink.close().await;
    reader.abort();
    (sent, refused.load(std::sync::atomic::Ordering::Relaxed))
}
