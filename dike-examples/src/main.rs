//! The `dike` command-line program.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// dike-rs: consistent, replicated application logic on Multi-Paxos.
#[derive(Parser)]
#[command(name = "dike", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a replicated arithmetic group surviving crashes, then run the
    /// fault simulator.
    Demo {
        /// Fault schedules the simulator runs at the end.
        #[arg(long, default_value_t = 200)]
        schedules: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { schedules } => {
            match dike_examples::demo::run(&mut std::io::stdout(), schedules) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dike demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
