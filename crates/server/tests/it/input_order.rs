//! One rule for every socket event and every REST route: parse, validate,
//! then authorise, then act. A wrong type is `bad_request` whoever sends
//! it; only a well-formed request learns whether its caller may make it.
//! The tables cover every name in `EVENTS` and every route in `ROUTES`: a
//! new event or route without a row fails here.

use crate::common::*;
use consultd_server::http::ROUTES;
use consultd_server::socket::EVENTS;
use serde_json::{Value, json};

/// An event's malformed payload (`None`: it takes no input) and a
/// well-formed one for a room the caller is not in, with its answer.
fn event_row(event: &str) -> (Option<Value>, Value, &'static str) {
    let relay_bad = json!({ "roomId": "r1", "to": [1], "sdp": "v=0" });
    let relay_good = json!({ "roomId": "r1", "sdp": "v=0" });
    match event {
        "identify_as_doctor" => (None, json!({}), "forbidden"),
        "webrtc:join_room" => (
            Some(json!({ "roomId": { "x": 1 } })),
            json!({ "roomId": "r1" }),
            "forbidden",
        ),
        "join_consultation_room" => (
            Some(json!({ "appointmentId": [] })),
            json!({ "appointmentId": "a1" }),
            "forbidden",
        ),
        "webrtc:offer"
        | "webrtc:answer"
        | "webrtc:ice_candidate"
        | "webrtc_offer"
        | "webrtc_answer"
        | "webrtc_ice_candidate" => (Some(relay_bad), relay_good, "forbidden"),
        "webrtc:leave_room" => (
            Some(json!({ "roomId": true })),
            json!({ "roomId": "r1" }),
            "<ok>",
        ),
        "chat:join_room" => (
            Some(json!({ "roomId": null })),
            json!({ "roomId": "c1" }),
            "forbidden",
        ),
        "chat:send_message" => (
            // The case found by trying it: a wrong type from a socket that
            // has not joined was answered `forbidden`.
            Some(json!({ "roomId": "x", "content": { "html": "<b>" } })),
            json!({ "roomId": "x", "content": "hi" }),
            "forbidden",
        ),
        "chat:typing" => (
            Some(json!({ "roomId": "x", "isTyping": "yes" })),
            json!({ "roomId": "x", "isTyping": true }),
            "forbidden",
        ),
        "chat:read" => (
            Some(json!({ "roomId": "x", "messageId": {} })),
            json!({ "roomId": "x", "messageId": "m1" }),
            "forbidden",
        ),
        "chat:leave_room" => (
            Some(json!({ "roomId": 1.5 })),
            json!({ "roomId": "x" }),
            "<ok>",
        ),
        // The payload is ignored: nothing to be malformed.
        "admin:subscribe" => (None, json!({}), "forbidden"),
        "admin:unsubscribe" => (None, json!({}), "<ok>"),
        other => panic!("no row for the event `{other}`: add it to this table"),
    }
}

#[tokio::test]
async fn every_event_checks_its_input_before_its_caller() {
    let app = TestApp::spawn().await;
    // A guest in no room: every event below is one it may not make.
    let mut c = app.connect(&app.token("g1", "patient")).await;
    for &event in EVENTS {
        let (bad, good, refused) = event_row(event);
        if let Some(bad) = bad {
            let ack = c.emit_ack(event, bad.clone()).await;
            assert_eq!(code(&ack), "bad_request", "{event} {bad}: {ack}");
            let ack = c.emit_ack(event, json!("not an object")).await;
            assert_eq!(code(&ack), "bad_request", "{event} with a string: {ack}");
        }
        let ack = c.emit_ack(event, good.clone()).await;
        assert_eq!(code(&ack), refused, "{event} {good}: {ack}");
    }
    // Without an ack, the same refusal comes as an `error` event.
    c.emit(
        "chat:send_message",
        json!({ "roomId": "x", "content": { "html": "<b>" } }),
    );
    let err = c.expect_event("error").await;
    assert_eq!(err[0]["error"]["code"], "bad_request", "{err:?}");
    app.stop().await;
}

/// A route's malformed input sent by a caller who may not use it (`None`:
/// the route takes no input, so nothing can be malformed).
fn route_row(method: &str, path: &str) -> Option<(&'static str, &'static str, Option<Value>)> {
    // (role of a caller the route refuses or does not know, query, body)
    Some(match (method, path) {
        ("GET", "/healthz" | "/readyz" | "/metrics" | "/api/me" | "/api/schedules")
        | ("GET", "/api/schedules/{id}" | "/api/schedules/{id}/queue" | "/api/queue/{id}")
        | ("GET", "/api/call-sessions/status" | "/api/call-sessions/{id}")
        | ("GET", "/api/pending-invitation" | "/api/sessions/{id}" | "/api/chat-sessions/{id}")
        | ("POST", "/api/schedules/{id}/start" | "/api/schedules/{id}/end")
        | ("POST", "/api/schedules/{id}/join-queue" | "/api/queue/{id}/reset")
        | ("POST", "/api/call-sessions/{id}/confirm" | "/api/call-sessions/{id}/decline")
        | ("POST", "/api/call-sessions/{id}/cancel" | "/api/call-sessions/{id}/activate")
        | ("POST", "/api/call-sessions/{id}/end")
        | ("POST", "/api/sessions/{id}/accept" | "/api/sessions/{id}/reject")
        | ("POST", "/api/sessions/{id}/cancel" | "/api/sessions/{id}/end")
        | ("POST", "/api/chat-sessions/{id}/accept" | "/api/chat-sessions/{id}/end")
        | ("GET", "/api/ice-servers")
        | ("POST", "/api/peerjs/ticket")
        | ("GET", "/openapi.json" | "/asyncapi.json") => {
            return None;
        }
        ("POST", "/api/schedules") => ("patient", "", Some(json!({ "date": 5 }))),
        ("POST", "/api/schedules/{id}/start-call") => {
            ("patient", "", Some(json!({ "patientId": [1] })))
        }
        ("POST", "/api/queue/{id}/toggle-ready") => {
            ("doctor", "", Some(json!({ "isReady": "yes" })))
        }
        ("POST", "/api/call-sessions/start") => ("doctor", "", Some(json!({ "doctor_id": {} }))),
        ("POST", "/api/call-sessions/{id}/set-peer-id") => {
            ("patient", "", Some(json!({ "peerId": 7 })))
        }
        ("GET", "/api/audit-logs") => ("patient", "?limit=abc", None),
        ("POST", "/api/sessions") => (
            "teacher",
            "",
            Some(json!({ "host_id": true, "skill_name": 1 })),
        ),
        ("GET", "/api/sessions") => ("learner", "?status=bogus", None),
        ("POST", "/api/chat-sessions") => {
            ("mechanic", "", Some(json!({ "duration_minutes": "x" })))
        }
        ("GET", "/api/chat-sessions") => ("customer", "?status=bogus", None),
        ("GET", "/api/chat/{id}/messages") => ("customer", "?limit=zero", None),
        (m, p) => panic!("no row for the route {m} {p}: add it to this table"),
    })
}

#[tokio::test]
async fn every_route_checks_its_input_before_its_caller() {
    let app = TestApp::spawn().await;
    for &(method, template) in ROUTES {
        // An id nobody has: authorising first would answer 404 (or 403).
        let path = template.replace("{id}", "nobodys-id");
        let admin = app.token("root", "admin");
        // Every listed route is served (not the fallback).
        let res = if method == "GET" {
            app.get_as(&path, &admin).await
        } else {
            app.http
                .post(app.url(&path))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap()
        };
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.starts_with("no route"),
            "{method} {template} is not routed"
        );

        let Some((role, query, body)) = route_row(method, template) else {
            continue;
        };
        let token = app.token("caller-9", role);
        let url = format!("{path}{query}");
        let (status, answer) = match (method, body) {
            ("GET", _) => app.get(&url, &token).await,
            (_, Some(body)) => app.post(&url, &token, body).await,
            (_, None) => app.post_raw(&url, &token, "").await,
        };
        assert_eq!(status, 400, "{method} {template} as {role}: {answer}");
        assert_eq!(
            answer["error"]["code"], "bad_request",
            "{method} {template}"
        );
        // Malformed JSON too, for routes that read a body.
        if method == "POST" {
            let (status, _) = app.post_raw(&url, &token, "{\"broken\": ").await;
            assert_eq!(status, 400, "{method} {template} with broken JSON");
        }
    }
    app.stop().await;
}
