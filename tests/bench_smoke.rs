//! The benchmark and crash-test scripts run and print tables that parse (smoke tests, not timing
//! or full crash runs).

use std::process::Command;

/// Runs `scripts/NAME ARGS`, asserts success, and returns its output with the cells of every
/// table row (header rows left out).
fn run_script(name: &str, args: &[&str]) -> (String, Vec<Vec<String>>) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(format!("{root}/scripts/{name}")).args(args).output().expect("run the script");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let rows = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| workload"))
        .map(|l| l.split('|').map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect())
        .collect();
    (text, rows)
}

#[test]
fn bench_forward_quick_run_prints_both_tables() {
    let (text, rows) = run_script("bench-forward", &["--quick", "--rounds", "1"]);
    let forward: Vec<_> = rows.iter().filter(|r| r.len() == 4).collect();
    let trace: Vec<_> = rows.iter().filter(|r| r.len() == 6).collect();
    assert_eq!(forward.len(), 5, "{text}");
    assert_eq!(trace.len(), 3, "{text}");
    for r in forward {
        let ratio: f64 = r[3].parse().unwrap_or_else(|_| panic!("ratio in {r:?}"));
        assert!(ratio > 0.0);
    }
    for r in trace {
        let lines: u64 = r[1].parse().unwrap();
        assert!(lines > 0, "{r:?}");
        assert!(r[5].ends_with('x'), "{r:?}");
    }
}

#[test]
fn crash_test_script_runs_and_reports_no_violation() {
    let (text, rows) = run_script("crash-test", &["--points", "6"]);
    assert_eq!(rows.len(), 3, "{text}");
    for r in rows {
        assert_eq!(r[1], "2", "{r:?}");
        assert_eq!(r[4], "0", "violations in {r:?}");
    }
}
