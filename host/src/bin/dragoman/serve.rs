//! `dragoman serve`: the host on its own runtime, until SIGTERM or ctrl-c.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use dragoman::Host;
use dragoman::config::Config;

/// `dragoman serve --config FILE`.
pub(crate) fn run(config: &Path) -> Result<ExitCode> {
    let config = Config::from_file(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let address = listener.local_addr()?;
        let host = Host::builder().config(config).build()?;
        tracing::info!(%address, "listening");
        // The address on stdout, for scripts that start the host on port 0.
        println!("listening on http://{address}");
        host.serve(listener, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `dragoman config check FILE`: the config as `serve` reads it, and each route's plugin
/// file present; a summary on stdout.
pub(crate) fn check(file: &Path) -> Result<ExitCode> {
    let config = Config::from_file(file)?;
    for (name, route) in &config.routes {
        if !route.plugin.is_file() {
            anyhow::bail!(
                "{}: routes.{name}.plugin: {} is not a file",
                file.display(),
                route.plugin.display()
            );
        }
    }
    println!(
        "{}: ok ({} routes, {} sinks, {} vendors, store {})",
        file.display(),
        config.routes.len(),
        config.sinks.len(),
        config.vendors.len(),
        match config.store {
            dragoman::config::StoreConfig::Sled => "sled",
            dragoman::config::StoreConfig::Postgres { .. } => "postgres",
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
