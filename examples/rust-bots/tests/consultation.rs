//! The bots against the real `consultd` binary on a free port with a fresh
//! data directory (SQLite, a generated secret; tokens from `consultd token`):
//! every phase of seed 001 completes, in order, with what each side heard.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Consultd {
    child: Child,
    data_dir: PathBuf,
    url: String,
}

fn binary() -> PathBuf {
    std::env::var_os("CONSULTD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/debug/consultd"
            ))
        })
}

impl Consultd {
    fn start(name: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data_dir =
            std::env::temp_dir().join(format!("consultd-bots-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let bin = binary();
        let child = Command::new(&bin)
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("CONSULTD_DATA_DIR", &data_dir)
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (build it with `cargo build -p consultd-server`)",
                    bin.display()
                )
            });
        let server = Self {
            child,
            data_dir,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "consultd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn token(&self, sub: &str, role: &str, name: &str) -> String {
        let out = Command::new(binary())
            .env_clear()
            .env("CONSULTD_DATA_DIR", &self.data_dir)
            .args([
                "token", "--sub", sub, "--role", role, "--name", name, "--ttl", "10m",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for Consultd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

#[tokio::test]
async fn the_bots_run_seed_001_from_setup_to_the_end() {
    let server = Consultd::start("flow");
    let doctor = server.token("bot-doc", "doctor", "Dr Bot");
    let patient = server.token("bot-pat", "patient", "Pat Bot");

    let mut phases = Vec::new();
    consultd_rust_bots::run_consultation(&server.url, &doctor, &patient, |phase, text| {
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
}

#[tokio::test]
async fn a_bad_token_is_refused() {
    let server = Consultd::start("refused");
    let refused = consultd_rust_bots::Bot::connect("doctor", &server.url, "not-a-token").await;
    let err = refused.err().expect("refused").to_string();
    assert!(err.contains("unauthorized"), "{err}");
    let good = server.token("bot-pat", "patient", "Pat Bot");
    let outcome =
        consultd_rust_bots::run_consultation(&server.url, "not-a-token", &good, |_, _| {}).await;
    assert!(outcome.is_err(), "a refused doctor cannot run the flow");
}
