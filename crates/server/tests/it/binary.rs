//! The `consultd` binary as an operator runs it: zero-config start on SQLite
//! with a generated secret, `consultd token` using that same secret,
//! migrations, SIGTERM, and no token in the logs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::{Handshake, SioClient};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_consultd");

fn consultd(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    // A clean environment: nothing from the developer's shell may configure it.
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CONSULTD_DATA_DIR", data_dir)
        .env("HOST", "127.0.0.1");
    cmd
}

pub(crate) fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("consultd-bin-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn wait_healthy(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(res) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await
            && res.status() == 200
        {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "consultd exited early");
        assert!(Instant::now() < deadline, "consultd did not become healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `consultd` on a free port with `env`, its output in `<dir>/<log>`,
/// and waits until it is healthy.
pub(crate) async fn serve(dir: &Path, log: &str, env: &[(&str, &str)]) -> (Child, u16, PathBuf) {
    let port = free_port();
    let log_path = dir.join(log);
    let file = std::fs::File::create(&log_path).unwrap();
    let mut child = consultd(dir)
        .env("PORT", port.to_string())
        .envs(env.iter().copied())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    wait_healthy(port, &mut child).await;
    (child, port, log_path)
}

#[tokio::test]
async fn zero_config_serve_token_and_sigterm() {
    let dir = temp_dir();
    let (mut child, port, log_path) = serve(&dir, "consultd.log", &[("LOG_LEVEL", "debug")]).await;

    // The secret was generated beside the SQLite database, owner-only.
    let secret_file = dir.join("jwt-secret");
    assert!(dir.join("consultd.sqlite3").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&secret_file)
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    // `consultd token` signs with that same secret.
    let token = run_ok(consultd(&dir).args([
        "token", "--sub", "77", "--role", "doctor", "--name", "Dr Q", "--ttl", "10m",
    ]));
    let token = token.trim().to_owned();
    assert_eq!(token.split('.').count(), 3);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    // Through the query string, the source most likely to end up in a log.
    let mut c = SioClient::connect(addr, Handshake::query(&token))
        .await
        .expect("connects");
    assert_eq!(
        c.emit_ack("identify_as_doctor", json!({})).await,
        json!({ "ok": true })
    );
    let me: serde_json::Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/me?token={token}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["data"]["name"], "Dr Q");

    // An unknown role cannot be minted.
    let out = consultd(&dir)
        .args(["token", "--sub", "1", "--role", "nurse"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nurse"));

    // SIGTERM: a clean, prompt exit, and the socket is closed.
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    c.closed().await;

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("generated a random secret"), "{logs}");
    assert!(logs.contains("socket connected"), "{logs}");
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    assert!(!logs.contains(&token), "a token reached the logs");
    assert!(
        !logs.contains(token.split('.').nth(2).unwrap()),
        "a token signature reached the logs"
    );
    assert!(!logs.contains(secret.trim()), "the secret reached the logs");

    // A second start reuses the secret: the old token still works.
    let (mut child, port2, _) = serve(&dir, "second.log", &[]).await;
    let addr2 = format!("127.0.0.1:{port2}").parse().unwrap();
    assert!(
        SioClient::connect(addr2, Handshake::auth(&token))
            .await
            .is_ok()
    );
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn migrate_subcommand_reports_and_applies() {
    let dir = temp_dir();
    let status = run_ok(consultd(&dir).args(["migrate", "status"]));
    assert!(
        status.lines().all(|l| l.starts_with("pending ")),
        "{status}"
    );
    assert!(
        status.contains("m20261121_000001_create_audit_logs"),
        "{status}"
    );
    let up = run_ok(consultd(&dir).args(["migrate", "up"]));
    assert!(up.lines().all(|l| l.starts_with("applied ")), "{up}");
    let down = run_ok(consultd(&dir).args(["migrate", "down"]));
    assert!(
        down.lines().last().unwrap().starts_with("pending "),
        "{down}"
    );
    let up = run_ok(consultd(&dir).args(["migrate"]));
    assert!(up.lines().all(|l| l.starts_with("applied ")), "{up}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_configuration_fails_fast_with_a_message() {
    let dir = temp_dir();
    let cases: [(&[(&str, &str)], &str); 6] = [
        // Several nodes cannot share a SQLite file.
        (
            &[("REDIS_URL", "redis://127.0.0.1:6379")],
            "DATABASE_URL=postgres://",
        ),
        // ... nor each generate their own token secret.
        (
            &[
                ("REDIS_URL", "redis://127.0.0.1:6379"),
                ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
            ],
            "JWT_SECRET",
        ),
        (&[("JWT_ALGORITHM", "RS256")], "JWT_PUBLIC_KEY"),
        (
            &[("DATABASE_URL", "mysql://nope")],
            "sqlite: or postgres://",
        ),
        (
            &[("HOST_ROLES", "doctor"), ("GUEST_ROLES", "doctor")],
            "doctor",
        ),
        (
            &[("CORS_ORIGINS", "https://ok.example,bad\u{7f}origin")],
            "CORS",
        ),
    ];
    for (env, needle) in cases {
        let mut cmd = consultd(&dir);
        cmd.env("PORT", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{env:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{env:?}: {err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = temp_dir();
    let (mut child, _, log_path) = serve(&dir, "consultd.log", &[("LOG_FORMAT", "json")]).await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "{status:?} after SIGTERM; log:\n{logs}");
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "consultd listening" && l["addr"].is_string()),
        "{logs}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
    std::fs::remove_dir_all(dir).unwrap();
}

const SECRET: &str = "shutdown-secret-shutdown-secret-42";

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the process to exit, at most `within`; how long it took.
async fn exited(child: &mut Child, within: Duration) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return (s, started.elapsed());
        }
        assert!(started.elapsed() < within, "still running after {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn mint(sub: &str, role: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": sub, "role": role, "exp": chrono::Utc::now().timestamp() + 3600 }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// SIGTERM while requests are in flight: each request the server accepted
/// is answered (its row committed and its push skipped or sent, never a
/// panic), the others are refused at connect; nothing committed is lost.
#[tokio::test]
async fn sigterm_under_load_answers_every_request_it_accepted() {
    let teacher = mint("t-sd", "teacher");
    let mut answered_total = 0;
    for round in 0..10u64 {
        let dir = temp_dir();
        let env = [("JWT_SECRET", SECRET), ("REST_RATE", "0")];
        let (mut child, port, log_path) = serve(&dir, "consultd.log", &env).await;
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        // A connected teacher, so each request also pushes `session:incoming`.
        let _t = SioClient::connect(addr, Handshake::auth(&teacher))
            .await
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/api/sessions");
        let requests: Vec<_> = (0..8)
            .map(|i| {
                let (url, token) = (url.clone(), mint(&format!("l-sd-{i}"), "learner"));
                tokio::spawn(async move {
                    reqwest::Client::new()
                        .post(url)
                        .bearer_auth(token)
                        .json(&json!({ "host_id": "t-sd", "skill_name": "Chess" }))
                        .send()
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(round % 5)).await;
        sigterm(&child);
        let mut answered = 0;
        for r in requests {
            match r.await.unwrap() {
                Ok(res) => {
                    assert_eq!(res.status(), 201, "round {round}");
                    answered += 1;
                }
                Err(e) => assert!(
                    e.is_connect(),
                    "round {round}: accepted, then no answer: {e:?}"
                ),
            }
        }
        let (status, _) = exited(&mut child, Duration::from_secs(15)).await;
        assert!(status.success(), "round {round}: {status:?}");
        let logs = std::fs::read_to_string(&log_path).unwrap();
        assert!(!logs.contains("panicked"), "round {round}: {logs}");
        // What was answered is stored, and nothing else.
        let (mut again, port, _) = serve(&dir, "again.log", &env).await;
        let listed: serde_json::Value = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/api/sessions"))
            .bearer_auth(&teacher)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            listed["data"].as_array().unwrap().len(),
            answered,
            "round {round}: rows vs answers"
        );
        answered_total += answered;
        again.kill().unwrap();
        again.wait().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
    assert!(
        answered_total > 0,
        "no request was ever in flight at the signal"
    );
}

/// A request whose body never finishes holds the stop: the grace period
/// ends it, and a second SIGTERM ends it at once.
#[tokio::test]
async fn the_grace_period_or_a_second_sigterm_ends_the_process() {
    use tokio::io::AsyncWriteExt;
    for (grace, second) in [("2", false), ("30", true)] {
        let dir = temp_dir();
        let env = [("JWT_SECRET", SECRET), ("SHUTDOWN_GRACE_SECS", grace)];
        let (mut child, port, _) = serve(&dir, "consultd.log", &env).await;
        let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let head = format!(
            "POST /api/sessions HTTP/1.1\r\nHost: c\r\nAuthorization: Bearer {}\r\nContent-Length: 1000\r\n\r\n{{",
            mint("l-slow", "learner")
        );
        slow.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        sigterm(&child);
        if second {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(child.try_wait().unwrap().is_none(), "waits for the request");
            sigterm(&child);
            let (status, took) = exited(&mut child, Duration::from_secs(5)).await;
            assert!(
                took < Duration::from_secs(2),
                "a second signal exits at once: {took:?}"
            );
            assert!(status.success(), "{status:?}");
        } else {
            let (status, took) = exited(&mut child, Duration::from_secs(10)).await;
            assert!(
                took >= Duration::from_millis(1500),
                "waited for the request: {took:?}"
            );
            assert!(status.success(), "{status:?}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// On SIGTERM a websocket gets Engine.IO's close and a close frame, so
/// its client reconnects by itself, instead of seeing the connection reset.
#[tokio::test]
async fn sigterm_closes_sockets_cleanly() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let dir = temp_dir();
    let (mut child, port, _) = serve(&dir, "consultd.log", &[("JWT_SECRET", SECRET)]).await;
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    futures_util::SinkExt::send(
        &mut ws,
        Message::text(format!("40{}", json!({ "token": mint("p-ws", "patient") }))),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    while let Some(Ok(Message::Text(t))) = ws.next().await {
        let done = t.starts_with("40");
        seen.push(t.to_string());
        if done {
            break;
        }
    }
    sigterm(&child);
    let mut ending = Vec::new();
    let mut clean = false;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        match msg {
            Ok(Message::Close(_)) => {
                clean = true;
                break;
            }
            Ok(Message::Text(t)) => ending.push(t.to_string()),
            Ok(_) => {}
            Err(e) => panic!("not a clean close: {e} after {ending:?}"),
        }
    }
    assert!(
        clean || ending.iter().any(|t| t == "1"),
        "no close: {ending:?}"
    );
    let (status, _) = exited(&mut child, Duration::from_secs(10)).await;
    assert!(status.success());
    std::fs::remove_dir_all(dir).unwrap();
}
