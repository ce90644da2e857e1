//! `nvmmio trace`: strace-like options turned into the library's variables, and the `-c` table
//! summed over every process of the run.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use nvmmio::config::*;
use nvmmio::trace::filter::SyscallSet;
use nvmmio::trace::summary::{self, Row};

use crate::launch::{self, LaunchArgs};

#[derive(Args)]
pub struct TraceArgs {
    /// Write the trace to FILE (with -ff: FILE.PID per process) instead of standard error
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Children are always followed; give it twice (-ff) for one output file per process
    #[arg(short = 'f', action = clap::ArgAction::Count)]
    follow: u8,
    /// Count calls, errors and time per syscall and print a summary table instead of lines
    #[arg(short = 'c', long = "summary-only")]
    summary_only: bool,
    /// Print the lines and the summary table
    #[arg(short = 'C', long = "summary", conflicts_with = "summary_only")]
    summary_also: bool,
    /// Calls to trace: classes (file, data, network, process, memory, signal, desc) and names,
    /// comma-separated; `!` in front negates; `trace=` prefix accepted
    #[arg(short = 'e', value_name = "CLASS_OR_NAMES")]
    filter: Option<String>,
    /// Bytes of each data buffer to show
    #[arg(short = 's', value_name = "SIZE", default_value_t = 32)]
    string_limit: usize,
    /// Leave out the time spent in each call
    #[arg(long = "no-time")]
    no_time: bool,
    #[command(flatten)]
    launch: LaunchArgs,
}

pub fn run(args: &TraceArgs) -> Result<ExitCode, String> {
    let mut env = vec![(ENV_MODE, "trace".to_string())];
    if let Some(spec) = &args.filter {
        SyscallSet::parse(spec)?;
        env.push((ENV_TRACE_FILTER, spec.clone()));
    }
    env.push((ENV_TRACE_STRSIZE, args.string_limit.to_string()));
    if args.no_time {
        env.push((ENV_TRACE_TIME, "0".into()));
    }
    let per_process = args.follow >= 2;
    match &args.output {
        Some(path) => {
            if !per_process {
                // One file for the whole run: start it empty; every process appends to it.
                fs::write(path, b"").map_err(|e| format!("{}: {e}", path.display()))?;
            }
            env.push((ENV_TRACE_OUTPUT, absolute(path)?.display().to_string()));
            if per_process {
                env.push((ENV_TRACE_PER_PROCESS, "1".into()));
            }
        }
        None => {
            // Our own standard error, reopened by each process: the program's redirections of its
            // stderr do not capture the trace, as with strace.
            let own_stderr = format!("/proc/{}/fd/2", std::process::id());
            if fs::OpenOptions::new().append(true).open(&own_stderr).is_ok() {
                env.push((ENV_TRACE_OUTPUT, own_stderr));
            }
        }
    }
    let summary_dir = if args.summary_only || args.summary_also {
        let dir = std::env::temp_dir().join(format!("nvmmio-summary-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        env.push((ENV_TRACE_SUMMARY, if args.summary_only { "only" } else { "also" }.into()));
        env.push((ENV_TRACE_SUMMARY_DIR, dir.display().to_string()));
        Some(dir)
    } else {
        None
    };
    let status = launch::run(&args.launch, &env);
    if let Some(dir) = summary_dir {
        let table = sum_dumps(&dir);
        let _ = fs::remove_dir_all(&dir);
        let table = table?;
        match &args.output {
            Some(path) if !per_process => {
                let mut text = fs::read_to_string(path).unwrap_or_default();
                text.push_str(&table);
                fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            _ => eprint!("{table}"),
        }
    }
    status
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Sums every process's dump in `dir` into one table.
fn sum_dumps(dir: &Path) -> Result<String, String> {
    let mut rows: Vec<Row> = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let text = fs::read_to_string(entry.path()).unwrap_or_default();
        for (name, calls, errors, nanos) in summary::parse_dump(&text) {
            let name = summary::static_name(name);
            match rows.iter_mut().find(|r| r.name == name) {
                Some(r) => {
                    r.calls += calls;
                    r.errors += errors;
                    r.nanos += nanos;
                }
                None => rows.push(Row { name, calls, errors, nanos }),
            }
        }
    }
    let mut table = String::new();
    summary::write_table(&mut table, &mut rows).map_err(|e| e.to_string())?;
    Ok(table)
}
