//! The admin view's feed (issue 20): `admin:subscribe` for admins only, a
//! snapshot of what is live (calls, tutoring, schedules with their queues,
//! chats, the latest transitions, this node's sockets by role), pushes
//! every 2 s, and never SDP, candidates or chat text.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

/// Longer than one push interval (2 s).
const PUSH_WAIT: Duration = Duration::from_millis(2_600);

async fn subscribe(c: &mut SioClient) -> Value {
    c.emit_ack("admin:subscribe", json!({})).await
}

fn ids(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn only_an_admin_may_subscribe_and_the_others_hear_nothing() {
    let app = TestApp::spawn().await;
    for (sub, role) in [("d1", "doctor"), ("p1", "patient"), ("c1", "customer")] {
        let mut c = app.connect(&app.token(sub, role)).await;
        let ack = subscribe(&mut c).await;
        assert_eq!(ack["ok"], false, "{role}: {ack}");
        assert_eq!(code(&ack), "forbidden", "{role}");
        assert!(ack.get("snapshot").is_none());
        c.expect_no_event("admin:snapshot", PUSH_WAIT).await;
    }
    // Without an ack, the refusal is an `error` event, as for every event.
    let mut c = app.connect(&app.token("d2", "doctor")).await;
    c.emit("admin:subscribe", json!({}));
    let err = c.expect_event("error").await;
    assert_eq!(err[0]["error"]["code"], "forbidden");
    c.expect_no_event("admin:snapshot", PUSH_WAIT).await;
    app.stop().await;
}

#[tokio::test]
async fn the_snapshot_shows_what_is_live_and_the_sockets_by_role() {
    let app = TestApp::spawn().await;
    let doctor = app.token("d1", "doctor");
    let patient = app.token("p1", "patient");
    let waiting = app.token("p2", "patient");
    let customer = app.token("c1", "customer");
    let learner = app.token("l1", "learner");
    let mut admin = app.connect(&app.token("root", "admin")).await;
    let _d = app.connect(&doctor).await;
    let _p = app.connect(&patient).await;

    let (status, body) = app
        .post(
            "/api/schedules",
            &doctor,
            json!({ "date": "2026-12-07", "startTime": "09:00", "endTime": "17:00" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let sid = id_of(&body["data"]);
    let ack = subscribe(&mut admin).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(
        ack["snapshot"]["board"]["schedules"],
        json!([]),
        "an upcoming schedule with nobody queued is not on the board"
    );
    app.post(&format!("/api/schedules/{sid}/start"), &doctor, json!({}))
        .await;
    for t in [&patient, &waiting] {
        let (status, body) = app
            .post(&format!("/api/schedules/{sid}/join-queue"), t, json!({}))
            .await;
        assert_eq!(status, 201, "{body}");
        if t == &patient {
            let entry = id_of(&body["data"]);
            let (status, _) = app
                .post(
                    &format!("/api/queue/{entry}/toggle-ready"),
                    t,
                    json!({ "isReady": true }),
                )
                .await;
            assert_eq!(status, 200);
        }
    }
    let (status, body) = app
        .post(
            &format!("/api/schedules/{sid}/start-call"),
            &doctor,
            json!({ "patientId": "p1" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let call = id_of(&body["data"]);
    let (status, body) = app
        .post(
            "/api/sessions",
            &learner,
            json!({ "host_id": "t1", "skill_name": "Piano" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let session = id_of(&body["data"]);
    let (status, body) = app
        .post(
            "/api/chat-sessions",
            &customer,
            json!({ "concern": "CONCERN-MARKER" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let chat = id_of(&body["data"]);

    app.advance(Duration::from_secs(20));
    let snap = subscribe(&mut admin).await["snapshot"].clone();
    let board = &snap["board"];
    assert_eq!(board["calls"]["total"], 1, "{board}");
    assert_eq!(ids(&board["calls"]), [call.as_str()]);
    let row = &board["calls"]["items"][0];
    assert_eq!(
        (
            &row["kind"],
            &row["status"],
            &row["hostId"],
            &row["guestId"]
        ),
        (
            &json!("queue"),
            &json!("INVITED"),
            &json!("d1"),
            &json!("p1")
        )
    );
    assert!(row["ageSecs"].as_i64().unwrap() >= 20, "{row}");
    assert_eq!(ids(&board["tutoring"]), [session.as_str()]);
    assert_eq!(board["tutoring"]["items"][0]["kind"], "tutoring");
    assert_eq!(ids(&board["chats"]), [chat.as_str()], "{board}");
    assert_eq!(board["chats"]["items"][0]["status"], "pending");
    let schedules = board["schedules"].as_array().unwrap();
    assert_eq!(schedules.len(), 1, "{board}");
    let s = &schedules[0];
    assert_eq!(
        (
            &s["id"],
            &s["status"],
            &s["waiting"],
            &s["ready"],
            &s["inCall"]
        ),
        (
            &json!(sid),
            &json!("ONLINE"),
            &json!(1),
            &json!(1),
            &json!(0)
        ),
        "p1 is invited (READY until they accept), p2 waits"
    );
    let actions: Vec<&str> = board["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions[0], "chat.create", "newest first: {actions:?}");
    assert!(actions.contains(&"schedule.start"), "{actions:?}");
    let node = &snap["node"];
    assert_eq!(
        node["socketsByRole"],
        json!({ "admin": 1, "doctor": 1, "patient": 1 })
    );
    assert_eq!(node["sockets"], 3);
    assert!(!node["samples"].as_array().unwrap().is_empty());
    assert_eq!(node["outbox"], Value::Null, "webhooks are off");
    assert!(
        !snap.to_string().contains("CONCERN-MARKER"),
        "a chat's concern is the customer's text"
    );

    // Once the call is over it leaves the board; the push says so too.
    let (status, _) = app
        .post(
            &format!("/api/call-sessions/{call}/decline"),
            &patient,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    // A push read before the decline may still be on its way: at most one.
    let mut seen = 0;
    loop {
        let pushed = admin.expect_event("admin:snapshot").await;
        if pushed[0]["board"]["calls"]["total"] == 0 {
            break;
        }
        seen += 1;
        assert!(seen < 2, "{}", pushed[0]);
    }
    app.stop().await;
}

#[tokio::test]
async fn pushes_follow_every_two_seconds_until_unsubscribed_and_carry_no_content() {
    let app = TestApp::spawn().await;
    let (dt, pt) = (app.token("d1", "doctor"), app.token("p1", "patient"));
    let (status, body) = app
        .post(
            "/api/call-sessions/start",
            &pt,
            json!({ "doctor_id": "d1" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let room = body["data"]["room_id"].as_str().unwrap().to_owned();
    let call = body["data"]["call_session_id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/api/call-sessions/{call}/confirm"),
        &dt,
        json!({}),
    )
    .await;
    let mut admin = app.connect(&app.token("root", "admin")).await;
    assert_eq!(subscribe(&mut admin).await["ok"], true);

    let mut d = app.connect(&dt).await;
    let mut p = app.connect(&pt).await;
    for c in [&mut d, &mut p] {
        let ack = c
            .emit_ack("webrtc:join_room", json!({ "roomId": room }))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let sdp = "v=0 SDP-MARKER";
    d.emit_ack(
        "webrtc:offer",
        json!({ "roomId": room, "sdp": { "type": "offer", "sdp": sdp } }),
    )
    .await;
    d.emit_ack(
        "webrtc:ice_candidate",
        json!({ "roomId": room, "candidate": { "candidate": "candidate:CANDIDATE-MARKER" } }),
    )
    .await;
    let offer = p.expect_event("webrtc:offer").await;
    assert_eq!(offer[0]["sdp"]["sdp"], sdp);

    let pushes: Vec<Value> = admin
        .drain(Duration::from_millis(4_500))
        .await
        .into_iter()
        .filter(|(n, _)| n == "admin:snapshot")
        .map(|(_, mut a)| a.remove(0))
        .collect();
    assert!(
        (2..=3).contains(&pushes.len()),
        "one push per 2 s: {}",
        pushes.len()
    );
    let last = &pushes[pushes.len() - 1];
    assert_eq!(last["board"]["calls"]["items"][0]["status"], "CONFIRMED");
    assert_eq!(last["node"]["sockets"], 3);
    for push in &pushes {
        let text = push.to_string();
        assert!(!text.contains("SDP-MARKER") && !text.contains("CANDIDATE-MARKER"));
    }

    let ack = admin.emit_ack("admin:unsubscribe", json!({})).await;
    assert_eq!(ack, json!({ "ok": true }));
    admin.drain(Duration::from_millis(50)).await;
    admin.expect_no_event("admin:snapshot", PUSH_WAIT).await;
    app.stop().await;
}

#[tokio::test]
async fn the_page_is_served_from_the_binary_and_loads_nothing_from_elsewhere() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = http.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "/admin/");
    for (path, kind) in [
        ("/admin/", "text/html"),
        ("/admin/admin.js", "text/javascript"),
        ("/admin/admin.css", "text/css"),
    ] {
        let res = http.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        // The SVG namespace is a name, not a fetch.
        let body = res
            .text()
            .await
            .unwrap()
            .replace("http://www.w3.org/2000/svg", "");
        for external in ["http://", "https://", "//cdn", "innerHTML"] {
            assert!(!body.contains(external), "{path} holds `{external}`");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_watcher_is_disconnected_once_its_token_expires() {
    let app = TestApp::spawn().await;
    let soon = sign(
        json!({ "sub": "ops-1", "role": "admin", "exp": now_secs() + 30 }),
        SECRET,
    );
    let mut watcher = app.connect(&soon).await;
    assert_eq!(subscribe(&mut watcher).await["ok"], true);
    let mut late = app.connect(&soon).await;
    let lasting = app.token("ops-2", "admin");
    let mut other = app.connect(&lasting).await;
    assert_eq!(subscribe(&mut other).await["ok"], true);

    // The server's clock passes the token's `exp`.
    app.advance(Duration::from_secs(60));
    let ack = subscribe(&mut late).await;
    assert_eq!(code(&ack), "token_expired", "{ack}");
    tokio::time::timeout(PUSH_WAIT, watcher.closed())
        .await
        .expect("the expired watcher is disconnected within a push interval");
    // The other admin goes on watching.
    other.expect_event("admin:snapshot").await;
    app.stop().await;
}
