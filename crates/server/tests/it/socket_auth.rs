//! CONTRACT §1: token sources, refusals with the contract's words, for
//! Socket.IO v5 (client 3.x/4.x) and v4 (client 2.x, Engine.IO v3).

use crate::common::*;
use serde_json::{Value, json};

fn refused_with(outcome: Result<SioClient, Value>, word: &str, what: &str) {
    match outcome {
        Ok(_) => panic!("{what}: connected, expected `{word}`"),
        Err(v) => assert_eq!(v, json!({ "message": word }), "{what}"),
    }
}

/// The bad tokens of the issue, with the word each must be refused with.
fn bad_tokens() -> Vec<(&'static str, String, &'static str)> {
    let exp = now_secs() + 600;
    let b64 = |v: Value| {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = serde_json::to_vec(&v).unwrap();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    vec![
        ("garbage", "garbage.token.here".to_owned(), "unauthorized"),
        ("not a jwt", "hello".to_owned(), "unauthorized"),
        (
            "expired",
            sign(
                json!({"sub": "1", "role": "doctor", "exp": now_secs() - 30}),
                SECRET,
            ),
            "token_expired",
        ),
        (
            "wrong signature",
            sign(
                json!({"sub": "1", "role": "doctor", "exp": exp}),
                "some-other-secret-some-other-secret",
            ),
            "unauthorized",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(json!({"alg": "none", "typ": "JWT"})),
                b64(json!({"sub": "1", "role": "doctor", "exp": exp}))
            ),
            "unauthorized",
        ),
        (
            "role-less",
            sign(json!({"sub": "1", "exp": exp}), SECRET),
            "unauthorized",
        ),
        (
            "unknown role",
            sign(json!({"sub": "1", "role": "nurse", "exp": exp}), SECRET),
            "unauthorized",
        ),
        (
            "no sub",
            sign(json!({"role": "doctor", "exp": exp}), SECRET),
            "unauthorized",
        ),
        (
            "no exp",
            sign(json!({"sub": "1", "role": "doctor"}), SECRET),
            "unauthorized",
        ),
    ]
}

#[tokio::test]
async fn valid_tokens_connect_from_every_source_and_protocol() {
    let app = TestApp::spawn().await;
    let token = app.token("42", "doctor");
    let cases = [
        ("v5 auth", Handshake::auth(&token)),
        ("v5 query", Handshake::query(&token)),
        ("v5 bearer", Handshake::bearer(&token)),
        ("v4 query", Handshake::query(&token).legacy()),
        ("v4 bearer", Handshake::bearer(&token).legacy()),
    ];
    for (what, hs) in cases {
        let mut c = SioClient::connect(app.addr, hs)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let ack = c.emit_ack("identify_as_doctor", json!({})).await;
        assert_eq!(ack, json!({ "ok": true }), "{what}");
        c.disconnect();
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_the_contract_words_over_every_source() {
    let app = TestApp::spawn().await;
    for (what, token, word) in bad_tokens() {
        let sources = [
            ("v5 auth", Handshake::auth(&token)),
            ("v5 query", Handshake::query(&token)),
            ("v5 bearer", Handshake::bearer(&token)),
            ("v4 query", Handshake::query(&token).legacy()),
            ("v4 bearer", Handshake::bearer(&token).legacy()),
        ];
        for (source, hs) in sources {
            refused_with(
                SioClient::connect(app.addr, hs).await,
                word,
                &format!("{what} via {source}"),
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn no_token_at_all_is_unauthorized() {
    let app = TestApp::spawn().await;
    let with_auth = |auth: Value| Handshake {
        auth: Some(auth),
        ..Handshake::default()
    };
    let cases = [
        ("v5 no auth", Handshake::default()),
        ("v5 {}", with_auth(json!({}))),
        ("v5 numeric token", with_auth(json!({ "token": 42 }))),
        ("v5 string auth", with_auth(json!("just a string"))),
        ("v5 whitespace token", with_auth(json!({ "token": "   " }))),
        ("v4 nothing", Handshake::default().legacy()),
        ("v4 empty query token", Handshake::query("").legacy()),
    ];
    for (what, hs) in cases {
        refused_with(SioClient::connect(app.addr, hs).await, "unauthorized", what);
    }
    app.stop().await;
}

#[tokio::test]
async fn the_first_non_empty_source_is_the_one_used() {
    let app = TestApp::spawn().await;
    let good = app.token("7", "patient");
    // auth.token wins over a broken query token...
    let hs = Handshake {
        auth: Some(json!({ "token": good })),
        query: Some("token=garbage".into()),
        ..Handshake::default()
    };
    assert!(SioClient::connect(app.addr, hs).await.is_ok());
    // ...and a broken auth.token is not rescued by a good query token.
    let hs = Handshake {
        auth: Some(json!({ "token": "garbage" })),
        query: Some(format!("token={good}")),
        ..Handshake::default()
    };
    refused_with(
        SioClient::connect(app.addr, hs).await,
        "unauthorized",
        "bad auth, good query",
    );
    // An empty auth.token falls through to the query, then the header.
    let hs = Handshake {
        auth: Some(json!({ "token": "" })),
        query: Some(format!("token={good}")),
        ..Handshake::default()
    };
    assert!(SioClient::connect(app.addr, hs).await.is_ok());
    let hs = Handshake {
        auth: Some(json!({ "token": "" })),
        bearer: Some(good.clone()),
        ..Handshake::default()
    };
    assert!(SioClient::connect(app.addr, hs).await.is_ok());
    // Query before header.
    let hs = Handshake {
        query: Some("token=garbage".into()),
        bearer: Some(good),
        ..Handshake::default()
    };
    refused_with(
        SioClient::connect(app.addr, hs).await,
        "unauthorized",
        "bad query, good header",
    );
    app.stop().await;
}

#[tokio::test]
async fn a_refused_polling_handshake_gets_the_same_word() {
    let app = TestApp::spawn().await;
    let http = &app.http;
    let get =
        |url: String| async move { http.get(url).send().await.unwrap().text().await.unwrap() };
    let open = get(app.url("/socket.io/?EIO=4&transport=polling")).await;
    assert!(open.starts_with('0'), "{open}");
    let sid = serde_json::from_str::<Value>(&open[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let expired = sign(
        json!({"sub": "1", "role": "doctor", "exp": now_secs() - 30}),
        SECRET,
    );
    let post = http
        .post(app.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}")))
        .body(format!("40{}", json!({ "token": expired })))
        .send()
        .await
        .unwrap();
    assert!(post.status().is_success());
    let answer = get(app.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}"))).await;
    // Polling payloads are record-separated; an engine ping may ride along,
    // before or after the refusal.
    let packets: Vec<&str> = answer.split('\u{1e}').filter(|p| *p != "2").collect();
    assert_eq!(packets, [r#"44{"message":"token_expired"}"#], "{answer:?}");
    app.stop().await;
}

#[tokio::test]
async fn nested_role_claims_and_custom_role_maps_are_honoured() {
    let app = TestApp::spawn_with(|c| {
        c.role_claim = "user_metadata.role".into();
        c.host_roles = vec!["tutor".into()];
        c.guest_roles = vec!["student".into()];
    })
    .await;
    let exp = now_secs() + 600;
    let tutor = sign(
        json!({"sub": 5, "user_metadata": {"role": "tutor"}, "exp": exp}),
        SECRET,
    );
    let mut c = app.connect(&tutor).await;
    assert_eq!(
        c.emit_ack("identify_as_doctor", json!(null)).await,
        json!({ "ok": true })
    );
    // The default role names mean nothing under this mapping, and a top-level
    // `role` is not where this deployment looks.
    let doctor = sign(json!({"sub": 6, "role": "doctor", "exp": exp}), SECRET);
    refused_with(
        SioClient::connect(app.addr, Handshake::auth(&doctor)).await,
        "unauthorized",
        "top-level role",
    );
    let nested_doctor = sign(
        json!({"sub": 6, "user_metadata": {"role": "doctor"}, "exp": exp}),
        SECRET,
    );
    refused_with(
        SioClient::connect(app.addr, Handshake::auth(&nested_doctor)).await,
        "unauthorized",
        "unmapped role",
    );
    app.stop().await;
}
