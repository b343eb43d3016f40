//! `dragoman entity show TYPE ID [--at T] [--time committed|occurred]`: an entity's state at
//! an instant from a running host, printed as a timeline a person reads at 2 AM: each event
//! with when it was committed and happened, what the fold made of it, and where it came from.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::Value;

/// The entity commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum EntityCommand {
    /// Print an entity's state at an instant (by default now), with the events that made it,
    /// each with its vendor message, route and plugin version.
    Show {
        /// The entity type, for example `order`.
        entity_type: String,
        /// The entity's id, for example `SEED-2026-000417`.
        id: String,
        /// The instant, RFC 3339 (`2026-11-30T14:02:00Z`).
        #[arg(long)]
        at: Option<String>,
        /// Which clock `--at` is on: `committed` (when the host committed the events) or
        /// `occurred` (when they happened, by the vendors' word).
        #[arg(long, value_enum, default_value = "committed")]
        time: Clock,
        /// Print the answer as JSON instead.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: crate::cli::ServerArgs,
    },
}

/// The clock of `--at`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Clock {
    /// When the host committed the events.
    Committed,
    /// When they happened.
    Occurred,
}

pub(crate) fn run(command: EntityCommand) -> Result<ExitCode> {
    let EntityCommand::Show {
        entity_type,
        id,
        at,
        time,
        json,
        server,
    } = command;
    let mut path = format!(
        "/v1/entities/{}/{}?time={}",
        crate::client::segment(&entity_type),
        crate::client::segment(&id),
        match time {
            Clock::Committed => "committed",
            Clock::Occurred => "occurred",
        }
    );
    if let Some(at) = &at {
        // The one character of an RFC 3339 instant that a query does not carry as itself.
        path += &format!("&at={}", at.replace('+', "%2B"));
    }
    let (status, _, body) = crate::client::request(
        &server.server,
        server.token.as_deref(),
        "GET",
        &path,
        &[],
        Vec::new(),
    )?;
    if json || status >= 400 {
        return crate::client::print(status, &body);
    }
    let answer: Value = serde_json::from_slice(&body)?;
    print!("{}", timeline(&answer));
    Ok(ExitCode::SUCCESS)
}

/// The answer of `GET /v1/entities/{type}/{id}` as text.
fn timeline(answer: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let clock = match answer["time"].as_str() {
        Some("occurred") => "event time",
        _ => "commit time",
    };
    let projector = &answer["projector"];
    let mut out = format!(
        "{}/{} at {} ({clock}), folded by {}@{}\n",
        text(&answer["entity"]["type"]),
        text(&answer["entity"]["id"]),
        answer["at"].as_str().unwrap_or("now"),
        text(&projector["name"]),
        text(&projector["version"]),
    );
    if let Some(status) = answer["state"]["status"].as_str() {
        out += &format!("status: {status}\n");
    }
    let events = answer["events"].as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        out += "no event counts at this instant\n";
    }
    for event in &events {
        let outcome = match &event["outcome"] {
            Value::String(s) => s.clone(),
            refused => format!(
                "REFUSED {}: {}",
                text(&refused["refused"]["code"]),
                text(&refused["refused"]["message"])
            ),
        };
        let provenance = &event["provenance"];
        out += &format!(
            "{:>4}  committed {}  occurred {}  {}  {outcome}\n      from message {} on route {}, translated by {}\n",
            event["seq"],
            text(&event["committed_at"]),
            text(&event["occurred_at"]),
            text(&event["type"]),
            text(&provenance["message_id"]),
            text(&provenance["route"]),
            text(&provenance["plugin"]),
        );
    }
    out += "state:\n";
    out += &serde_json::to_string_pretty(&answer["state"]).unwrap_or_default();
    out += "\n";
    out
}
