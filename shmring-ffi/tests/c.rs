//! Builds the C test suite and the C examples against the real library, installed the way
//! a user installs it (libshmring.so.0 + libshmring.so + libshmring.a), and runs them:
//! with the static and with the shared library, both under AddressSanitizer and
//! UndefinedBehaviorSanitizer; the header also compiles as C++17.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const CFLAGS: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-g"];
const SANITIZE: &str = "-fsanitize=address,undefined";
const STATIC_LIBS: &[&str] = &["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s"];

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where this crate's `cdylib` and `staticlib` are. `cargo test` does not promise to have
/// produced them before integration tests run (it needs only the rlib), so they are built
/// here, once per test process, into a target directory of their own (the outer cargo
/// holds the lock on the main one).
fn target_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = manifest().join("../target/c-tests");
            let out = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--locked",
                    "-p",
                    "shmring-ffi",
                    "--lib",
                    "--target-dir",
                ])
                .arg(&target)
                .current_dir(manifest())
                .output()
                .expect("run cargo");
            assert!(
                out.status.success(),
                "building the C library failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            target.join("debug")
        })
        .clone()
}

/// A prefix laid out as `install.sh` lays it out.
fn install(prefix: &Path) {
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let target = target_dir();
    std::fs::copy(
        target.join("libshmring_ffi.so"),
        lib.join("libshmring.so.0"),
    )
    .unwrap();
    let _ = std::fs::remove_file(lib.join("libshmring.so"));
    std::os::unix::fs::symlink("libshmring.so.0", lib.join("libshmring.so")).unwrap();
    std::fs::copy(target.join("libshmring_ffi.a"), lib.join("libshmring.a")).unwrap();
}

fn gcc(args: &[&str]) {
    let out = Command::new("gcc").args(args).output().expect("gcc");
    assert!(
        out.status.success(),
        "gcc {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(exe: &Path, args: &[&str], lib: &Path) -> String {
    let out = Command::new(exe)
        .args(args)
        .env("LD_LIBRARY_PATH", lib)
        .env("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed: {}\n{stdout}\n{}",
        exe.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// How a program links the library.
#[derive(Clone, Copy)]
enum Link {
    Shared,
    Static,
}

/// Compiles `src` with the strict flags and sanitizers against the library installed under
/// `lib`, returning the executable.
fn build_c(src: &Path, exe: &Path, lib: &Path, link: Link) -> PathBuf {
    let include = format!("-I{}", manifest().join("../include").display());
    let libdir = format!("-L{}", lib.display());
    let rpath = format!("-Wl,-rpath,{}", lib.display());
    let archive = lib.join("libshmring.a");
    let mut args: Vec<&str> = CFLAGS.to_vec();
    args.extend([
        SANITIZE,
        &include,
        src.to_str().unwrap(),
        "-o",
        exe.to_str().unwrap(),
    ]);
    match link {
        Link::Shared => args.extend([libdir.as_str(), &rpath, "-lshmring"]),
        Link::Static => {
            args.push(archive.to_str().unwrap());
            args.extend(STATIC_LIBS);
        }
    }
    gcc(&args);
    exe.to_path_buf()
}

#[test]
fn c_suite_static_and_shared_under_sanitizers() {
    let dir = std::env::temp_dir().join(format!("shmring-ctest-{}", std::process::id()));
    install(&dir);
    let lib = dir.join("lib");
    let src = manifest().join("tests/c/test_shmring.c");
    for (link, exe) in [(Link::Shared, "test_shared"), (Link::Static, "test_static")] {
        let exe = build_c(&src, &dir.join(exe), &lib, link);
        let out = run(&exe, &[], &lib);
        assert!(out.contains(", 0 failed"), "{out}");
        println!("{}", out.trim());
    }

    // The header as C++17.
    let include = format!("-I{}", manifest().join("../include").display());
    let out = Command::new("g++")
        .args([
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
            "-x",
            "c++",
            &include,
        ])
        .arg(manifest().join("../include/shmring.h"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn c_examples_build_and_exchange_messages_as_two_processes() {
    let dir = std::env::temp_dir().join(format!("shmring-cexamples-{}", std::process::id()));
    install(&dir);
    let lib = dir.join("lib");
    for example in ["producer", "consumer", "zero_copy"] {
        let src = manifest().join(format!("examples/{example}.c"));
        build_c(&src, &dir.join(example), &lib, Link::Shared);
    }
    let name = format!("/shmring-cexample-{}", std::process::id());
    let producer = run(&dir.join("producer"), &[&name, "1000"], &lib);
    assert!(producer.contains("sent 1000"), "{producer}");
    let consumer = run(&dir.join("consumer"), &[&name], &lib);
    assert!(consumer.contains("received 1000 messages"), "{consumer}");
    let zc = run(&dir.join("zero_copy"), &[&format!("{name}-zc")], &lib);
    assert!(zc.contains("zero-copy round trip ok"), "{zc}");
    assert!(
        !Path::new(&format!("/dev/shm{name}")).exists(),
        "consumer unlinks"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
