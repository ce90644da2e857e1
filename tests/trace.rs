//! Trace mode against real programs: same call sequence as strace, decoded arguments, -c totals,
//! per-process files, filters, and whole lines from many threads.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

/// (name, return value) of each finished call in an nvmmio trace file.
fn nvmmio_calls(text: &str) -> Vec<(String, String)> {
    text.lines().filter_map(|l| parse_line(l.split_once(' ')?.1)).collect()
}

/// (name, return value) of each finished call in `strace -f -o` output (`PID name(...) = ret`).
fn strace_calls(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start();
            parse_line(rest)
        })
        .collect()
}

/// `name(args) = ret [errno ...] [<time>]` -> (name, ret); skips unfinished and resumed lines.
fn parse_line(line: &str) -> Option<(String, String)> {
    if line.starts_with('<') || line.contains("<unfinished") || line.starts_with("+++") || line.starts_with("---") {
        return None;
    }
    let name = line.split('(').next()?.to_string();
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.is_empty() {
        return None;
    }
    // strace pads before " = " to align results.
    let (head, ret) = line.rsplit_once(" = ")?;
    if !head.trim_end().ends_with(')') {
        return None;
    }
    let ret = ret.split_whitespace().next()?.to_string();
    Some((name, ret))
}

fn trace(dir: &Path, opts: &[&str], cmd: &[&str]) -> std::process::Output {
    let mut args = vec!["trace"];
    args.extend_from_slice(opts);
    args.push("--");
    args.extend_from_slice(cmd);
    nvmmio_cmd(dir, &args)
}

/// The calls from the first one that names `marker` on, to compare runs that differ only in
/// start-up (the dynamic loader's calls are not libc's and are not intercepted).
fn from_marker(calls: &[(String, String)], text_lines: &[&str], marker: &str) -> Vec<(String, String)> {
    let idx = text_lines
        .iter()
        .filter(|l| parse_line(l.trim_start_matches(|c: char| c.is_ascii_digit() || c == '/' || c == ' ')).is_some())
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("marker {marker} not found"));
    calls[idx..].to_vec()
}

#[test]
fn same_call_sequence_as_strace() {
    let dir = shm_dir();
    fs::write(dir.path().join("input.txt"), pattern(300_000, 3)).unwrap();
    let programs: [&[&str]; 3] = [
        &["cat", "input.txt"],
        &["dd", "if=input.txt", "of=out.bin", "bs=8192", "count=20", "status=none"],
        &["cp", "input.txt", "copy.txt"],
    ];
    for cmd in programs {
        let out = trace(dir.path(), &["-o", "n.trace"], cmd);
        assert!(out.status.success(), "{cmd:?}: {out:?}");
        let ours_text = fs::read_to_string(dir.path().join("n.trace")).unwrap();
        let st = Command::new("strace")
            .args(["-f", "-o", "s.trace"])
            .args(cmd)
            .current_dir(dir.path())
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        assert!(st.status.success());
        let theirs_text = fs::read_to_string(dir.path().join("s.trace")).unwrap();
        let ours_lines: Vec<&str> = ours_text.lines().collect();
        let theirs_lines: Vec<&str> = theirs_text.lines().collect();
        let marker = "openat(AT_FDCWD, \"input.txt\"";
        let ours = from_marker(&nvmmio_calls(&ours_text), &ours_lines, marker);
        let theirs = from_marker(&strace_calls(&theirs_text), &theirs_lines, marker);
        // Addresses (mmap) differ from run to run; compare those by name only.
        let norm = |v: Vec<(String, String)>| -> Vec<(String, String)> {
            v.into_iter().map(|(n, r)| if r.starts_with("0x") { (n, "ADDR".into()) } else { (n, r) }).collect()
        };
        assert_eq!(norm(ours), norm(theirs), "{cmd:?}\n--- nvmmio:\n{ours_text}\n--- strace:\n{theirs_text}");
    }
}

#[test]
fn arguments_are_decoded() {
    let dir = shm_dir();
    let script = r#"
import os
fd = os.open("data.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
os.pwrite(fd, b"hello\n", 100)
os.lseek(fd, 0, os.SEEK_END)
os.close(fd)
try:
    os.stat("missing-file")
except FileNotFoundError:
    pass
pid = os.fork()
if pid == 0:
    os.execv("/bin/true", ["true", "arg1"])
os.waitpid(pid, 0)
"#;
    fs::write(dir.path().join("t.py"), script).unwrap();
    let out = trace(dir.path(), &["-o", "t.trace", "-e", "file,data,process"], &["/usr/bin/python3", "t.py"]);
    assert!(out.status.success(), "{out:?}");
    let text = fs::read_to_string(dir.path().join("t.trace")).unwrap();
    for expected in [
        "openat(AT_FDCWD, \"data.bin\", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0640) = ",
        "pwrite64(",
        ", \"hello\\n\", 6, 100) = 6 <",
        ", 0, SEEK_END) = 106 <",
        "\"missing-file\", ",
        "= -1 ENOENT (No such file or directory) <",
        "clone(CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD",
        "execve(\"/bin/true\", [\"true\", \"arg1\"], ",
        "wait4(",
        "exit_group(0) = ?",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // Each line: "pid/tid name(...) = result <seconds>" (or = ? / unfinished for exits and execs).
    let re_ok = |l: &str| {
        let (ids, rest) = l.split_once(' ').unwrap();
        let (pid, tid) = ids.split_once('/').unwrap();
        pid.parse::<u32>().is_ok()
            && tid.parse::<u32>().is_ok()
            && (rest.contains(") = ") || rest.ends_with(" <unfinished ...>"))
    };
    assert!(text.lines().all(re_ok), "{text}");
    // The filter held: no memory or network calls.
    assert!(!text.contains(" mmap(") && !text.contains(" socket("), "{text}");
}

#[test]
fn summary_totals_match_the_lines() {
    let dir = shm_dir();
    let out =
        trace(dir.path(), &["-C", "-o", "both.trace"], &["sh", "-c", "ls / >/dev/null; cat /etc/hostname >/dev/null"]);
    assert!(out.status.success(), "{out:?}");
    let text = fs::read_to_string(dir.path().join("both.trace")).unwrap();
    let (lines, table) = text.split_at(text.find("% time").expect("summary table"));
    let mut counted: HashMap<String, u64> = HashMap::new();
    for l in lines.lines() {
        let rest = l.split_once(' ').unwrap().1;
        if rest.starts_with("<...") {
            continue;
        }
        *counted.entry(rest.split('(').next().unwrap().to_string()).or_default() += 1;
    }
    let mut table_total = 0;
    for row in table.lines().skip(2).filter(|l| !l.starts_with("---")) {
        let fields: Vec<&str> = row.split_whitespace().collect();
        let name = *fields.last().unwrap();
        let calls: u64 = fields[3].parse().unwrap();
        if name == "total" {
            table_total = calls;
            continue;
        }
        assert_eq!(counted.get(name).copied(), Some(calls), "{name}\n{text}");
    }
    assert_eq!(table_total, counted.values().sum::<u64>());
    assert!(counted.len() > 5);

    // -c alone prints only the table, on stderr.
    let out = trace(dir.path(), &["-c"], &["cat", "/etc/hostname"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("% time"), "{stderr}");
    assert!(stderr.lines().any(|l| l.ends_with(" read")), "{stderr}");
    assert!(!stderr.contains("openat("));
}

#[test]
fn one_file_per_process_with_ff() {
    let dir = shm_dir();
    let out = trace(dir.path(), &["-ff", "-o", "pp"], &["sh", "-c", "/bin/echo one; /bin/echo two"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"one\ntwo\n");
    let files: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pp."))
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        let pid = f.trim_start_matches("pp.");
        let text = fs::read_to_string(dir.path().join(f)).unwrap();
        assert!(!text.is_empty());
        assert!(text.lines().all(|l| l.starts_with(&format!("{pid}/"))), "{f}:\n{text}");
    }
    let echoes = files
        .iter()
        .filter(|f| fs::read_to_string(dir.path().join(f)).unwrap().contains("write(1, \"one\\n\", 4) = 4"))
        .count();
    assert_eq!(echoes, 1);
}

#[test]
fn threads_write_whole_lines() {
    let dir = shm_dir();
    let script = "import os, threading\n\
        def w():\n    fd = os.open('/dev/null', os.O_WRONLY)\n    [os.write(fd, b'x' * 50) for _ in range(2000)]\n    os.close(fd)\n\
        ts = [threading.Thread(target=w) for _ in range(4)]\n[t.start() for t in ts]\n[t.join() for t in ts]\n";
    fs::write(dir.path().join("t.py"), script).unwrap();
    let out = trace(dir.path(), &["-o", "th.trace", "-e", "write"], &["/usr/bin/python3", "t.py"]);
    assert!(out.status.success(), "{out:?}");
    let text = fs::read_to_string(dir.path().join("th.trace")).unwrap();
    let writes: Vec<&str> = text.lines().filter(|l| l.contains(", 50) = 50 <")).collect();
    assert_eq!(writes.len(), 8000);
    assert!(text.lines().all(|l| l.contains(" write(") && l.ends_with('>')), "a broken line");
    let tids: std::collections::HashSet<&str> = writes.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(tids.len(), 4, "{tids:?}");
}

#[test]
fn filters_by_class_and_name() {
    let dir = shm_dir();
    let out = trace(dir.path(), &["-o", "f.trace", "-e", "openat,close"], &["cat", "/etc/hostname"]);
    assert!(out.status.success());
    let text = fs::read_to_string(dir.path().join("f.trace")).unwrap();
    let names: std::collections::HashSet<String> = nvmmio_calls(&text).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["openat", "close"].map(String::from).into_iter().collect());

    let out = trace(dir.path(), &["-e", "bogus"], &["true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown system call or class 'bogus'"));
}

/// Every fcntl command is traced, on plain and managed files alike: untraced, the hook passes
/// all but those that make or change descriptors straight to the kernel, record locks included.
#[test]
fn fcntl_commands_are_traced() {
    let dir = shm_dir();
    let script = r#"
import fcntl, os
fd = os.open("lockme", os.O_RDWR | os.O_CREAT, 0o600)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
fcntl.fcntl(fd, fcntl.F_GETFD)
fcntl.lockf(fd, fcntl.LOCK_UN)
print(fd)
"#;
    let managed = dir.path().to_str().unwrap();
    for opts in [&["-o", "l.trace"][..], &["-o", "l.trace", "-e", "fcntl"], &["-o", "l.trace", "--dir", managed]] {
        let out = trace(dir.path(), opts, &["/usr/bin/python3", "-c", script]);
        assert!(out.status.success(), "{opts:?}: {out:?}");
        let fd = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let text = fs::read_to_string(dir.path().join("l.trace")).unwrap();
        for expected in [format!(" fcntl({fd}, F_SETLK, "), format!(" fcntl({fd}, F_GETFD, 0) = 1 <")] {
            assert!(text.contains(&expected), "{opts:?}: missing {expected:?} in:\n{text}");
        }
        assert!(text.contains(&format!(" fcntl({fd}, F_SETLKW, ")), "{opts:?}: no unlock in:\n{text}");
    }
}

#[test]
fn trace_goes_to_stderr_by_default_and_survives_redirection() {
    let dir = shm_dir();
    // The program closes its own stderr; the trace still reaches ours.
    let out = trace(dir.path(), &["-e", "openat"], &["sh", "-c", "exec 2>&-; cat /etc/hostname"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The file takes descriptor 2, which the program freed.
    assert!(stderr.contains("openat(AT_FDCWD, \"/etc/hostname\", O_RDONLY) = 2 <"), "{stderr}");
}

#[test]
fn programs_cannot_close_the_trace_descriptor() {
    let dir = shm_dir();
    // Python's subprocess closes every descriptor above 2 in the child (close_range).
    let script = "import os, subprocess\nos.closerange(3, 65536)\nsubprocess.run(['/bin/true'], close_fds=True)\nprint('done')\n";
    fs::write(dir.path().join("t.py"), script).unwrap();
    let out = trace(dir.path(), &["-o", "c.trace"], &["/usr/bin/python3", "t.py"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"done\n");
    let text = fs::read_to_string(dir.path().join("c.trace")).unwrap();
    // The last lines of the parent (after closing everything) are still there.
    assert!(text.contains("write(1, \"done"), "{text}");
    assert!(text.lines().last().unwrap().contains("exit_group(0) = ?"));
}
