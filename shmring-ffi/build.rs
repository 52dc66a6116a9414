//! Gives the shared library the SONAME it is installed under (`libshmring.so.<major>`).
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libshmring.so.0");
    println!("cargo:rerun-if-changed=build.rs");
}
