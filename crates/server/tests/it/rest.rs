//! CONTRACT §2 and §8 over HTTP: the envelope on every route, Bearer auth,
//! body limits, health, readiness, metrics, CORS.

use crate::common::*;
use serde_json::{Value, json};

async fn body(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

#[tokio::test]
async fn health_and_readiness_answer_in_the_envelope() {
    let app = TestApp::spawn().await;
    let (s, b) = body(app.http.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(
        (s, b),
        (200, json!({ "success": true, "data": { "status": "ok" } }))
    );
    let (s, b) = body(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(
        (s, b),
        (
            200,
            json!({ "success": true, "data": { "status": "ready" } })
        )
    );
    app.stop().await;
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    app.server()
        .state()
        .db
        .conn()
        .clone()
        .close()
        .await
        .unwrap();
    let (s, b) = body(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(s, 503);
    assert_eq!(b["success"], false);
    assert_eq!(b["error"]["code"], "unavailable");
    // Liveness does not depend on the database.
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_404_envelope() {
    let app = TestApp::spawn().await;
    for (method, path) in [
        ("GET", "/nope"),
        ("POST", "/api/unknown/route"),
        ("DELETE", "/api/me"),
        ("GET", "/api"),
        ("PUT", "/healthz"),
    ] {
        let req = app.http.request(method.parse().unwrap(), app.url(path));
        let (s, b) = body(req.send().await.unwrap()).await;
        assert_eq!(s, 404, "{method} {path}");
        assert_eq!(b["success"], false);
        assert_eq!(b["error"]["code"], "not_found");
        assert!(b["error"]["message"].as_str().unwrap().contains(path));
    }
    app.stop().await;
}

#[tokio::test]
async fn bearer_auth_follows_the_socket_rules() {
    let app = TestApp::spawn().await;
    let me = |token: Option<String>| {
        let mut req = app.http.get(app.url("/api/me"));
        if let Some(t) = token {
            req = req.header("authorization", t);
        }
        req.send()
    };
    let (s, b) = body(
        me(Some(format!("Bearer {}", app.token("42", "doctor"))))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        b,
        json!({ "success": true, "data": { "userId": "42", "role": "doctor", "roleClass": "host", "name": "doctor 42" } })
    );
    let exp = now_secs() + 600;
    let cases = [
        ("none", None, "unauthorized"),
        ("empty bearer", Some("Bearer ".to_owned()), "unauthorized"),
        (
            "basic",
            Some("Basic Zm9vOmJhcg==".to_owned()),
            "unauthorized",
        ),
        ("garbage", Some("Bearer garbage".to_owned()), "unauthorized"),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(
                    json!({"sub": "1", "role": "doctor", "exp": now_secs() - 10}),
                    SECRET
                )
            )),
            "token_expired",
        ),
        (
            "wrong key",
            Some(format!(
                "Bearer {}",
                sign(
                    json!({"sub": "1", "role": "doctor", "exp": exp}),
                    "x-other-secret-x-other-secret-x-other"
                )
            )),
            "unauthorized",
        ),
        (
            "role-less",
            Some(format!(
                "Bearer {}",
                sign(json!({"sub": "1", "exp": exp}), SECRET)
            )),
            "unauthorized",
        ),
        (
            "unknown role",
            Some(format!(
                "Bearer {}",
                sign(json!({"sub": "1", "role": "ghost", "exp": exp}), SECRET)
            )),
            "unauthorized",
        ),
    ];
    for (what, header, code) in cases {
        let res = me(header).await.unwrap();
        assert_eq!(
            res.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "{what}"
        );
        let (s, b) = body(res).await;
        assert_eq!(s, 401, "{what}");
        assert_eq!(b["success"], false, "{what}");
        assert_eq!(b["error"]["code"], code, "{what}");
    }
    app.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_in_the_envelope() {
    let app = TestApp::spawn().await;
    let big = vec![b'a'; 2 * 1024 * 1024];
    let res = app
        .http
        .post(app.url("/api/me"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let (s, b) = body(res).await;
    assert_eq!(s, 413);
    assert_eq!(b["error"]["code"], "too_large");
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_sockets_events_and_requests() {
    let app = TestApp::spawn().await;
    let mut c = app.connect(&app.token("1", "doctor")).await;
    c.emit_ack("identify_as_doctor", json!({})).await;
    c.emit_ack("some_random_event_name", json!({})).await;
    app.http.get(app.url("/healthz")).send().await.unwrap();
    app.http
        .get(app.url("/api/does-not-exist/123"))
        .send()
        .await
        .unwrap();
    let res = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    for needle in [
        "consultd_sockets_connected",
        "consultd_socket_connections_total",
        r#"consultd_socket_events_total{event="identify_as_doctor"}"#,
        r#"consultd_socket_events_total{event="unknown"}"#,
        r#"consultd_http_requests_total{method="GET",route="/healthz",status="200"}"#,
        r#"route="unmatched",status="404""#,
        "consultd_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    // Client-chosen names and raw paths never become labels.
    assert!(!text.contains("some_random_event_name"));
    assert!(!text.contains("does-not-exist"));
    app.stop().await;
}

#[tokio::test]
async fn cors_allows_any_origin_by_default_and_only_listed_ones_when_configured() {
    let app = TestApp::spawn().await;
    let res = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/api/me"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    // Socket.IO polling answers carry the header too.
    let res = app
        .http
        .get(app.url("/socket.io/?EIO=4&transport=polling"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    app.stop().await;

    let app =
        TestApp::spawn_with(|c| c.cors_origins = "https://a.example, https://b.example".into())
            .await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/api/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let ok = preflight("https://b.example").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://b.example"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    app.stop().await;
}
