//! consultd's chaos tool: runs a consultd binary as a child process and
//! attacks it — `fuzz` (random and mutated input on every surface for a
//! bounded time) and `kill` (SIGKILL at random moments while real clients
//! run every flow). Both check the database's invariants afterwards and
//! exit non-zero on any violation. `.ci/run` runs both against the release
//! binary, on SQLite and on PostgreSQL.

mod fuzz;
mod input;
mod invariants;
mod kill;
mod node;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use consultd_persistence::testing::TestDatabase;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The consultd binary to attack.
    #[arg(
        long,
        env = "CONSULTD_BIN",
        default_value = "target/release/consultd",
        global = true
    )]
    bin: PathBuf,
    /// A PostgreSQL URL: the run gets a fresh schema in that database.
    /// Unset: a fresh SQLite file.
    #[arg(long, global = true)]
    postgres: Option<String>,
    /// Seed of the random choices (printed, so a failure can be replayed).
    #[arg(long, global = true)]
    seed: Option<u64>,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Random and mutated REST, socket events and raw Engine.IO frames.
    Fuzz {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// SIGKILL at random moments while the flows run; verify after each restart.
    Kill {
        #[arg(long, default_value_t = 20)]
        kills: usize,
    },
}

/// `Ok` when nothing was violated; the list otherwise.
fn verdict(what: &str, violations: &[String]) -> Result<(), String> {
    if violations.is_empty() {
        println!("{what}: 0 violations");
        return Ok(());
    }
    Err(format!(
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    ))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let seed = cli.seed.unwrap_or_else(|| fastrand::u64(..1_000_000));
    let db = match &cli.postgres {
        Some(url) => TestDatabase::postgres(url).await,
        None => Ok(TestDatabase::sqlite()),
    };
    let db = match db {
        Ok(db) => db,
        Err(e) => {
            eprintln!("consultd-chaos: database: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let data_dir =
        std::env::temp_dir().join(format!("consultd-chaos-{seed}-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&data_dir) {
        eprintln!("consultd-chaos: {}: {e}", data_dir.display());
        return std::process::ExitCode::FAILURE;
    }
    let backend = if db.is_postgres() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let common = |extra: &[(&str, &str)]| node::Launch {
        bin: cli.bin.clone(),
        database_url: db.url.clone(),
        data_dir: data_dir.clone(),
        secret: "chaos-secret-chaos-secret-chaos-secret".into(),
        env: extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    let result = match cli.what {
        What::Fuzz { seconds } => {
            println!("consultd-chaos fuzz on {backend}, seed {seed}");
            // Limits that would stop most input before the handlers are
            // lifted; short timers so expiries and abandons happen meanwhile.
            let launch = common(&[
                ("REST_RATE", "0"),
                ("EVENT_RATE", "0"),
                ("INVITE_TTL_SECS", "5"),
                ("SESSION_TTL_SECS", "5"),
                ("ABANDON_SECS", "3"),
                ("CHAT_DURATION_SECS", "10"),
            ]);
            fuzz::run(launch, seconds, seed).await
        }
        What::Kill { kills } => {
            println!("consultd-chaos kill on {backend}, seed {seed}");
            let ttl = kill::INVITE_TTL_SECS.to_string();
            let launch = common(&[("REST_RATE", "0"), ("INVITE_TTL_SECS", &ttl)]);
            kill::run(launch, kills, seed).await
        }
    };
    db.cleanup().await;
    match result {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&data_dir);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "consultd-chaos: FAILED (seed {seed}; logs in {}): {e}",
                data_dir.display()
            );
            std::process::ExitCode::FAILURE
        }
    }
}
