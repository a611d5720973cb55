use clap::Parser;
use consultd_server::config::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match consultd_server::run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consultd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
