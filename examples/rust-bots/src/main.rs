//! `consultd-bots`: the queue consultation app's consultation between a doctor bot and a
//! patient bot, printed phase by phase.
//!
//! ```text
//! CONSULTD_URL=http://localhost:4000 \
//! DOCTOR_TOKEN=$(consultd token --sub doc-1 --role doctor --name "Dr Bot") \
//! PATIENT_TOKEN=$(consultd token --sub pat-1 --role patient --name "Pat Bot") \
//! cargo run -p consultd-rust-bots
//! ```
//! Without the tokens it asks a server started with `--demo` for two.

use std::process::ExitCode;
use std::time::Instant;

use consultd_rust_bots::{BotError, run_consultation};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> ExitCode {
    let url = std::env::var("CONSULTD_URL").unwrap_or_else(|_| "http://localhost:4000".into());
    let started = Instant::now();
    let result = async {
        let doctor = token(&url, "DOCTOR_TOKEN", "doctor", "Dr Bot").await?;
        let patient = token(&url, "PATIENT_TOKEN", "patient", "Pat Bot").await?;
        run_consultation(&url, &doctor, &patient, |phase, text| {
            println!(
                "[{:>5} ms] phase {phase}: {text}",
                started.elapsed().as_millis()
            );
        })
        .await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consultd-bots: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The token from `var`, else one minted by a `--demo` server.
async fn token(url: &str, var: &str, role: &str, name: &str) -> Result<String, BotError> {
    if let Ok(token) = std::env::var(var) {
        return Ok(token);
    }
    let res = reqwest::Client::new()
        .post(format!("{}/demo/token", url.trim_end_matches('/')))
        .json(&json!({ "role": role, "name": name }))
        .send()
        .await?;
    let body: Value = res.json().await?;
    body["data"]["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| {
            BotError::Unexpected(format!("set {var} (or start consultd with --demo): {body}"))
        })
}
