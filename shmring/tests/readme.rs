//! The README's first example works as written: its two programs are
//! `examples/quotes_producer.rs` and `examples/quotes_consumer.rs`; this test checks the
//! README shows exactly their code, then runs them as two processes.

use std::path::PathBuf;
use std::process::Command;

fn code_of(example: &str) -> String {
    let path = format!("{}/examples/{example}.rs", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(path).unwrap();
    // Everything after the leading doc comment.
    source
        .lines()
        .skip_while(|line| line.starts_with("//!") || line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn binary(example: &str) -> PathBuf {
    // Tests run from target[/<triple>]/<profile>/deps; examples are built next to deps.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples").join(example);
    if !path.exists() {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", "shmring", "--example", example]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        // A `--target` build (e.g. reliability/asan.sh) puts its profiles under the triple.
        let above = profile_dir.parent().unwrap();
        if let Some(triple) = above.file_name().and_then(|n| n.to_str()) {
            if triple.matches('-').count() >= 2 && !triple.starts_with("target") {
                build.args(["--target", triple]);
            }
        }
        assert!(build.status().unwrap().success());
    }
    path
}

#[test]
fn readme_shows_the_example_programs_verbatim() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    for example in ["quotes_producer", "quotes_consumer"] {
        let code = code_of(example);
        assert!(
            readme.contains(&code),
            "README.md no longer shows examples/{example}.rs as written"
        );
    }
}

#[test]
fn readme_example_runs_as_two_processes() {
    // The example uses the fixed name /quotes; skip rather than disturb a real one.
    if std::path::Path::new("/dev/shm/quotes").exists() {
        eprintln!("skipped: /dev/shm/quotes exists on this machine");
        return;
    }
    let producer = Command::new(binary("quotes_producer")).output().unwrap();
    let consumer = Command::new(binary("quotes_consumer")).output();
    let _ = shmring::spsc::unlink("/quotes");
    assert!(producer.status.success(), "{producer:?}");
    let consumer = consumer.unwrap();
    assert!(consumer.status.success(), "{consumer:?}");
    let expected: String = (0..10).map(|i| format!("quote {i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&consumer.stdout), expected);
    assert!(
        !std::path::Path::new("/dev/shm/quotes").exists(),
        "consumer unlinks"
    );
}
