//! CONTRACT §9 through the README's test command: ICE servers with coturn
//! REST credentials (on the server's clock), tickets, and the PeerJS
//! broker's websocket with a real client. The full protocol runs in
//! tests-js/test/peerjs*.test.mjs against the binary, coturn in turn.test.mjs.

use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn peer(app: &TestApp, id: &str, token: &str) -> Ws {
    let url = format!(
        "ws://{}/peerjs/peerjs?key=peerjs&id={id}&token={token}&version=1.5.5",
        app.server().local_addr()
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(text) = msg {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

fn turn_password(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn ice_servers_carry_turn_credentials_that_expire_on_the_servers_clock() {
    let app = TestApp::spawn_with(|c| {
        c.media.turn_urls = vec!["turn:turn.test:3478".into()];
        c.media.turn_secret = Some("s3cret".into());
        c.media.stun_urls = vec!["stun:turn.test:3478".into()];
        c.media.turn_ttl = 600;
    })
    .await;
    let token = app.token("pat-1", "patient");
    let (status, first) = app.get("/api/ice-servers", &token).await;
    assert_eq!(status, 200);
    let data = &first["data"];
    assert_eq!(data["ttl"], 600);
    assert_eq!(
        data["iceServers"][0],
        json!({ "urls": ["stun:turn.test:3478"] })
    );
    let turn = &data["iceServers"][1];
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "pat-1");
    let expiry: i64 = expiry.parse().unwrap();
    assert!((expiry - (now_secs() + 600)).abs() <= 2);
    assert_eq!(turn["credential"], turn_password("s3cret", username));

    // An hour later on the server's clock, the expiry moves with it.
    app.advance(Duration::from_secs(3600));
    let (_, later) = app.get("/api/ice-servers", &token).await;
    let username = later["data"]["iceServers"][1]["username"].as_str().unwrap();
    let later_expiry: i64 = username.split_once(':').unwrap().0.parse().unwrap();
    assert_eq!(later_expiry - expiry, 3600);

    let (status, _) = app.get("/api/ice-servers", "").await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[tokio::test]
async fn a_ticket_opens_the_broker_and_relay_needs_a_live_call() {
    let app = TestApp::spawn().await;
    let doctor = app.token("doc-1", "doctor");
    let patient = app.token("pat-1", "patient");
    let stranger = app.token("eve-1", "patient");
    let (status, call) = app
        .post(
            "/api/call-sessions/start",
            &patient,
            json!({ "call_type": "video", "doctor_id": "doc-1" }),
        )
        .await;
    assert_eq!(status, 201, "{call}");
    let call_id = call["data"]["call_session_id"].as_str().unwrap().to_owned();

    let (status, ticket) = app.post("/api/peerjs/ticket", &patient, json!({})).await;
    assert_eq!(status, 200);
    let ticket = ticket["data"]["token"].as_str().unwrap().to_owned();
    let (status, _) = app.get("/api/me", &ticket).await;
    assert_eq!(status, 401, "a ticket is not a REST token");

    let mut pat = peer(&app, "pat-peer", &ticket).await;
    assert_eq!(next(&mut pat).await, json!({ "type": "OPEN" }));
    let mut doc = peer(&app, "doc-peer", &doctor).await;
    assert_eq!(next(&mut doc).await["type"], "OPEN");
    let mut thief = peer(&app, "doc-peer", &stranger).await;
    assert_eq!(next(&mut thief).await["type"], "ID-TAKEN");

    send(
        &mut doc,
        json!({ "type": "OFFER", "src": "forged", "dst": "pat-peer", "payload": { "sdp": "x" } }),
    )
    .await;
    assert_eq!(
        next(&mut pat).await,
        json!({ "type": "OFFER", "src": "doc-peer", "dst": "pat-peer", "payload": { "sdp": "x" } })
    );

    // set-peer-id: the caller's own id yes, the doctor's no.
    let path = format!("/api/call-sessions/{call_id}/set-peer-id");
    let (status, _) = app
        .post(&path, &patient, json!({ "peerId": "doc-peer" }))
        .await;
    assert_eq!(status, 403);
    let (status, row) = app
        .post(&path, &patient, json!({ "peerId": "pat-peer" }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(row["data"]["patientPeerId"], "pat-peer");
    app.stop().await;
}
