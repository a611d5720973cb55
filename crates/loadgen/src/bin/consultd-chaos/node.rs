//! One consultd process under test: started on a free port with a fresh
//! configuration, its output kept in a log file, stopped by SIGTERM or
//! killed by SIGKILL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// How to start a node.
#[derive(Clone)]
pub(crate) struct Launch {
    pub(crate) bin: PathBuf,
    pub(crate) database_url: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) secret: String,
    pub(crate) env: Vec<(String, String)>,
}

pub(crate) struct Node {
    child: Child,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

impl Node {
    /// Starts the binary and waits until `/readyz` answers 200.
    pub(crate) async fn start(launch: &Launch, log_name: &str) -> Result<Node, String> {
        let port = free_port()?;
        let log = launch.data_dir.join(log_name);
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&launch.bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", &launch.database_url)
            .env("CONSULTD_DATA_DIR", &launch.data_dir)
            .env("JWT_SECRET", &launch.secret)
            .env("LOG_LEVEL", "info")
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| format!("{}: {e}", launch.bin.display()))?;
        let mut node = Node { child, port, log };
        node.wait_ready().await?;
        Ok(node)
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let http = reqwest::Client::new();
        loop {
            if let Ok(res) = http.get(self.url("/readyz")).send().await
                && res.status() == 200
            {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "consultd exited at start ({status}): {}",
                    self.log_tail()
                ));
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("consultd not ready in 30 s: {}", self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Whether the process is still running.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, and waits for the process to be gone.
    pub(crate) async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM; the exit status once it has stopped (within `within`).
    pub(crate) async fn terminate(mut self, within: Duration) -> Result<(), String> {
        let pid = self.child.id().ok_or("already gone")?;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("kill -TERM failed".into());
        }
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(Ok(s)) if s.success() => Ok(()),
            Ok(Ok(s)) => Err(format!("exited with {s}: {}", self.log_tail())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("still running {within:?} after SIGTERM")),
        }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

/// The last lines of a log, for error messages.
pub(crate) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Lines of a log that tell of a panic.
pub(crate) fn panics(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("panicked"))
        .map(str::to_owned)
        .collect()
}

/// An HS256 token for `sub` with `role`.
pub(crate) fn token(secret: &str, sub: &str, role: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 4 * 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": sub, "role": role, "name": sub, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_default()
}
