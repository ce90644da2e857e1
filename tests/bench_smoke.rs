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
    assert_eq!(forward.len(), 6, "{text}");
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
    let (text, rows) = run_script("crash-test", &["--points", "12"]);
    let kinds: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(kinds, ["writer", "sqlite-delete", "sqlite-wal", "leveldb", "rocksdb", "threads"], "{text}");
    for r in rows {
        assert_eq!(r[1], "2", "{r:?}");
        assert_eq!(r[4], "0", "violations in {r:?}");
    }
}

/// `scripts/bench --quick`: every workload group runs on both sides, and the table, the CSV
/// and the SVG chart agree on what was measured (a smoke test: no timing is asserted).
#[test]
fn bench_report_quick_run_writes_table_csv_json_and_chart() {
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().to_str().unwrap();
    let (text, rows) = run_script("bench", &["--quick", "--rounds", "1", "--out", out_dir]);
    assert!(text.contains("nvmmio report on /dev/shm (tmpfs;"), "the file system is named in\n{text}");
    let groups = ["fio", "rocksdb", "leveldb", "sqlite", "scaling", "overhead", "limits"];
    for g in groups {
        assert!(rows.iter().any(|r| r[0].starts_with(&format!("{g}:"))), "no {g} row in\n{text}");
    }
    for r in &rows {
        let ratio: f64 = r[4].trim_end_matches('x').parse().unwrap_or_else(|_| panic!("ratio in {r:?}"));
        assert!(ratio > 0.0, "{r:?}");
    }
    let csv = std::fs::read_to_string(out.path().join("report.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[header.len() - 2..], ["ratio", "rounds"], "{csv}");
    // Only the workload names may hold commas (quoted): the ratio is second from the end.
    let csv_rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(csv_rows.len(), rows.len(), "{csv}");
    for (r, table_row) in csv_rows.iter().zip(&rows) {
        let ratio: f64 = r[r.len() - 2].parse().unwrap_or_else(|_| panic!("{r:?}"));
        let shown: f64 = table_row[4].trim_end_matches('x').parse().unwrap();
        assert!((ratio - shown).abs() < 0.006, "CSV {ratio} vs table {shown}");
    }
    let json = std::fs::read_to_string(out.path().join("report.json")).unwrap();
    assert!(json.contains("\"results\"") && json.contains("\"commit\""), "{json}");
    let svg = std::fs::read_to_string(out.path().join("report.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<rect").count(), rows.len(), "one bar per workload");
}

/// `scripts/bench-engine --quick` with two threads: a row per workload asked for, each with
/// the kernel's IOPS and nvmmio's with its ratio.
#[test]
fn bench_engine_quick_run_with_threads_prints_its_table() {
    let (text, rows) = run_script(
        "bench-engine",
        &["--quick", "--rounds", "1", "--threads", "2", "--only", "64k random write,4k random read"],
    );
    assert!(text.contains("file 16M, 2 threads"), "{text}");
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["4k random read", "64k random write"], "{text}");
    for r in &rows {
        let kernel: f64 = r[1].parse().unwrap_or_else(|_| panic!("kernel IOPS in {r:?}"));
        let cells: Vec<&str> = r[2].split_whitespace().collect();
        let nvmmio: f64 = cells[0].parse().unwrap_or_else(|_| panic!("nvmmio IOPS in {r:?}"));
        assert!(kernel > 0.0 && nvmmio > 0.0 && cells[1].ends_with('x'), "{r:?}");
    }
}
