//! The bots against a real consultd on an ephemeral port: every phase of
//! seed 001 completes, in order, with what each side should have heard.

use consultd_persistence::testing::TestDatabase;
use consultd_server::config::Config;
use consultd_server::{Server, start};

const SECRET: &str = "bots-test-secret-bots-test-secret!!";

/// consultd on an ephemeral port and a fresh database (PostgreSQL when
/// `TEST_DATABASE_URL` is set); the database lives as long as the server.
async fn consultd() -> (Server, TestDatabase, String) {
    let db = TestDatabase::from_env().await.expect("test database");
    let server = start(Config {
        host: "127.0.0.1".into(),
        port: 0,
        database_url: Some(db.url.clone()),
        jwt_secret: Some(SECRET.into()),
        data_dir: std::env::temp_dir().join("consultd-bots-test"),
        log_level: "warn".into(),
        ..Config::default()
    })
    .await
    .expect("server starts");
    let url = format!("http://{}", server.local_addr());
    (server, db, url)
}

#[tokio::test]
async fn the_bots_run_seed_001_from_setup_to_the_end() {
    let (server, _db, url) = consultd().await;
    let auth = &server.state().auth;
    let doctor = auth.mint("bot-doc", "doctor", Some("Dr Bot"), 600).unwrap();
    let patient = auth
        .mint("bot-pat", "patient", Some("Pat Bot"), 600)
        .unwrap();

    let mut phases = Vec::new();
    consultd_rust_bots::run_consultation(&url, &doctor, &patient, |phase, text| {
        phases.push(format!("{phase}: {text}"));
    })
    .await
    .expect("the whole flow completes");

    let names: Vec<&str> = phases
        .iter()
        .map(|p| p.split(':').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "1 setup",
            "2 queue join",
            "3 ready",
            "4 invitation",
            "5 confirmation",
            "6 call room",
            "7 peer ids",
            "8 signaling",
            "9 active",
            "10 end"
        ]
    );
    assert!(phases[0].contains("doctor bot-doc is ONLINE"), "{phases:?}");
    assert!(phases[2].ends_with("[Pat Bot READY]"), "{phases:?}");
    assert!(
        phases[7].contains("offer from bot-doc with candidate \"c-doctor\", answer from bot-pat"),
        "{phases:?}"
    );
    assert!(phases[8].ends_with("call ACTIVE"), "{phases:?}");
    assert!(phases[9].contains("call ENDED"), "{phases:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bad_token_is_refused() {
    let (server, _db, url) = consultd().await;
    let good = server
        .state()
        .auth
        .mint("bot-pat", "patient", None, 600)
        .unwrap();
    let refused = consultd_rust_bots::Bot::connect("doctor", &url, "not-a-token").await;
    let err = refused.err().expect("refused").to_string();
    assert!(err.contains("unauthorized"), "{err}");
    let outcome = consultd_rust_bots::run_consultation(&url, "not-a-token", &good, |_, _| {}).await;
    assert!(outcome.is_err(), "a refused doctor cannot run the flow");
    server.shutdown().await.unwrap();
}
