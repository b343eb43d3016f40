//! Nothing but a home for `translate.rs`, the benchmark that compiles the seed translator
//! natively beside the host (`cargo bench -p benches --bench translate`).
