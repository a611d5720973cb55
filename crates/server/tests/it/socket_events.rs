//! Socket events on the root namespace: acks, errors, limits, rooms.

use std::time::Duration;

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn an_emit_right_after_connect_is_never_lost() {
    let app = TestApp::spawn().await;
    let token = app.token("1", "doctor");
    for round in 0..50 {
        let mut c = app.connect(&token).await;
        // No wait between the CONNECT answer and the emit, as in a `connect` callback.
        let ack = c
            .emit_ack("identify_as_doctor", json!({ "doctorId": 1 }))
            .await;
        assert_eq!(ack, json!({ "ok": true }), "round {round}");
        c.disconnect();
    }
    // The same for Engine.IO v3 clients, connected to "/" implicitly.
    for round in 0..50 {
        let mut c = SioClient::connect(app.addr, Handshake::query(&token).legacy())
            .await
            .unwrap();
        assert_eq!(
            c.emit_ack("identify_as_doctor", json!({})).await,
            json!({ "ok": true }),
            "v3 round {round}"
        );
        c.disconnect();
    }
    app.stop().await;
}

#[tokio::test]
async fn identify_as_doctor_is_for_hosts_only() {
    let app = TestApp::spawn().await;
    for (role, ok) in [
        ("doctor", true),
        ("teacher", true),
        ("mechanic", true),
        ("patient", false),
        ("learner", false),
        ("customer", false),
        ("admin", false),
    ] {
        let mut c = app.connect(&app.token("9", role)).await;
        let ack = c
            .emit_ack("identify_as_doctor", json!({ "anything": [1, 2] }))
            .await;
        if ok {
            assert_eq!(ack, json!({ "ok": true }), "{role}");
        } else {
            assert_eq!(ack["ok"], false, "{role}");
            assert_eq!(ack["error"]["code"], "forbidden", "{role}");
        }
    }
    // Without an ack, the failure arrives as an `error` event with the same object.
    let mut c = app.connect(&app.token("9", "patient")).await;
    c.emit("identify_as_doctor", json!({}));
    let err = c.expect_event("error").await;
    assert_eq!(err[0]["ok"], false);
    assert_eq!(err[0]["error"]["code"], "forbidden");
    app.stop().await;
}

#[tokio::test]
async fn unknown_events_get_bad_request_with_an_ack_and_silence_without() {
    let app = TestApp::spawn().await;
    let mut c = app.connect(&app.token("3", "patient")).await;
    let ack = c.emit_ack("no_such_event", json!({ "x": 1 })).await;
    assert_eq!(ack["ok"], false);
    assert_eq!(ack["error"]["code"], "bad_request");
    c.emit("no_such_event", json!({}));
    c.expect_silence(Duration::from_millis(300)).await;
    // Still usable afterwards.
    let ack = c.emit_ack("identify_as_doctor", json!({})).await;
    assert_eq!(ack["error"]["code"], "forbidden");
    app.stop().await;
}

#[tokio::test]
async fn oversized_events_are_answered_too_large_and_the_socket_survives() {
    let app = TestApp::spawn().await;
    let mut c = app.connect(&app.token("4", "doctor")).await;
    let big = "x".repeat(70 * 1024);
    let ack = c
        .emit_ack("identify_as_doctor", json!({ "blob": big }))
        .await;
    assert_eq!(ack["error"]["code"], "too_large");
    // Up to the 1 MiB frame limit the answer still comes back.
    let huge = "y".repeat(900 * 1024);
    let ack = c
        .emit_ack("identify_as_doctor", json!({ "blob": huge }))
        .await;
    assert_eq!(ack["error"]["code"], "too_large");
    c.emit("identify_as_doctor", json!({ "blob": big }));
    assert_eq!(
        c.expect_event("error").await[0]["error"]["code"],
        "too_large"
    );
    // Just under the limit is fine.
    let fits = "z".repeat(60 * 1024);
    assert_eq!(
        c.emit_ack("identify_as_doctor", json!({ "blob": fits }))
            .await,
        json!({ "ok": true })
    );
    app.stop().await;
}

#[tokio::test]
async fn a_flooding_socket_is_rate_limited_alone() {
    let app = TestApp::spawn_with(|c| {
        c.event_rate = 1;
        c.event_burst = 5;
    })
    .await;
    let mut flood = app.connect(&app.token("5", "doctor")).await;
    let mut quiet = app.connect(&app.token("6", "doctor")).await;
    let pending: Vec<_> = (0..30)
        .map(|_| flood.emit_ack_later("identify_as_doctor", json!({})))
        .collect();
    let mut limited = 0;
    let mut passed = 0;
    for rx in pending {
        let ack = tokio::time::timeout(WAIT, rx).await.unwrap().unwrap();
        match ack["error"]["code"].as_str() {
            Some("rate_limited") => limited += 1,
            None => passed += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(
        (5..=6).contains(&passed),
        "a burst of 5 passes, plus at most one refill at 1/s: {passed}"
    );
    assert_eq!(limited + passed, 30);
    // Another user's socket has its own bucket.
    assert_eq!(
        quiet.emit_ack("identify_as_doctor", json!({})).await,
        json!({ "ok": true })
    );
    // The flooder recovers once the bucket refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        flood.emit_ack("identify_as_doctor", json!({})).await,
        json!({ "ok": true })
    );
    app.stop().await;
}

#[tokio::test]
async fn malformed_packets_neither_crash_nor_disturb_others() {
    let app = TestApp::spawn().await;
    let token = app.token("8", "doctor");
    let mut bystander = app.connect(&token).await;
    let frames = [
        "42not json",
        "42[",
        "42[]",
        "42[1,2,3]",
        "42{\"a\":1}",
        "42\"just a string\"",
        "421[null]",
        "4299999999999999999999[\"identify_as_doctor\"]",
        "43[]",
        "45-[\"x\"]",
        "49",
        "4",
        "",
        "\u{0}\u{1}",
        "40{\"token\":1}",
        "42/other-ns,[\"identify_as_doctor\"]",
    ];
    for frame in frames {
        let c = app.connect(&token).await;
        c.send_raw(frame);
        // Each socket either answers or is closed; the server stays up either way.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A packet socket.io cannot parse (here: a name that is not a string)
    // closes that one connection, as the reference server does.
    let c = app.connect(&token).await;
    c.send_raw("4277[12,{}]");
    c.closed().await;
    assert_eq!(
        bystander.emit_ack("identify_as_doctor", json!({})).await,
        json!({ "ok": true })
    );
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn every_socket_of_a_user_joins_their_user_room() {
    let app = TestApp::spawn().await;
    let mut tab1 = app.connect(&app.token("42", "patient")).await;
    let mut tab2 = SioClient::connect(
        app.addr,
        Handshake::query(&app.token("42", "patient")).legacy(),
    )
    .await
    .unwrap();
    let mut other = app.connect(&app.token("43", "patient")).await;
    app.server()
        .io()
        .to("user:42")
        .emit("ping_user", &json!({ "n": 1 }))
        .await
        .unwrap();
    assert_eq!(
        tab1.expect_event("ping_user").await,
        vec![json!({ "n": 1 })]
    );
    assert_eq!(
        tab2.expect_event("ping_user").await,
        vec![json!({ "n": 1 })]
    );
    other.expect_silence(Duration::from_millis(300)).await;
    app.stop().await;
}

#[tokio::test]
async fn shutdown_closes_sockets_so_clients_can_reconnect_elsewhere() {
    let app = TestApp::spawn().await;
    let c = app.connect(&app.token("1", "doctor")).await;
    let addr = app.addr;
    let started = std::time::Instant::now();
    app.stop().await;
    c.closed().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
