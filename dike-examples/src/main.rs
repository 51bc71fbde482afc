//! The `dike` command-line program: see [`dike_examples::cli`].

use clap::Parser;
use dike_examples::cli::args::LogFormat;
use dike_examples::cli::{self, Cli, Command};
use std::process::ExitCode;

/// mimalloc: the node's many small, short-lived messages cost less than with
/// the system allocator (see `docs/BENCHMARKS.md`). The `system-allocator`
/// feature leaves it out, for heap profilers that hook `malloc` (heaptrack).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    no_transparent_huge_pages();
    // `dike node --config FILE` sets defaults through DIKE_* variables:
    // before parsing, while the program has one thread.
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = cli::config_file::apply(&args) {
        eprintln!("dike: {e}");
        return ExitCode::from(e.exit_code());
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate { schedules } => {
            match dike_examples::simulate::run(&mut std::io::stdout(), schedules) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dike simulate: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        command => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter(&command));
            let json = matches!(&command, Command::Node(a)
                if a.run.as_ref().is_some_and(|r| r.log_format == LogFormat::Json));
            let logs = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr);
            if json {
                logs.json().init();
            } else {
                logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .init();
            }
            let runtime = match runtime(&command) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("dike: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(cli::run(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // An error reply is still the command's output.
                    if let cli::CliError::ErrorReply(reply) = &e {
                        println!("{reply}");
                    }
                    eprintln!("dike: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
    }
}

/// Turns transparent huge pages off for this process. mimalloc asks for
/// them on its arenas (`madvise(MADV_HUGEPAGE)`), and a 2 MiB page stays
/// resident as a whole while any small object in it lives: with 1,000
/// idle groups that was a fifth of a node's RSS, about 25 KiB per hosted
/// replica (docs/ARCHITECTURE.md, "What a hosted replica costs"). It is
/// what `MIMALLOC_ALLOW_THP=0` does, which must be set before the process
/// starts.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integers only and touches no memory
    // of ours; a kernel without it fails the call, which changes nothing.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// The async runtime: multi-threaded, with a node's `--worker-threads` if
/// given.
fn runtime(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Command::Node(cli::args::NodeCli {
        run: Some(args), ..
    }) = command
    {
        if let Some(n) = args.worker_threads {
            builder.worker_threads(n.get());
        }
    }
    builder.build()
}

/// Without RUST_LOG a node logs its progress; a client command only warns.
fn default_filter(command: &Command) -> tracing_subscriber::EnvFilter {
    match command {
        Command::Node(cli::args::NodeCli { command: None, .. }) => {
            tracing_subscriber::EnvFilter::new("info,ractor_cluster=warn")
        }
        // The demo's own client node would only repeat what the demo says.
        Command::Demo => tracing_subscriber::EnvFilter::new("off"),
        _ => tracing_subscriber::EnvFilter::new("error"),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_program_runs_without_transparent_huge_pages() {
        super::no_transparent_huge_pages();
        // SAFETY: PR_GET_THP_DISABLE reads a flag of the process.
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(disabled, 1);
    }
}
