//! Slow and abusive clients (CONTRACT §2: one abusive client never slows
//! or disturbs another user): oversized bodies are answered, not cut off;
//! slow headers, silent websockets and stalled readers are disconnected;
//! per-user sockets, per-IP handshakes and per-user REST requests are
//! capped, each refusal with its own code.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Reads one HTTP response (headers and a `Content-Length` body).
async fn read_response(tcp: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("readable");
        assert!(
            n > 0,
            "closed before a whole answer: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return (status, text[end + 4..end + 4 + len].to_owned());
            }
        }
    }
}

#[tokio::test]
async fn an_oversized_body_is_answered_413_not_cut_off() {
    let app = TestApp::spawn().await;
    let token = app.token("l1", "learner");
    let limit = app.config.max_body_bytes;
    assert_eq!(limit, MIB);
    for size in [MIB + 16 * KIB, 2 * MIB] {
        for round in 0..20 {
            let mut tcp = TcpStream::connect(app.addr).await.unwrap();
            let head = format!(
                "POST /api/sessions HTTP/1.1\r\nHost: consultd\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
            );
            tcp.write_all(head.as_bytes()).await.unwrap();
            // The whole upload goes through: no broken pipe, no reset.
            tcp.write_all(&vec![b' '; size])
                .await
                .unwrap_or_else(|e| panic!("{size} bytes, round {round}: {e}"));
            let (status, body) = read_response(&mut tcp).await;
            assert_eq!(status, 413, "{size} bytes, round {round}");
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["error"]["code"], "too_large", "{body}");
        }
    }
    // Chunked, with no declared length: read up to the limit, then the same.
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/sessions HTTP/1.1\r\nHost: consultd\r\nAuthorization: Bearer {token}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let piece = vec![b' '; 64 * KIB];
    for _ in 0..32 {
        tcp.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await
            .unwrap();
        tcp.write_all(&piece).await.unwrap();
        tcp.write_all(b"\r\n").await.unwrap();
    }
    tcp.write_all(b"0\r\n\r\n").await.unwrap();
    let (status, _) = read_response(&mut tcp).await;
    assert_eq!(status, 413, "chunked 2 MiB");
    // A chunked body under the limit still reaches its route.
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    let body = json!({ "host_id": "t1", "skill_name": "Chess" }).to_string();
    let req = format!(
        "POST /api/sessions HTTP/1.1\r\nHost: consultd\r\nAuthorization: Bearer {token}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let (status, answer) = read_response(&mut tcp).await;
    assert_eq!(status, 201, "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_closed() {
    let app = TestApp::spawn_with(|c| c.header_timeout_secs = 1).await;
    let started = Instant::now();
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    // One header byte every 200 ms: never idle, never done.
    let closed = async {
        for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if tcp.write_all(&[*b]).await.is_err() {
                return;
            }
            let mut probe = [0u8; 64];
            let read = tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut probe));
            if let Ok(Ok(0) | Err(_)) = read.await {
                return;
            }
        }
        panic!("still open after the whole trickle");
    };
    tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("closed in time");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "not before the timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "at the timeout: {took:?}");
    // A normal request is unaffected.
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A websocket that completes the Socket.IO CONNECT and then does only
/// what the test makes it do (no automatic pong, no reading).
async fn raw_socket(addr: SocketAddr, token: &str) -> Ws {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = next_text(&mut ws).await.unwrap();
    assert!(open.starts_with('0'), "{open}");
    ws.send(Message::text(format!("40{}", json!({ "token": token }))))
        .await
        .unwrap();
    loop {
        let answer = next_text(&mut ws).await.unwrap();
        if answer == "2" {
            ws.send(Message::text("3")).await.unwrap();
            continue;
        }
        assert!(answer.starts_with("40"), "{answer}");
        return ws;
    }
}

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Whether the server closes `ws` within `within` (pings are not answered).
async fn closed_within(ws: &mut Ws, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_websocket_that_stops_answering_pings_is_dropped() {
    let app = TestApp::spawn_with(|c| {
        c.ping_interval_secs = 1;
        c.ping_timeout_secs = 1;
    })
    .await;
    let token = app.token("quiet", "patient");
    let started = Instant::now();
    let mut silent = raw_socket(app.addr, &token).await;
    assert!(
        closed_within(&mut silent, Duration::from_secs(6)).await,
        "dropped"
    );
    let took = started.elapsed();
    // Engine.IO's heartbeat checks once per interval for the last pong.
    assert!(
        took >= Duration::from_millis(900),
        "not before a ping was due: {took:?}"
    );
    // A client that answers stays.
    let mut alive = app.connect(&app.token("chatty", "patient")).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        alive.emit_ack("identify_as_doctor", json!({})).await["error"]["code"],
        "forbidden",
        "still connected and answering"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_that_stops_reading_is_disconnected() {
    let app = TestApp::spawn_with(|c| {
        c.socket_buffer = 16;
        c.event_rate = 0;
        c.event_burst = 0;
    })
    .await;
    let patient = app.token("stall-p", "patient");
    let (status, body) = app
        .post(
            "/api/call-sessions/start",
            &patient,
            json!({ "doctor_id": "stall-d" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let room = body["data"]["room_id"].as_str().unwrap().to_owned();
    let mut doctor = app.connect(&app.token("stall-d", "doctor")).await;
    let ack = doctor
        .emit_ack("webrtc:join_room", json!({ "roomId": room }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    // The patient joins, then reads nothing more.
    let mut stalled = raw_socket(app.addr, &patient).await;
    stalled
        .send(Message::text(format!(
            "421{}",
            json!(["webrtc:join_room", { "roomId": room }])
        )))
        .await
        .unwrap();
    loop {
        let frame = next_text(&mut stalled).await.unwrap();
        if frame == "2" {
            stalled.send(Message::text("3")).await.unwrap();
        } else if frame.starts_with("431") {
            break;
        }
    }
    doctor.expect_event("webrtc:peer_joined").await;

    let padding = "a".repeat(1000);
    let started = Instant::now();
    let mut cut = None;
    'send: for i in 0..50_000 {
        doctor.emit(
            "webrtc:ice_candidate",
            json!({ "roomId": room, "candidate": format!("{i} {padding}") }),
        );
        if i % 500 == 499 {
            for (name, args) in doctor.drain(Duration::from_millis(1)).await {
                if name == "webrtc:peer_left" {
                    cut = Some((i, args));
                    break 'send;
                }
            }
        }
    }
    let (sent, left) = match cut {
        Some(found) => found,
        None => (50_000, doctor.expect_event("webrtc:peer_left").await),
    };
    assert_eq!(left[0]["userId"], "stall-p", "{left:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "cut off while the flood went on, not at the ping timeout: {:?} after {sent} candidates",
        started.elapsed()
    );
    // Its connection is closed: once it reads again, it finds the end.
    assert!(closed_within(&mut stalled, Duration::from_secs(10)).await);
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("consultd_sockets_overflowed_total") && !l.ends_with(" 0")),
        "counted: {text}"
    );
    // The patient reconnects, rejoins and gets the room's signaling again.
    let mut again = app.connect(&patient).await;
    let ack = again
        .emit_ack("webrtc:join_room", json!({ "roomId": room }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let replayed = again.expect_event("webrtc:ice_candidate").await;
    assert_eq!(replayed[0]["from"], "stall-d");
    app.stop().await;
}

#[tokio::test]
async fn each_user_has_a_socket_cap() {
    let app = TestApp::spawn_with(|c| c.max_sockets_per_user = 3).await;
    let token = app.token("tabs", "patient");
    let mut tabs = Vec::new();
    for _ in 0..3 {
        tabs.push(app.connect(&token).await);
    }
    let refused = SioClient::connect(app.addr, Handshake::auth(&token))
        .await
        .err()
        .expect("a fourth socket is refused");
    assert_eq!(refused["message"], "too_many_connections", "{refused}");
    // Per user: someone else connects.
    let _other = app.connect(&app.token("other", "patient")).await;
    // A closed tab frees its place.
    let tab = tabs.pop().unwrap();
    tab.disconnect();
    let deadline = Instant::now() + WAIT;
    loop {
        match SioClient::connect(app.addr, Handshake::auth(&token)).await {
            Ok(c) => {
                tabs.push(c);
                break;
            }
            Err(e) => {
                assert_eq!(e["message"], "too_many_connections");
                assert!(Instant::now() < deadline, "the place was never freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    app.stop().await;
}

async fn connect_from(
    app: &TestApp,
    user: &str,
    forwarded: Option<&str>,
) -> Result<SioClient, Value> {
    let mut hs = Handshake::auth(&app.token(user, "patient"));
    if let Some(ip) = forwarded {
        hs = hs.header("x-forwarded-for", ip);
    }
    SioClient::connect(app.addr, hs).await
}

#[tokio::test]
async fn handshakes_are_rate_limited_per_client_ip() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limit_exempt = String::new();
        c.handshake_rate = 1;
        c.handshake_burst = 3;
    })
    .await;
    let mut open = Vec::new();
    for i in 0..3 {
        open.push(connect_from(&app, &format!("u{i}"), None).await.unwrap());
    }
    let refused = connect_from(&app, "u9", None).await.err().expect("refused");
    assert_eq!(refused["message"], "rate_limited", "{refused}");
    // From a peer that is not a trusted proxy, X-Forwarded-For changes nothing.
    let refused = connect_from(&app, "u9", Some("9.9.9.9"))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused["message"], "rate_limited");
    // The bucket refills at the rate.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    open.push(connect_from(&app, "u9", None).await.unwrap());
    app.stop().await;

    // Behind a trusted proxy, each forwarded client has its own bucket.
    let app = TestApp::spawn_with(|c| {
        c.rate_limit_exempt = String::new();
        c.trusted_proxies = "127.0.0.1".into();
        c.handshake_rate = 1;
        c.handshake_burst = 2;
    })
    .await;
    for i in 0..2 {
        connect_from(&app, &format!("a{i}"), Some("1.1.1.1"))
            .await
            .unwrap();
    }
    let refused = connect_from(&app, "a9", Some("1.1.1.1"))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused["message"], "rate_limited");
    connect_from(&app, "b0", Some("2.2.2.2")).await.unwrap();
    // The default exempts loopback (local tools, a local proxy not trusted).
    app.stop().await;
    let app = TestApp::spawn_with(|c| {
        c.handshake_rate = 1;
        c.handshake_burst = 1;
    })
    .await;
    for i in 0..10 {
        connect_from(&app, &format!("local{i}"), None)
            .await
            .unwrap();
    }
    app.stop().await;
}

#[tokio::test]
async fn rest_requests_are_rate_limited_per_user() {
    let app = TestApp::spawn_with(|c| {
        c.rest_rate = 1;
        c.rest_burst = 5;
    })
    .await;
    let busy = app.token("busy", "patient");
    for i in 0..5 {
        let (status, body) = app.get("/api/me", &busy).await;
        assert_eq!(status, 200, "request {i}: {body}");
    }
    let (status, body) = app.get("/api/me", &busy).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(body["success"], false);
    let (status, _) = app.get("/api/me", &app.token("calm", "patient")).await;
    assert_eq!(status, 200, "another user is not slowed");
    app.stop().await;
}

/// Found by the fuzzer: an Engine.IO v3 polling payload whose declared
/// length ends inside a surrogate pair kept a runtime worker spinning for
/// ever (two of them stopped the server). It is refused now.
#[tokio::test]
async fn a_v3_polling_payload_cut_inside_a_character_is_refused() {
    let app = TestApp::spawn().await;
    let base = format!("{}/socket.io/?EIO=3&transport=polling", app.url(""));
    for body in ["1:𝕊4ab", "2:4𝕊1:4"] {
        let open = app
            .http
            .get(&base)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let sid = open
            .split("\"sid\":\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let post = app
            .http
            .post(format!("{base}&sid={sid}"))
            .body(body)
            .timeout(WAIT)
            .send()
            .await
            .expect("answered, not spun on");
        assert_eq!(post.status(), 400, "{body}");
    }
    for _ in 0..4 {
        let res = tokio::time::timeout(
            Duration::from_secs(2),
            app.http.get(app.url("/healthz")).send(),
        )
        .await
        .expect("the server still answers")
        .unwrap();
        assert_eq!(res.status(), 200);
    }
    app.stop().await;
}
