//! loom models of shmring's protocols. The models live in `tests/` and only build with
//! `RUSTFLAGS="--cfg shmring_loom"`; `run.sh` runs them with stated bounds.
