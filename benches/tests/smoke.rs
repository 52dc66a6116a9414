//! The benchmark runs end to end (a few transports, quick mode) and reports what it should:
//! every requested row, ratios against the floor and memcpy, valid JSON with the documented
//! metric names. Figures are not judged here: timing belongs to the benchmark itself.

use std::process::Command;

#[test]
fn quick_run_reports_every_requested_figure() {
    let dir = std::env::temp_dir().join(format!("shmring-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, svg) = (dir.join("r.json"), dir.join("r.svg"));
    let out = Command::new(env!("CARGO_BIN_EXE_shmring-bench"))
        .args([
            "--quick",
            "--transports",
            "floor-spin,shmring-spsc-spin,shmring-spsc-futex,shmring-mpmc-futex,pipe,memcpy",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "| floor-spin | busy | 8 B |",
        "| shmring-spsc-spin | busy | 64 B |",
        "| shmring-spsc-futex | asleep | 1024 B |",
        "| shmring-mpmc-futex | asleep | 8 B |",
        "| shmring-mpmc-futex | copy | 64 B |",
        "| pipe | kernel | 8 B |",
        "| shmring-spsc-spin | batch32 | 65536 B |",
        "| shmring-spsc-spin | zero-copy | 8 B |",
        "| memcpy | copy | 1024 B |",
    ] {
        assert!(stdout.contains(row), "missing row {row}:\n{stdout}");
    }
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let records = doc["records"].as_array().unwrap();
    for metric in [
        "rtt_p50_ns",
        "rtt_p99_ns",
        "rtt_p50_over_floor",
        "msgs_per_s",
        "bytes_per_s",
        "bytes_per_s_over_memcpy",
        "syscalls_per_msg",
    ] {
        assert!(
            records
                .iter()
                .any(|r| r["metric"] == metric && r["value"].as_f64().unwrap() >= 0.0),
            "no {metric} record"
        );
    }
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.contains("<svg") && plot.contains("polyline"),
        "plot has no lines"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // Nothing left behind in /dev/shm.
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("shmring-bench"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
