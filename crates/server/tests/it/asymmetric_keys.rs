//! RS256 / ES256 for apps whose existing backend issues tokens with a key
//! pair: the server holds only the public key.

use crate::common::*;
use consultd_server::config::JwtAlgorithm;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

fn sign_with(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

async fn spawn(alg: JwtAlgorithm, public: &str, inline: bool) -> TestApp {
    let public = if inline {
        std::fs::read_to_string(fixture(public)).unwrap()
    } else {
        fixture(public)
    };
    TestApp::spawn_with(move |c| {
        c.jwt_secret = None;
        c.jwt_algorithm = alg;
        c.jwt_public_key = Some(public);
    })
    .await
}

#[tokio::test]
async fn rs256_tokens_verify_with_the_public_key_only() {
    let app = spawn(JwtAlgorithm::Rs256, "rs256-public.pem", false).await;
    let private = std::fs::read(fixture("rs256-private.pem")).unwrap();
    let key = EncodingKey::from_rsa_pem(&private).unwrap();
    let claims = json!({ "sub": 10, "role": "doctor", "exp": now_secs() + 600, "name": "Dr RSA" });
    let token = sign_with(Algorithm::RS256, &key, &claims);
    let mut c = SioClient::connect(app.addr, Handshake::auth(&token))
        .await
        .expect("rs256 token accepted");
    assert_eq!(
        c.emit_ack("identify_as_doctor", json!({})).await,
        json!({ "ok": true })
    );

    // The server cannot mint: it has no private key.
    assert!(
        app.server()
            .state()
            .auth
            .mint("1", "doctor", None, 60)
            .is_err()
    );

    // Algorithm confusion: an HS256 token "signed" with the public key as a secret.
    let public_pem = std::fs::read(fixture("rs256-public.pem")).unwrap();
    let forged = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem),
        &claims,
    );
    let refused = SioClient::connect(app.addr, Handshake::auth(&forged))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused, json!({ "message": "unauthorized" }));

    let expired = sign_with(
        Algorithm::RS256,
        &key,
        &json!({ "sub": 10, "role": "doctor", "exp": now_secs() - 5 }),
    );
    let refused = SioClient::connect(app.addr, Handshake::query(&expired))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused, json!({ "message": "token_expired" }));

    // Another key pair's signature.
    let es_private = std::fs::read(fixture("es256-private.pem")).unwrap();
    let other = sign_with(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(&es_private).unwrap(),
        &claims,
    );
    let refused = SioClient::connect(app.addr, Handshake::bearer(&other))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused, json!({ "message": "unauthorized" }));
    app.stop().await;
}

#[tokio::test]
async fn es256_tokens_verify_with_an_inline_public_key() {
    let app = spawn(JwtAlgorithm::Es256, "es256-public.pem", true).await;
    let private = std::fs::read(fixture("es256-private.pem")).unwrap();
    let key = EncodingKey::from_ec_pem(&private).unwrap();
    let token = sign_with(
        Algorithm::ES256,
        &key,
        &json!({ "sub": "p-1", "role": "patient", "exp": now_secs() + 600 }),
    );
    let res = app.get_as("/api/me", &token).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["userId"], "p-1");
    assert_eq!(body["data"]["roleClass"], "guest");
    let hs = sign(
        json!({ "sub": "p-1", "role": "patient", "exp": now_secs() + 600 }),
        SECRET,
    );
    let res = app.get_as("/api/me", &hs).await;
    assert_eq!(res.status(), 401);
    app.stop().await;
}

#[test]
fn consultd_token_mints_rs256_with_the_private_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_consultd"))
        .env_clear()
        .env("JWT_ALGORITHM", "RS256")
        .env("JWT_PUBLIC_KEY", fixture("rs256-public.pem"))
        .env("JWT_PRIVATE_KEY", fixture("rs256-private.pem"))
        .args(["token", "--sub", "5", "--role", "teacher"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let header = jsonwebtoken::decode_header(token.trim()).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    let public = std::fs::read(fixture("rs256-public.pem")).unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<Value>(
        token.trim(),
        &jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap(),
        &validation,
    )
    .unwrap();
    assert_eq!(data.claims["role"], "teacher");

    // Without the private key it says what is missing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_consultd"))
        .env_clear()
        .env("JWT_ALGORITHM", "RS256")
        .env("JWT_PUBLIC_KEY", fixture("rs256-public.pem"))
        .args(["token", "--sub", "5", "--role", "teacher"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_PRIVATE_KEY"));
}
