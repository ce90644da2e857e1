//! Starting the user's command with the library preloaded, and passing its exit status on.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::Args;
use nvmmio::config::ENV_LIB;

#[derive(Args, Clone)]
pub struct LaunchArgs {
    /// The library to preload (default: $NVMMIO_LIB, else libnvmmio.so next to this binary)
    #[arg(long, value_name = "PATH")]
    pub lib: Option<PathBuf>,
    /// Manage DIR: regular files opened under it are served by nvmmio (repeatable)
    #[arg(long = "dir", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Each process prints what nvmmio served when it exits (NVMMIO_STATS=1)
    #[arg(long)]
    pub stats: bool,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Finds libnvmmio.so: --lib, then $NVMMIO_LIB, then next to the nvmmio binary.
pub fn library(args: &LaunchArgs) -> Result<PathBuf, String> {
    let candidate = match (&args.lib, std::env::var_os(ENV_LIB)) {
        (Some(path), _) => path.clone(),
        (None, Some(path)) => PathBuf::from(path),
        (None, None) => {
            let exe = std::env::current_exe().map_err(|e| format!("cannot locate the nvmmio binary: {e}"))?;
            exe.with_file_name("libnvmmio.so")
        }
    };
    let path = candidate.canonicalize().map_err(|e| {
        format!("{}: {e} (build it with `cargo build --release` or set {ENV_LIB})", candidate.display())
    })?;
    Ok(path)
}

/// Runs the command with the library preloaded and `env` set; returns its exit status as ours
/// (128 + signal number when it was killed, as shells report it).
pub fn run(args: &LaunchArgs, env: &[(&str, String)]) -> Result<ExitCode, String> {
    let lib = library(args)?;
    let preload = match std::env::var("LD_PRELOAD") {
        Ok(existing) if !existing.trim().is_empty() => format!("{}:{existing}", lib.display()),
        _ => lib.display().to_string(),
    };
    let (program, rest) = args.command.split_first().ok_or("no command given")?;
    let mut cmd = Command::new(program);
    cmd.args(rest).env("LD_PRELOAD", preload);
    for (name, value) in env {
        cmd.env(name, value);
    }
    if args.stats {
        cmd.env(nvmmio::config::ENV_STATS, "1");
    }
    if !args.dirs.is_empty() {
        let mut dirs = Vec::new();
        for d in &args.dirs {
            let real = d.canonicalize().map_err(|e| format!("--dir {}: {e}", d.display()))?;
            dirs.push(real.display().to_string());
        }
        cmd.env(nvmmio::config::ENV_DIRS, dirs.join(":"));
    }
    let mut child = cmd.spawn().map_err(|e| format!("{program}: {e}"))?;
    let status = child.wait().map_err(|e| format!("waiting for {program}: {e}"))?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(sig)) => ExitCode::from(128 + sig as u8),
        _ => ExitCode::FAILURE,
    })
}
