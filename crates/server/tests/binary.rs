//! The `consultd` binary as an operator runs it: zero-config start on SQLite
//! with a generated secret, `consultd token` using that same secret,
//! migrations, SIGTERM, and no token in the logs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{Handshake, SioClient};
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

fn temp_dir() -> PathBuf {
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
async fn serve(dir: &Path, log: &str, env: &[(&str, &str)]) -> (Child, u16, PathBuf) {
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
    let cases: [(&[(&str, &str)], &str); 4] = [
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
    assert!(child.wait().unwrap().success());
    let logs = std::fs::read_to_string(&log_path).unwrap();
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
