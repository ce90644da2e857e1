//! Full file systems. tests/programs/fill.c writes a file in a managed directory on a small
//! tmpfs (and on a loop-mounted ext4 image) until writes or fsyncs fail, checking every call as
//! it goes (ENOSPC only; a failed call leaves the file as it was; no SIGBUS), then makes room
//! and goes on; the file must end byte for byte as its model. Writers killed at random instants
//! on a file system kept nearly full must recover (`nvmmio recover`) to their last fsync plus
//! whole later calls (tests/full_disk/side.rs). tests/programs/enospc_cases.py holds the
//! shortest case found for each bug. Every scenario also runs through the kernel, which checks
//! the checker. Each test mounts its own file systems (root only) and unmounts them even when it
//! fails.
//!
//! Tests marked `#[ignore = "nvmmio bug: ..."]` show bugs the library still has; they pass once
//! it is fixed (`cargo test --release --test full_disk -- --ignored`).

mod common;
#[path = "full_disk/side.rs"]
mod side;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use side::{check_crash_image, parse_side, Side};

/// A file system mounted for one test on a temporary directory, unmounted when dropped (also
/// when the test panics).
struct Mount {
    dir: tempfile::TempDir,
    /// The ext4 image behind a loop mount, removed after the unmount.
    image: Option<PathBuf>,
    mounted: bool,
}

impl Mount {
    /// A tmpfs of `size` (mount's syntax: "4m").
    /// A small tmpfs; `None` (the test is skipped, and says so) where mounting is not allowed
    /// (not root).
    fn tmpfs(size: &str) -> Option<Mount> {
        let mut mount = Mount { dir: tmp_dir(), image: None, mounted: false };
        let options = format!("size={size}");
        if let Err(why) = run(Command::new("mount").args(["-t", "tmpfs", "-o", &options, "tmpfs"]).arg(mount.path())) {
            eprintln!("skipped: cannot mount a tmpfs here ({why})");
            return None;
        }
        mount.mounted = true;
        Some(mount)
    }

    /// An ext4 file system of `mib` MiB (4 KiB blocks, no reserved blocks) on a loop device, or
    /// None (with the reason on stderr) where loop devices or mkfs.ext4 are not available.
    fn ext4(mib: u64) -> Option<Mount> {
        let dir = tmp_dir();
        let image = dir.path().with_extension("img");
        let mut mount = Mount { dir, image: Some(image.clone()), mounted: false };
        fs::File::create(&image).and_then(|f| f.set_len(mib << 20)).expect("ext4 image file");
        let made = run(Command::new("mkfs.ext4").args(["-q", "-F", "-b", "4096", "-m", "0"]).arg(&image))
            .and_then(|()| run(Command::new("mount").args(["-o", "loop"]).arg(&image).arg(mount.path())));
        if let Err(why) = made {
            eprintln!("skipped: no ext4 loop mount here ({why})");
            return None;
        }
        mount.mounted = true;
        Some(mount)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A new directory on the mounted file system.
    fn subdir(&self, name: &str) -> PathBuf {
        let dir = self.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}

/// Runs a command to completion: Err with its name and stderr if it fails.
fn run(cmd: &mut Command) -> Result<(), String> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("{name}: {}", String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let umount = |extra: &[&str]| {
            Command::new("umount").args(extra).arg(self.dir.path()).output().is_ok_and(|o| o.status.success())
        };
        // Lazily if something still holds it (a process that outlived a failed test).
        if self.mounted && !umount(&[]) {
            umount(&["-l"]);
        }
        if let Some(image) = self.image.take() {
            let _ = fs::remove_file(image);
        }
    }
}

/// How a program runs: through the kernel, or under nvmmio with these settings.
#[derive(Clone, Copy, Debug)]
enum Way {
    Kernel,
    Nvmmio(&'static [(&'static str, &'static str)]),
}

/// Settings under which the engine's paths differ: defaults (appends in place on tmpfs, one log
/// of up to 256 MiB, checkpoints at 8 MiB); checkpoints in the background with a small log;
/// every write logged; appends in place on a disk too.
const DEFAULTS: Way = Way::Nvmmio(&[]);
const BACKGROUND: Way = Way::Nvmmio(&[("NVMMIO_CHECKPOINT_AT", "256k"), ("NVMMIO_LOG_MAX", "1m")]);
const ALL_LOGGED: Way = Way::Nvmmio(&[("NVMMIO_IN_PLACE_FROM", "1g"), ("NVMMIO_CHECKPOINT_AT", "256k")]);
/// Appends in place on a disk too (on tmpfs, the default).
const IN_PLACE: Way = Way::Nvmmio(&[("NVMMIO_IN_PLACE_FROM", "64k")]);

fn command(way: Way, exe: &Path, managed: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env_remove("LD_PRELOAD");
    for var in ["NVMMIO_CHECKPOINT_AT", "NVMMIO_LOG_MAX", "NVMMIO_IN_PLACE_FROM", "NVMMIO_MODE"] {
        cmd.env_remove(var);
    }
    if let Way::Nvmmio(settings) = way {
        cmd.env("LD_PRELOAD", library()).env("NVMMIO_DIRS", managed).envs(settings.iter().copied());
    }
    cmd
}

fn describe(out: &Output) -> String {
    use std::os::unix::process::ExitStatusExt;
    let status = match out.status.signal() {
        Some(libc::SIGBUS) => "killed by SIGBUS".to_string(),
        Some(sig) => format!("killed by signal {sig}"),
        None => format!("exit status {:?}", out.status.code()),
    };
    format!(
        "{status}\nstdout: {}stderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// nvmmio's logs left in a managed directory (none once every file is closed and checkpointed).
fn logs_left(managed: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(managed.join(".nvmmio")) else { return Vec::new() };
    entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".log")).collect()
}

/// tests/programs/fill.c, compiled once per test into a scratch directory off the mounts
/// (which also holds the model and side files).
struct Fill {
    scratch: tempfile::TempDir,
    exe: PathBuf,
}

impl Fill {
    fn new() -> Fill {
        let scratch = shm_dir();
        let exe = compile_c("fill", scratch.path());
        Fill { scratch, exe }
    }
}

// ---- Writing until the file system is full, then making room ----

/// Runs `fill full` on `mount` (a filler of `filler_kib` KiB; `sizes` "mixed" or "one-block")
/// and checks what it left: the data file, read through the kernel, equals the program's
/// model exactly, and no log is left behind.
fn fill_full(fill: &Fill, mount: &Mount, way: Way, sizes: &str, seed: u64, filler_kib: u64) {
    let managed = mount.subdir(&format!("m{seed}-{sizes}"));
    let (data, model) = (managed.join("data"), fill.scratch.path().join("model"));
    let out = command(way, &fill.exe, &managed)
        .arg("full")
        .arg(&data)
        .arg(managed.join("filler"))
        .arg(filler_kib.to_string())
        .arg(&model)
        .arg(seed.to_string())
        .arg(sizes)
        .output()
        .unwrap();
    let what = format!("{way:?}, {sizes} writes, seed {seed}, on {}", mount.path().display());
    assert!(out.status.success(), "{what}: {}", describe(&out));
    let counts = String::from_utf8_lossy(&out.stdout).into_owned();
    let model = fs::read(&model).unwrap();
    let got = fs::read(&data).unwrap();
    assert_eq!(got.len(), model.len(), "{what}: size ({counts})");
    if let Some(at) = got.iter().zip(&model).position(|(a, b)| a != b) {
        panic!("{what}: byte {at} differs from the model ({counts})");
    }
    if let Way::Nvmmio(_) = way {
        assert_eq!(logs_left(&managed), Vec::<String>::new(), "{what}: logs left behind");
    }
    fs::remove_file(&data).unwrap();
}

/// The test program itself, through the kernel: it reaches ENOSPC (with short counts on the
/// way), keeps its model, and the file matches it.
#[test]
fn fill_checks_itself_through_the_kernel() {
    let fill = Fill::new();
    let Some(mount) = Mount::tmpfs("4m") else { return };
    for (seed, sizes) in [(1, "mixed"), (2, "one-block")] {
        fill_full(&fill, &mount, Way::Kernel, sizes, seed, 1024);
    }
    if let Some(mount) = Mount::ext4(16) {
        fill_full(&fill, &mount, Way::Kernel, "mixed", 3, 2048);
    }
}

/// Writes that stay inside one 4 KiB block (100 B, up to 4 KiB): the engine's paths where a
/// write cannot be cut in two. Checkpoints in the background make the log's room reusable.
#[test]
fn one_block_writes_on_a_full_tmpfs() {
    let fill = Fill::new();
    let Some(mount) = Mount::tmpfs("4m") else { return };
    for seed in 1..=3 {
        fill_full(&fill, &mount, BACKGROUND, "one-block", seed, 1024);
    }
}

/// Writes of 100 B, 4 KiB and 100 KiB, appends and overwrites, under each setting.
#[test]
fn mixed_writes_on_a_full_tmpfs() {
    let fill = Fill::new();
    let Some(mount) = Mount::tmpfs("4m") else { return };
    for (seed, way) in [(1, DEFAULTS), (2, BACKGROUND)] {
        fill_full(&fill, &mount, way, "mixed", seed, 1024);
    }
}

/// The same with every write logged and checkpoints in the background every 256 KiB.
#[test]
fn mixed_logged_writes_on_a_full_tmpfs() {
    let fill = Fill::new();
    let Some(mount) = Mount::tmpfs("4m") else { return };
    fill_full(&fill, &mount, ALL_LOGGED, "mixed", 3, 1024);
}

/// Once the file system ran full, removing a 1 MiB file must let small overwrites go on.
#[test]
fn room_made_after_enospc_is_used() {
    let fill = Fill::new();
    let Some(mount) = Mount::tmpfs("4m") else { return };
    fill_full(&fill, &mount, DEFAULTS, "one-block", 1, 1024);
}

/// Every write logged, checkpoints in the background: the checkpoint thread runs out of room.
#[test]
fn background_checkpoints_on_a_full_tmpfs() {
    let fill = Fill::new();
    let Some(mount) = Mount::tmpfs("4m") else { return };
    for seed in 1..=4 {
        fill_full(&fill, &mount, ALL_LOGGED, "one-block", seed, 1024);
    }
}

#[test]
fn one_block_writes_on_a_full_ext4() {
    let Some(mount) = Mount::ext4(16) else { return };
    let fill = Fill::new();
    for seed in 1..=2 {
        fill_full(&fill, &mount, DEFAULTS, "one-block", seed, 2048);
    }
}

#[test]
fn mixed_writes_on_a_full_ext4() {
    let Some(mount) = Mount::ext4(16) else { return };
    let fill = Fill::new();
    for (seed, way) in [(1, DEFAULTS), (2, BACKGROUND), (3, IN_PLACE)] {
        fill_full(&fill, &mount, way, "mixed", seed, 2048);
    }
}

/// Every write logged, checkpoints in the background, on ext4.
#[test]
fn background_checkpoints_on_a_full_ext4() {
    let Some(mount) = Mount::ext4(16) else { return };
    let fill = Fill::new();
    for seed in 1..=2 {
        fill_full(&fill, &mount, BACKGROUND, "one-block", seed, 2048);
    }
}

// ---- Killed while the file system is full ----

/// When `nvmmio recover` runs after the kill.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Recover {
    /// With the file system as full as the writer left it.
    WhileFull,
    /// After the filler files are removed.
    WithRoom,
}

/// Runs `fill crash` in a managed directory of a fresh 4 MiB tmpfs kept nearly full, kills it
/// after `ms` milliseconds, runs `nvmmio recover`, and checks the file. Returns the side file's
/// record.
fn crash_round(fill: &Fill, way: Way, sizes: &str, recover: Recover, seed: u64, ms: u64) -> Option<Side> {
    let mount = Mount::tmpfs("4m")?;
    let scratch = fill.scratch.path();
    let exe = &fill.exe;
    let (managed, fillers) = (mount.subdir("managed"), mount.subdir("fill"));
    let side_path = scratch.join("side");
    let what = format!("{way:?}, {sizes} writes, seed {seed}, killed after {ms} ms");
    // A kill before the program starts (a loaded machine) must not find the last round's.
    let _ = fs::remove_file(&side_path);
    let mut child = command(way, exe, &managed)
        .arg("crash")
        .arg(managed.join("data"))
        .arg(&fillers)
        .arg(&side_path)
        .arg(seed.to_string())
        .arg(sizes)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sleep_after_first_record(&side_path, ms);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{what}: ended before the kill: {}", describe(&out));
    let side = parse_side(&fs::read_to_string(&side_path).unwrap_or_default());
    assert!(side.other_errors.is_empty(), "{what}: bugs noted: {:?}", side.other_errors);
    if recover == Recover::WithRoom {
        fs::remove_dir_all(&fillers).unwrap();
    }
    if let Way::Nvmmio(_) = way {
        let before = fs::read(managed.join("data")).unwrap_or_default();
        let rec = nvmmio_cmd(scratch, &["recover", managed.to_str().unwrap()]);
        if recover == Recover::WhileFull && rec.status.code() == Some(1) {
            // No room for the replay: said so, the file left as it was, and an open under
            // nvmmio refused (ENOSPC) rather than served without the log.
            let text = String::from_utf8_lossy(&rec.stdout);
            assert!(text.contains("ENOSPC") && text.contains("left as it was"), "{what}: {text}");
            assert!(fs::read(managed.join("data")).unwrap_or_default() == before, "{what}: recover changed the file");
            let open = command(way, Path::new("/usr/bin/python3"), &managed)
                .args([
                    "-c",
                    "import sys
try:
 open(sys.argv[1], 'rb')
except OSError as e:
 print(e.errno)",
                ])
                .arg(managed.join("data"))
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&open.stdout).trim(),
                libc::ENOSPC.to_string(),
                "{what}: {}",
                describe(&open)
            );
            eprintln!("{what}: no room for the replay until the fillers went");
            fs::remove_dir_all(&fillers).unwrap();
            let rec = nvmmio_cmd(scratch, &["recover", managed.to_str().unwrap()]);
            assert!(rec.status.success(), "{what}: nvmmio recover with room: {}", describe(&rec));
        } else {
            assert!(rec.status.success(), "{what}: nvmmio recover ({recover:?}): {}", describe(&rec));
        }
    }
    let got = fs::read(managed.join("data")).unwrap_or_default();
    check_crash_image(&got, &side, matches!(way, Way::Kernel), &what);
    Some(side)
}

/// Kill points spread over the run, counted from the writer's first record.
fn crash_rounds(ways: &[Way], sizes: &str, recover: Recover, rounds: u64) {
    let mut seed = 2024u64;
    let (mut write_enospc, mut fsync_enospc) = (0, 0);
    let fill = Fill::new();
    for round in 0..rounds {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let way = ways[round as usize % ways.len()];
        let Some(side) = crash_round(&fill, way, sizes, recover, round, 150 + (seed >> 33) % 350) else { return };
        write_enospc += side.write_enospc;
        fsync_enospc += side.fsync_enospc;
    }
    eprintln!("{rounds} rounds of {sizes} writes: {write_enospc} writes and {fsync_enospc} fsyncs failed with ENOSPC");
    assert!(write_enospc > 0, "the file system never ran full");
    // Neither the kernel's fsync on tmpfs nor nvmmio's needs room (a write takes what its commit
    // and publishing need), so fsyncs seldom fail: none is required to.
}

/// The checker itself, on the kernel: the file holds every call that returned.
#[test]
fn killed_writers_through_the_kernel_check_the_checker() {
    crash_rounds(&[Way::Kernel], "mixed", Recover::WhileFull, 2);
}

/// Killed while ENOSPC comes and goes (in writes, fsyncs and truncates); recovered once there
/// is room again.
#[test]
fn killed_one_block_writers_on_a_full_tmpfs_recover_with_room() {
    crash_rounds(&[DEFAULTS], "one-block", Recover::WithRoom, 8);
}

/// `nvmmio recover` on the file system the writer left full.
#[test]
fn killed_one_block_writers_on_a_full_tmpfs_recover_while_full() {
    crash_rounds(&[DEFAULTS], "one-block", Recover::WhileFull, 8);
}

#[test]
fn killed_writers_with_background_checkpoints_on_a_full_tmpfs() {
    crash_rounds(&[BACKGROUND], "one-block", Recover::WithRoom, 8);
}

#[test]
fn killed_mixed_writers_on_a_full_tmpfs_recover_with_room() {
    crash_rounds(&[DEFAULTS], "mixed", Recover::WithRoom, 8);
}

// ---- The shortest cases, one per bug (tests/programs/enospc_cases.py) ----

/// Runs `enospc_cases.py CASE MOUNT [STEP SIDE]` the given way; returns its output.
fn case_step(mount: &Mount, way: Way, case: &str, step: &[&Path]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/enospc_cases.py");
    command(way, Path::new("python3"), &mount.path().join("m"))
        .arg(script)
        .arg(case)
        .arg(mount.path())
        .args(step)
        .output()
        .unwrap()
}

/// The last line a case printed must be "ok".
fn assert_ok(out: &Output, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.ends_with("ok\n"), "{what}: {}", describe(out));
}

/// Runs a one-step case on a fresh tmpfs of `size`, through the kernel and then under nvmmio.
fn case(name: &str, size: &str, way: Way, sparse: bool) {
    for way in [Way::Kernel, way] {
        let Some(mount) = Mount::tmpfs(size) else { return };
        mount.subdir("m");
        if sparse {
            fs::File::create(mount.path().join("m/f")).unwrap().set_len(256 << 10).unwrap();
        }
        assert_ok(&case_step(&mount, way, name, &[]), &format!("{name}, {way:?}"));
    }
}

/// Runs a one-step case on a fresh ext4 image of `mib` MiB, through the kernel and then under
/// nvmmio.
fn case_on_ext4(name: &str, mib: u64, way: Way) {
    for way in [Way::Kernel, way] {
        let Some(mount) = Mount::ext4(mib) else { return };
        mount.subdir("m");
        assert_ok(&case_step(&mount, way, name, &[]), &format!("{name} on ext4, {way:?}"));
    }
}

#[test]
fn a_write_that_fails_with_enospc_changes_nothing() {
    case("failed-write", "1m", DEFAULTS, false);
}

#[test]
fn overwrites_go_on_once_room_is_made() {
    case("room-made", "4m", DEFAULTS, false);
}

#[test]
fn a_background_checkpoint_without_room_keeps_fsynced_data() {
    case(
        "background-checkpoint",
        "8m",
        Way::Nvmmio(&[("NVMMIO_IN_PLACE_FROM", "1g"), ("NVMMIO_CHECKPOINT_AT", "64k")]),
        false,
    );
}

#[test]
fn holes_read_as_zeros_on_a_full_tmpfs() {
    case("holes", "1m", DEFAULTS, true);
}

/// A write into a hole below the committed size is logged: its block in the data file is
/// allocated by the write (ENOSPC there, as the kernel's), not by the checkpoint later.
#[test]
fn a_logged_write_into_a_hole_on_a_full_file_system_fails_with_enospc() {
    case("hole-write", "1m", DEFAULTS, false);
    case("hole-write", "1m", ALL_LOGGED, false);
    case_on_ext4("hole-write", 16, DEFAULTS);
}

/// ext4, writes in place switched on: an append that finds too little room gives back what it
/// allocated, but not the blocks reserved earlier for logged bytes past the data file's end.
#[test]
fn a_failed_extension_keeps_the_blocks_reserved_for_logged_bytes() {
    case_on_ext4("extend-keeps-reserved", 16, IN_PLACE);
}

/// Killed after an fsync whose blocks found no room in the data file: `nvmmio recover` must
/// succeed on the full file system, and whatever it leaves must not come back over later
/// fsynced writes.
#[test]
fn recovery_on_a_full_file_system() {
    let scratch = shm_dir();
    let side = scratch.path().join("side");
    for way in [Way::Kernel, DEFAULTS] {
        let Some(mount) = Mount::tmpfs("1m") else { return };
        let managed = mount.subdir("m");
        let crashed = case_step(&mount, way, "recover", &[Path::new("crash"), &side]);
        assert!(String::from_utf8_lossy(&crashed.stdout).contains("fsync"), "{way:?}: {}", describe(&crashed));
        if let Way::Nvmmio(_) = way {
            let rec = nvmmio_cmd(scratch.path(), &["recover", managed.to_str().unwrap()]);
            assert!(rec.status.success(), "nvmmio recover on the full file system: {}", describe(&rec));
        }
        assert_ok(&case_step(&mount, way, "recover", &[Path::new("later"), &side]), &format!("later, {way:?}"));
        fs::remove_file(mount.path().join("filler")).unwrap();
        assert_ok(&case_step(&mount, way, "recover", &[Path::new("reopen"), &side]), &format!("reopen, {way:?}"));
    }
}
