//! `include/shmring.h` is exactly what cbindgen generates from the sources (and its version
//! macros match the crate's version). `SHMRING_BLESS=1` rewrites it.

#[test]
fn header_is_generated_and_up_to_date() {
    let crate_dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(format!("{crate_dir}/cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = format!("{crate_dir}/../include/shmring.h");
    if std::env::var_os("SHMRING_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/shmring.h is stale: run SHMRING_BLESS=1 cargo test -p shmring-ffi --test header"
    );
    let version = format!(
        "#define SHMRING_ABI_VERSION_MAJOR {}\n#define SHMRING_ABI_VERSION_MINOR {}\n#define SHMRING_ABI_VERSION_PATCH {}",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH")
    );
    assert!(
        committed.contains(&version),
        "header version macros differ from Cargo's {}",
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn rust_abi_constants_match_the_crate_version() {
    assert_eq!(
        (
            shmring_ffi::SHMRING_ABI_VERSION_MAJOR,
            shmring_ffi::SHMRING_ABI_VERSION_MINOR,
            shmring_ffi::SHMRING_ABI_VERSION_PATCH
        ),
        (
            env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap(),
            env!("CARGO_PKG_VERSION_MINOR").parse().unwrap(),
            env!("CARGO_PKG_VERSION_PATCH").parse().unwrap()
        )
    );
    assert_eq!(
        shmring_ffi::shmring_abi_version(),
        shmring_ffi::SHMRING_ABI_VERSION
    );
}
