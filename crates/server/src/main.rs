use clap::Parser;
use consultd_server::config::Cli;

// glibc's malloc kept a connect storm's high-water mark for good (623 MiB
// after 10,000 sockets had closed) and fragmented across storms; jemalloc
// with its background purging gives it back (docs/benchmarks.md).
#[cfg(all(feature = "jemalloc", target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // A thread that returns freed pages to the OS by itself (after
    // jemalloc's decay time, 10 s; `_RJEM_MALLOC_CONF` overrides it), not
    // only when an allocating thread happens to pass by.
    #[cfg(all(feature = "jemalloc", target_os = "linux", not(target_env = "musl")))]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("consultd: jemalloc's background thread did not start: {e}");
    }
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
