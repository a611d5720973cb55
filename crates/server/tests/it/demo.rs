//! `--demo`: the browser demo's page and its token counter exist only when
//! asked for, and the counter mints working host and guest tokens, never
//! admin ones, refusing bad input with the envelope.

use std::path::PathBuf;

use crate::common::*;
use serde_json::{Value, json};

fn demo_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/web"))
}

async fn demo_app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.demo = true;
        c.demo_dir = Some(demo_dir());
    })
    .await
}

async fn mint(app: &TestApp, body: &str) -> (u16, Value) {
    app.post_raw("/demo/token", "", body).await
}

#[tokio::test]
async fn without_the_flag_there_is_no_demo() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/demo/", "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = mint(&app, r#"{"role":"doctor"}"#).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn the_page_is_served_under_demo() {
    let app = demo_app().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = no_redirects.get(app.url("/demo")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 308);
    assert_eq!(res.headers()["location"], "/demo/");
    for (path, needle) in [
        ("/demo/", "<title>consultd demo</title>"),
        ("/demo/index.html", "/demo/app.js"),
        ("/demo/app.js", "webrtc:join_room"),
        ("/demo/style.css", "video"),
    ] {
        let res = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "{path}");
        assert!(res.text().await.unwrap().contains(needle), "{path}");
    }
    // The API beside it is untouched.
    let (status, _) = app.get("/api/me", "").await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[tokio::test]
async fn minted_tokens_work_for_hosts_and_guests() {
    let app = demo_app().await;
    let mut users = Vec::new();
    for (role, class) in [
        ("doctor", "host"),
        ("patient", "guest"),
        ("mechanic", "host"),
    ] {
        let (status, body) = mint(
            &app,
            &json!({ "role": role, "name": "  Ann  " }).to_string(),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let data = &body["data"];
        let (status, me) = app.get("/api/me", data["token"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(
            me["data"],
            json!({ "userId": data["userId"], "role": role, "roleClass": class, "name": "Ann" })
        );
        users.push(data["userId"].as_str().unwrap().to_owned());
    }
    // Every visitor is a new user.
    let (_, again) = mint(&app, r#"{"role":"doctor"}"#).await;
    assert_ne!(again["data"]["userId"].as_str().unwrap(), users[0]);
    assert_eq!(again["data"]["name"], Value::Null);
    let mut client = app.connect(again["data"]["token"].as_str().unwrap()).await;
    let ack = client.emit_ack("identify_as_doctor", json!({})).await;
    assert_eq!(ack, json!({ "ok": true }));
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_mint_nothing() {
    let app = demo_app().await;
    let long = "x".repeat(81);
    for (body, status, code) in [
        (r#"{"role":"admin"}"#.to_owned(), 403, "forbidden"),
        (r#"{"role":"nurse"}"#.to_owned(), 400, "bad_request"),
        (r#"{}"#.to_owned(), 400, "bad_request"),
        (r#"{"role":5}"#.to_owned(), 400, "bad_request"),
        (
            r#"{"role":"doctor","name":7}"#.to_owned(),
            400,
            "bad_request",
        ),
        (
            format!(r#"{{"role":"doctor","name":"{long}"}}"#),
            400,
            "bad_request",
        ),
        (r#"{"role":"doctor""#.to_owned(), 400, "bad_request"),
        (r#"["doctor"]"#.to_owned(), 400, "bad_request"),
    ] {
        let (s, b) = mint(&app, &body).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert_eq!(b["success"], false);
    }
    app.stop().await;
}
