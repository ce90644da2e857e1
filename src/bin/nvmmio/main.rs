//! `nvmmio`: run programs under libnvmmio.so and read what it reports.

mod launch;
mod recover;
mod trace_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nvmmio",
    version,
    about = "Run unmodified programs with nvmmio's user-level IO library preloaded",
    after_help = variables_help()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command with libnvmmio.so preloaded; with --dir, files under DIR are served in user
    /// space (memory-mapped, per-file redo logs, failure-atomic fsync); other calls reach the kernel
    Run {
        #[command(flatten)]
        launch: launch::LaunchArgs,
    },
    /// Run a command and log its system calls, strace-style (children and threads included)
    Trace(trace_cmd::TraceArgs),
    /// Apply what crashed processes left in a managed directory's logs (as the next open would).
    /// Exit status: 0 all applied; 1 a log could not be applied yet (no room, say: kept, run
    /// again later); 2 a log is damaged or lost (file left as it is)
    Recover {
        /// The managed directory
        dir: std::path::PathBuf,
        /// Accept files whose log was lost as they are: remove their mark, so that nvmmio
        /// serves them again
        #[arg(long)]
        accept_lost: bool,
    },
}

fn variables_help() -> String {
    let mut s = String::from("Environment variables (read by libnvmmio.so; set them for plain LD_PRELOAD use):\n");
    for (name, what) in nvmmio::config::VARIABLES {
        s.push_str(&format!("  {name:<26} {what}\n"));
    }
    s.push_str("\nExamples:\n  nvmmio run --dir /dev/shm/db -- sqlite3 /dev/shm/db/x.sqlite 'select 1'\n  nvmmio recover /dev/shm/db\n  nvmmio trace -c -- sqlite3 db.sqlite 'select 1'\n  nvmmio trace -ff -o /tmp/tr -e file,data -- make\n  LD_PRELOAD=target/release/libnvmmio.so NVMMIO_MODE=trace ls");
    s
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { launch } => launch::run(&launch, &[]),
        Command::Trace(args) => trace_cmd::run(&args),
        Command::Recover { dir, accept_lost } => recover::run(&dir, accept_lost),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("nvmmio: {msg}");
            ExitCode::from(125)
        }
    }
}
