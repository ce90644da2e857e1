//! Files shared between processes under nvmmio: each process sees what the others wrote, sizes
//! agree, forked children share offsets, and a process killed while another shares the file
//! loses nothing the kernel would have kept. Each test drives two real processes
//! (tests/programs/fileops.py) call by call, so the interleaving is exact.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use common::*;

const PYTHON: &str = "/usr/bin/python3";

fn fileops() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/fileops.py")
}

/// A process running fileops.py, with `dir` managed (or not, with `managed` false).
struct Peer {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Peer {
    fn start(dir: &Path, managed: bool) -> Peer {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(fileops()).current_dir(dir).env_remove("LD_PRELOAD").env("NVMMIO_STATS", "1");
        if managed {
            cmd.env("LD_PRELOAD", library()).env("NVMMIO_DIRS", dir);
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Peer { child, input, output }
    }

    /// Runs one call (a JSON list) and returns the reply's value, or `Err(errno)`.
    fn call(&mut self, call: &str) -> Result<String, i32> {
        writeln!(self.input, "{call}").unwrap();
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap();
        let line = line.trim();
        if let Some(errno) = line.strip_prefix("[\"error\", ").and_then(|r| r.strip_suffix(']')) {
            return Err(errno.parse().unwrap());
        }
        let value = line.strip_prefix("[\"ok\", ").and_then(|r| r.strip_suffix(']'));
        Ok(value.unwrap_or_else(|| panic!("bad reply {line:?} to {call}")).to_string())
    }

    fn ok(&mut self, call: &str) -> String {
        self.call(call).unwrap_or_else(|e| panic!("{call}: errno {e}"))
    }

    fn number(&mut self, call: &str) -> u64 {
        self.ok(call).parse().unwrap()
    }

    /// Reads the whole file at `fd` (its text as the JSON reply spells it).
    fn contents(&mut self, fd: u64) -> String {
        self.ok(&format!(r#"["pread", {fd}, 10000000, 0]"#))
    }

    /// Ends the process and returns the calls nvmmio served in it (from the exit summary).
    fn finish(self) -> u64 {
        drop(self.input);
        let out = self.child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        served(&String::from_utf8_lossy(&out.stderr))
    }
}

/// The "N calls served" of the exit summary lines (0 without one).
fn served(stderr: &str) -> u64 {
    summary_counts(stderr, " calls served").into_iter().sum()
}

/// The JSON text of `len` bytes of a pattern (printable, so that it needs no escapes).
fn text(len: usize, seed: u8) -> String {
    (0..len).map(|i| (b'a' + ((i / 7 + seed as usize) % 26) as u8) as char).collect()
}

fn in_both_file_systems(test: impl Fn(&Path)) {
    for base in [shm_dir(), tmp_dir()] {
        test(base.path());
    }
}

#[test]
fn two_processes_see_each_others_writes() {
    in_both_file_systems(|dir| {
        let mut a = Peer::start(dir, true);
        let fa = a.number(r#"["open", "shared", "rw|creat"]"#);
        // Logged (first 64 KiB, and an overwrite) and in-place bytes, none fsynced.
        let (first, middle, more, from_b) = (text(200_000, 1), text(5000, 2), text(3000, 3), text(10_000, 4));
        a.number(&format!(r#"["write", {fa}, "{first}"]"#));
        a.number(&format!(r#"["pwrite", {fa}, "{middle}", 1000]"#));
        let mut expect = first.clone();
        expect.replace_range(1000..6000, &middle);

        let mut b = Peer::start(dir, true);
        assert_eq!(b.number(r#"["stat", "shared"]"#), 200_000, "stat in another process");
        let fb = b.number(r#"["open", "shared", "rw"]"#);
        assert_eq!(b.number(&format!(r#"["fstat", {fb}]"#)), 200_000);
        assert_eq!(b.contents(fb), format!("\"{expect}\""), "B reads what A wrote");

        // Both go on writing; each reads the other's bytes and the same size.
        a.number(&format!(r#"["write", {fa}, "{more}"]"#));
        expect.push_str(&more);
        assert_eq!(b.contents(fb), format!("\"{expect}\""), "B reads A's later write");
        b.number(&format!(r#"["pwrite", {fb}, "{from_b}", 250000]"#));
        expect.push_str(&"\\u0000".repeat(250_000 - expect.len()));
        expect.push_str(&from_b);
        assert_eq!(a.contents(fa), format!("\"{expect}\""), "A reads B's write past the end");
        assert_eq!(a.number(&format!(r#"["fstat", {fa}]"#)), 260_000);
        assert_eq!(b.number(&format!(r#"["fstat", {fb}]"#)), 260_000);
        // A's own offset carried over from the engine to the kernel.
        assert_eq!(a.number(&format!(r#"["seek", {fa}, 0, 1]"#)), 203_000);
        a.ok(&format!(r#"["close", {fa}]"#));
        b.ok(&format!(r#"["close", {fb}]"#));
        let served_a = a.finish();
        b.finish();
        assert!(served_a >= 2, "A served its first writes with the engine ({served_a} calls)");
        let on_disk = std::fs::read(dir.join("shared")).unwrap();
        assert_eq!(on_disk.len(), 260_000);
        assert_eq!(&on_disk[..1000], &first.as_bytes()[..1000]);
        assert_eq!(&on_disk[250_000..], from_b.as_bytes());
        assert_eq!(std::fs::read_dir(dir.join(".nvmmio")).unwrap().count(), 0, "nothing left in .nvmmio");
    });
}

/// A file left to the kernel for its name (files under it died young twice, see
/// `short_lived`) keeps others from serving it with the engine while it is open: a second
/// process joins the kernel's users, and each reads the other's bytes at once. And a file
/// another process serves with the engine is handed over when one opens it under such a name.
#[test]
fn a_short_lived_file_shared_with_another_process() {
    in_both_file_systems(|dir| {
        let mut a = Peer::start(dir, true);
        for i in 0..2 {
            let f = a.number(r#"["open", "journal", "rw|creat"]"#);
            a.number(&format!(r#"["pwrite", {f}, "{}", 0]"#, text(600, i)));
            a.ok(&format!(r#"["close", {f}]"#));
            a.ok(r#"["unlink", "journal"]"#);
        }
        let fa = a.number(r#"["open", "journal", "rw|creat"]"#);
        let (first, second) = (text(1000, 7), text(500, 8));
        a.number(&format!(r#"["pwrite", {fa}, "{first}", 0]"#));

        let mut b = Peer::start(dir, true);
        let fb = b.number(r#"["open", "journal", "rw"]"#);
        assert_eq!(b.contents(fb), format!("\"{first}\""), "B reads what A wrote");
        b.number(&format!(r#"["pwrite", {fb}, "{second}", 1000]"#));
        assert_eq!(a.contents(fa), format!("\"{first}{second}\""), "A reads B's write at once");
        assert_eq!(a.number(&format!(r#"["fstat", {fa}]"#)), 1500);
        a.ok(&format!(r#"["close", {fa}]"#));
        b.ok(&format!(r#"["close", {fb}]"#));
        a.ok(r#"["unlink", "journal"]"#);

        // B (for which the name is ordinary) serves a new file under it with the engine; A
        // opens it as a short-lived name: B hands it over first.
        let fb = b.number(r#"["open", "journal", "rw|creat"]"#);
        b.number(&format!(r#"["write", {fb}, "{second}"]"#));
        let fa = a.number(r#"["open", "journal", "rw"]"#);
        assert_eq!(a.contents(fa), format!("\"{second}\""), "A reads B's logged write");
        a.number(&format!(r#"["pwrite", {fa}, "{first}", 500]"#));
        assert_eq!(b.contents(fb), format!("\"{second}{first}\""), "B reads A's write");
        a.ok(&format!(r#"["close", {fa}]"#));
        b.ok(&format!(r#"["close", {fb}]"#));
        // The first two journals' writes only: the third journal, and B's, were the kernel's.
        assert_eq!(a.finish(), 2, "A served none of the later journals' calls");
        assert!(b.finish() >= 1, "B served its first write with the engine");
        assert_eq!(std::fs::read(dir.join("journal")).unwrap().len(), 1500);
        assert_eq!(std::fs::read_dir(dir.join(".nvmmio")).map(|d| d.count()).unwrap_or(0), 0);
    });
}

#[test]
fn the_last_process_alone_serves_the_file_again() {
    let dir = shm_dir();
    let dir = dir.path();
    let mut a = Peer::start(dir, true);
    let mut b = Peer::start(dir, true);
    let fa = a.number(r#"["open", "f", "rw|creat"]"#);
    let fb = b.number(r#"["open", "f", "rw"]"#);
    b.ok(&format!(r#"["close", {fb}]"#));
    a.ok(&format!(r#"["close", {fa}]"#));
    // Alone now: a new open is served by the engine (counted), then B joins again.
    let fa = a.number(r#"["open", "f", "rw"]"#);
    for _ in 0..5 {
        a.number(&format!(r#"["write", {fa}, "xyz"]"#));
    }
    let fb = b.number(r#"["open", "f", "r"]"#);
    assert_eq!(b.contents(fb), "\"xyzxyzxyzxyzxyz\"");
    assert!(a.finish() >= 5);
    b.finish();
}

#[test]
fn a_process_killed_while_another_shares_the_file() {
    in_both_file_systems(|dir| {
        // The owner is killed after B joined: everything it wrote was handed to the kernel.
        let mut a = Peer::start(dir, true);
        let fa = a.number(r#"["open", "k1", "rw|creat"]"#);
        a.number(&format!(r#"["write", {fa}, "{}"]"#, text(100_000, 5)));
        let mut b = Peer::start(dir, true);
        let fb = b.number(r#"["open", "k1", "rw"]"#);
        a.number(&format!(r#"["write", {fa}, "tail"]"#));
        a.child.kill().unwrap();
        a.child.wait().unwrap();
        let mut expect = text(100_000, 5);
        expect.push_str("tail");
        assert_eq!(b.contents(fb), format!("\"{expect}\""));
        b.finish();

        // The owner is killed alone: the next process recovers its last fsync and goes on.
        let mut a = Peer::start(dir, true);
        let fa = a.number(r#"["open", "k2", "rw|creat"]"#);
        a.number(&format!(r#"["write", {fa}, "{}"]"#, text(20_000, 6)));
        a.ok(&format!(r#"["fsync", {fa}]"#));
        a.number(&format!(r#"["pwrite", {fa}, "{}", 0]"#, text(4096, 7)));
        a.child.kill().unwrap();
        a.child.wait().unwrap();
        let mut b = Peer::start(dir, true);
        let fb = b.number(r#"["open", "k2", "rw"]"#);
        let got = b.contents(fb);
        let unsynced = format!("\"{}{}\"", text(4096, 7), &text(20_000, 6)[4096..]);
        assert!(got == format!("\"{}\"", text(20_000, 6)) || got == unsynced, "recovered {} bytes", got.len());
        b.finish();
    });
}

/// A forked child shares its parent's open file descriptions: offsets move together and each
/// sees the other's writes, as through the kernel.
#[test]
fn forked_children_share_offsets_and_data() {
    let script = r#"
import os
fd = os.open("f", os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"parent-before-fork;" * 5000)
for i in range(3):
    pid = os.fork()
    if pid == 0:
        os.write(fd, b"child %d at %d;" % (i, os.lseek(fd, 0, 1)))
        os.pwrite(fd, b"CHILD", 10 * i)
        os._exit(0)
    os.waitpid(pid, 0)
    os.write(fd, b"parent after child %d at %d;" % (i, os.lseek(fd, 0, 1)))
print(os.fstat(fd).st_size, os.lseek(fd, 0, 1))
print(os.pread(fd, 100, 0))
print(os.pread(fd, 1000, 94990))
"#;
    same_output_and_file(script);
}

/// A truncate by path or an O_TRUNC open in another process never lets the owner's logged
/// bytes come back.
#[test]
fn truncating_a_file_another_process_serves() {
    in_both_file_systems(|dir| {
        let mut a = Peer::start(dir, true);
        let fa = a.number(r#"["open", "t", "rw|creat"]"#);
        a.number(&format!(r#"["write", {fa}, "{}"]"#, text(100_000, 8)));
        let mut b = Peer::start(dir, true);
        b.ok(r#"["truncate", "t", 10]"#);
        assert_eq!(a.number(&format!(r#"["fstat", {fa}]"#)), 10);
        assert_eq!(a.contents(fa), format!("\"{}\"", &text(100_000, 8)[..10]));
        a.ok(&format!(r#"["close", {fa}]"#));

        // Alone again, A serves a new open; B's O_TRUNC open empties the file.
        let fa = a.number(r#"["open", "t", "rw"]"#);
        a.number(&format!(r#"["pwrite", {fa}, "{}", 0]"#, text(90_000, 9)));
        let fb = b.number(r#"["open", "t", "w|trunc"]"#);
        b.number(&format!(r#"["write", {fb}, "new"]"#));
        assert_eq!(a.contents(fa), "\"new\"");
        a.finish();
        b.finish();
        assert_eq!(std::fs::read(dir.join("t")).unwrap(), b"new");
    });
}

/// Two SQLite processes writing one database at once (its own locks arbitrate, forwarded to
/// the kernel): every row of both arrives and the database passes its integrity check, in
/// rollback-journal and WAL modes.
#[test]
fn two_sqlite_processes_write_one_database() {
    let writer = r#"
import sqlite3, sys
db = sqlite3.connect("db.sqlite", timeout=60)
if sys.argv[2] == "setup":
    db.execute("pragma journal_mode=" + sys.argv[1])
    db.execute("create table t(who text, n int, pad text)")
    db.commit()
    sys.exit(0)
for n in range(150):
    db.execute("insert into t values (?, ?, ?)", (sys.argv[2], n, "x" * (n * 37 % 3000)))
    db.commit()
"#;
    in_both_file_systems(|dir| {
        for mode in ["delete", "wal"] {
            let sub = dir.join(mode);
            std::fs::create_dir_all(&sub).unwrap();
            let start = |who: &str| {
                Command::new(PYTHON)
                    .args(["-c", writer, mode, who])
                    .current_dir(&sub)
                    .env("LD_PRELOAD", library())
                    .env("NVMMIO_DIRS", &sub)
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            };
            assert!(start("setup").wait().unwrap().success());
            let children = [start("a"), start("b")];
            for child in children {
                let out = child.wait_with_output().unwrap();
                assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
            }
            let check = Command::new(PYTHON)
                .args([
                    "-c",
                    "import sqlite3; db = sqlite3.connect('db.sqlite'); \
                     print(db.execute('pragma integrity_check').fetchone()[0], \
                     db.execute('select count(*), count(distinct who || n) from t').fetchone())",
                ])
                .current_dir(&sub)
                .env("LD_PRELOAD", library())
                .env("NVMMIO_DIRS", &sub)
                .output()
                .unwrap();
            assert_eq!(ok(&check), "ok (300, 300)\n", "{mode}");
        }
    });
}

/// A process without nvmmio sees what an fsync covered once it returns (the committed blocks
/// are copied into the file), and everything once the writer closes the file.
#[test]
fn a_process_without_nvmmio_sees_data_at_fsync_and_close() {
    in_both_file_systems(|dir| {
        let mut a = Peer::start(dir, true);
        let mut plain = Peer::start(dir, false);
        let fa = a.number(r#"["open", "v", "rw|creat"]"#);
        let mut expect = text(30_000, 11);
        a.number(&format!(r#"["write", {fa}, "{expect}"]"#));
        a.number(&format!(r#"["pwrite", {fa}, "{}", 5000]"#, text(7000, 12)));
        expect.replace_range(5000..12000, &text(7000, 12));
        a.ok(&format!(r#"["fsync", {fa}]"#));
        let fp = plain.number(r#"["open", "v", "r"]"#);
        assert_eq!(plain.contents(fp), format!("\"{expect}\""), "after fsync");
        a.ok(&format!(r#"["truncate_fd", {fa}, 40000]"#));
        a.ok(&format!(r#"["fsync", {fa}]"#));
        assert_eq!(
            plain.number(&format!(r#"["fstat", {fp}]"#)),
            40_000,
            "a truncate upwards, after fsync, in {}",
            dir.display()
        );
        a.number(&format!(r#"["pwrite", {fa}, "late", 100]"#));
        a.ok(&format!(r#"["close", {fa}]"#));
        expect.replace_range(100..104, "late");
        expect.push_str(&"\\u0000".repeat(10_000));
        assert_eq!(plain.contents(fp), format!("\"{expect}\""), "after close");
        a.finish();
        plain.finish();
    });
}

/// A program started with posix_spawn (vfork) inherits the descriptors without FD_CLOEXEC and
/// shares their offsets with the parent, which goes on writing after it: as through the kernel.
#[test]
fn spawned_programs_share_inherited_descriptors() {
    let script = r#"
import os, subprocess
fd = os.open("f", os.O_RDWR | os.O_CREAT, 0o644)
os.set_inheritable(fd, True)
os.write(fd, b"parent;" * 20000)
subprocess.run(["/bin/sh", "-c", f"printf child-wrote >&{fd}"], pass_fds=(fd,), check=True)
os.write(fd, b"parent-again")
print(os.lseek(fd, 0, 1), os.fstat(fd).st_size)
print(os.pread(fd, 40, 139990))
"#;
    same_output_and_file(script);
}

/// Runs the Python `script` through the kernel and under nvmmio (on /dev/shm and under /tmp):
/// the same output, and the same file `f` left behind.
fn same_output_and_file(script: &str) {
    for base in [shm_dir(), tmp_dir()] {
        let mut outputs = Vec::new();
        for managed in [false, true] {
            let dir = base.path().join(if managed { "managed" } else { "kernel" });
            std::fs::create_dir_all(&dir).unwrap();
            let mut cmd = Command::new(PYTHON);
            cmd.args(["-c", script]).current_dir(&dir).env_remove("LD_PRELOAD");
            if managed {
                cmd.env("LD_PRELOAD", library()).env("NVMMIO_DIRS", &dir);
            }
            outputs.push((ok(&cmd.output().unwrap()), std::fs::read(dir.join("f")).unwrap()));
        }
        assert_eq!(outputs[0].0, outputs[1].0);
        assert!(outputs[0].1 == outputs[1].1, "files differ");
    }
}
