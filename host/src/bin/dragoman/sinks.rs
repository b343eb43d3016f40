//! The downstreams of a running host: `dragoman breakers` (every circuit breaker, and an
//! operator's hand on one) and `dragoman sinks retry` (the keys a sink holds in backoff,
//! released now).

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::cli::ServerArgs;
use crate::client::segment;

#[derive(Debug, Subcommand)]
pub(crate) enum BreakersCommand {
    /// Refuse every call to the sink or vendor until reset.
    ForceOpen {
        /// The sink or vendor.
        sink: String,
    },
    /// Let every call through, uncounted, until reset.
    Disable {
        /// The sink or vendor.
        sink: String,
    },
    /// Closed again, with an empty window.
    Reset {
        /// The sink or vendor.
        sink: String,
    },
}

/// The sink commands.
#[derive(Debug, Subcommand)]
pub(crate) enum SinksCommand {
    /// Deliver now what a sink holds in backoff (after a failure or its `Retry-After`),
    /// attempts and retry budget as they were; recorded in the audit stream `sink:NAME`.
    Retry {
        /// The sink.
        sink: String,
        /// Only this partition key.
        #[arg(long)]
        partition_key: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub(crate) fn breakers(command: Option<&BreakersCommand>, server: &ServerArgs) -> Result<ExitCode> {
    let (method, path) = match command {
        None => ("GET", "/v1/breakers".to_owned()),
        Some(BreakersCommand::ForceOpen { sink }) => (
            "POST",
            format!("/v1/breakers/{}?action=force-open", segment(sink)),
        ),
        Some(BreakersCommand::Disable { sink }) => (
            "POST",
            format!("/v1/breakers/{}?action=disable", segment(sink)),
        ),
        Some(BreakersCommand::Reset { sink }) => (
            "POST",
            format!("/v1/breakers/{}?action=reset", segment(sink)),
        ),
    };
    crate::client::call(&server.server, server.token.as_deref(), method, &path)
}

pub(crate) fn run(command: SinksCommand) -> Result<ExitCode> {
    let SinksCommand::Retry {
        sink,
        partition_key,
        server,
    } = command;
    let mut path = format!("/v1/sinks/{}/retry", segment(&sink));
    if let Some(key) = &partition_key {
        path += &format!("?partition_key={}", segment(key));
    }
    crate::client::call(&server.server, server.token.as_deref(), "POST", &path)
}
