//! The `flotilla` binary: parses the command line and hands it to [`flotilla::cli`].

use clap::Parser as _;

/// mimalloc instead of glibc malloc: under load the node's threads (gRPC workers, store
/// loop, apply loop) spent about a tenth of their time in glibc's allocator, much of it
/// in `malloc_consolidate` and contended arena locks; see issue 5's note for the A/B.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,flotilla=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a terminal: log files and pipes get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = flotilla::cli::Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let flotilla::cli::Command::Server(args) = &cli.command
        && let Some(n) = args.worker_threads
    {
        builder.worker_threads(n);
    }
    // A node's runtime runs without tokio's LIFO slot (`.cargo/config.toml` builds with
    // `--cfg tokio_unstable`, which the setting needs). Side by side with the default
    // build on 3 loopback nodes, 256 clients: reads 1.10-1.16x, writes 1.06-1.08x, and
    // 0.84-0.95x the server CPU per operation (issue 5's note has the runs). Client
    // commands keep the default, so `flotilla bench` drives etcd and Flotilla alike.
    #[cfg(tokio_unstable)]
    if matches!(
        cli.command,
        flotilla::cli::Command::Server(_) | flotilla::cli::Command::Dev(_)
    ) {
        builder.disable_lifo_slot();
    }
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("flotilla: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(flotilla::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// The node runtime's scheduling setting needs `--cfg tokio_unstable`, which
    /// `.cargo/config.toml` sets for the host. A `RUSTFLAGS` variable in the environment
    /// replaces those flags, and the nodes would quietly run tokio's default scheduling.
    #[test]
    #[allow(
        clippy::assertions_on_constants,
        reason = "it checks the build's configuration, which is a constant"
    )]
    fn the_host_is_built_with_tokio_unstable() {
        assert!(
            cfg!(tokio_unstable),
            "built without --cfg tokio_unstable: a RUSTFLAGS variable replaces the flags \
             in .cargo/config.toml; add `--cfg tokio_unstable` to it"
        );
    }
}
