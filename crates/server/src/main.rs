use clap::Parser;
use consultd_server::config::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match cli.config.runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("consultd: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(consultd_server::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consultd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
