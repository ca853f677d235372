//! `vcluster`: the command line (see `lib.rs`).

use clap::Parser;

/// mimalloc: glibc's allocator spent ~15% of the API's CPU in malloc/free and blocked on its
/// arena locks under load (measured with `perf`, API benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = vcluster_cli::Cli::parse();
    vcluster_cli::init_logging();
    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("no other crypto provider is installed");
    vcluster_cli::run(cli)
}
