#!/usr/bin/env bash
# Installs the C library under PREFIX (default /usr/local):
#   PREFIX/lib/libshmring.so.0 (SONAME libshmring.so.0), libshmring.so -> libshmring.so.0,
#   PREFIX/lib/libshmring.a, PREFIX/include/shmring.h, PREFIX/lib/pkgconfig/shmring.pc
# so that `cc app.c $(pkg-config --cflags --libs shmring)` works.
set -euo pipefail
prefix="${1:-/usr/local}"
cd "$(dirname "$0")/.."
cargo build --release --locked -p shmring-ffi --quiet
target="${CARGO_TARGET_DIR:-target}/release"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "$target/libshmring_ffi.so" "$prefix/lib/libshmring.so.0"
ln -sf libshmring.so.0 "$prefix/lib/libshmring.so"
install -m 0644 "$target/libshmring_ffi.a" "$prefix/lib/libshmring.a"
install -m 0644 include/shmring.h "$prefix/include/shmring.h"
cat > "$prefix/lib/pkgconfig/shmring.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: shmring
Description: Lock-free message rings in POSIX shared memory
Version: $version
Libs: -L\${libdir} -lshmring
Libs.private: -lpthread -ldl -lm -lrt -lgcc_s
Cflags: -I\${includedir}
PC
echo "installed shmring $version under $prefix"
