//! The `dragoman` command: parse the arguments, run the command, print one clear line on
//! error. The only place that uses `anyhow`.

mod cli;
mod client;
mod dev;
mod entity;
mod folder;
mod local;
#[cfg(feature = "otel")]
mod otel;
mod plugins;
mod scaffold;
mod serve;
mod sinks;
mod watch;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_sigpipe();
    let args = match cli::Args::try_parse() {
        Ok(args) => args,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayVersion
                    | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            let _ = e.print();
            return if e.exit_code() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
        Err(e) => {
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("dragoman: {first} (see `dragoman --help`)");
            return ExitCode::from(2);
        }
    };
    // Held to the end: the last spans are exported when it goes.
    let _traces = match init_tracing(args.log_format, args.serves()) {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("dragoman: {e:#}");
            return ExitCode::from(2);
        }
    };
    run(args)
}

fn run(args: cli::Args) -> ExitCode {
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            let message = format!("{e:#}");
            eprintln!(
                "dragoman: {}",
                message.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            if e.downcast_ref::<client::Unreachable>().is_some() {
                ExitCode::from(3)
            } else {
                ExitCode::from(2)
            }
        }
    }
}

/// Log lines on stderr, filtered by `DRAGOMAN_LOG` (by default, `serve` logs its own
/// progress, the one-shot commands only errors). In JSON, each line is one object: the
/// event's fields, flattened, and the fields of the spans it is in (the message id, the route
/// and the plugin's version while a message is handled). With the `otel` feature, the host's
/// spans go to OpenTelemetry too when the environment names an OTLP endpoint (`otel.rs`),
/// whatever `DRAGOMAN_LOG` says; the returned guard exports the last of them.
fn init_tracing(format: cli::LogFormat, serves: bool) -> anyhow::Result<Option<Traces>> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _, Registry};
    let filter = EnvFilter::try_from_env("DRAGOMAN_LOG")
        .unwrap_or_else(|_| EnvFilter::new(if serves { "info" } else { "error" }));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        cli::LogFormat::Text => fmt.with_target(false).boxed(),
        cli::LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .boxed(),
    };
    #[cfg_attr(not(feature = "otel"), expect(unused_mut, reason = "no second layer"))]
    let mut layers: Vec<Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync>> =
        vec![fmt.with_filter(filter).boxed()];
    #[cfg(feature = "otel")]
    let traces = match otel::layer()? {
        Some((layer, traces)) => {
            let spans = tracing_subscriber::filter::Targets::new()
                .with_target("dragoman", tracing::Level::INFO);
            layers.push(layer.with_filter(spans).boxed());
            Some(traces)
        }
        None => None,
    };
    #[cfg(not(feature = "otel"))]
    let traces = None;
    tracing_subscriber::registry().with(layers).init();
    Ok(traces)
}

/// What keeps the trace exporter until exit (nothing without the `otel` feature).
#[cfg(feature = "otel")]
type Traces = otel::Traces;
#[cfg(not(feature = "otel"))]
struct Traces;

/// Rust ignores SIGPIPE, so writing to a closed pipe (`dragoman … | head -1`) would panic;
/// restore the default, which ends the process quietly as other command-line tools do.
#[expect(unsafe_code, reason = "one libc call, before any other thread exists")]
fn restore_sigpipe() {
    // SAFETY: setting a signal disposition to its default has no preconditions; no other
    // thread is running yet.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
