//! In-process per-operation cost (criterion); filled below.
fn main() {}
