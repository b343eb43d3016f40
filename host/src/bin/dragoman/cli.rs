//! The subcommands. Each returns the process exit code: 0 for success, 1 when the thing
//! checked failed (a fixture, a translation), and an error (exit 2) for bad input.
//!
//! The arguments of every subcommand, with their help, and one dispatch arm each; the plugin
//! commands are in `plugins.rs`, the sink and breaker commands in `sinks.rs`, the entity
//! commands in `entity.rs`, and the work lives in the modules the arms call (`local`,
//! `client`, `dev`, `scaffold`, `serve`, `watch`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::json;

/// Runs vendor translators as sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(
    name = "dragoman",
    version,
    after_help = "Write a translator in Rust, Python or JavaScript:\n  \
                  dragoman plugin new --lang rust|python|js NAME   (also rs, py, javascript)\n  \
                  dragoman plugin dev NAME                         (rebuild and test on every save)"
)]
pub(crate) struct Args {
    /// How log lines are written on stderr: `text` for people, `json` for a log pipeline
    /// (one object per line).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "DRAGOMAN_LOG_FORMAT",
        default_value = "text"
    )]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

impl Args {
    /// Whether the command is `serve`.
    pub(crate) fn serves(&self) -> bool {
        matches!(self.command, Command::Serve { .. })
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host: the HTTP API and the outbox relay, until SIGTERM or ctrl-c.
    Serve {
        /// The configuration file.
        #[arg(long, value_name = "FILE.toml")]
        config: PathBuf,
    },
    /// Work with translator plugins.
    #[command(subcommand)]
    Plugin(crate::plugins::PluginCommand),
    /// The dead letter channel of a running host.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The domain's entities: an entity's state at an instant, from a running host.
    #[command(subcommand)]
    Entity(crate::entity::EntityCommand),
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Receive webhook deliveries and print each event on a line: a sink to watch.
    Watch {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: std::net::SocketAddr,
    },
    /// Print a running host's routes, plugins and sinks, or draw them: vendors, translators
    /// with their active versions, the domain's entity types, sinks.
    Topology {
        /// `json`, or a picture: `mermaid` or `dot`.
        #[arg(long, value_enum, default_value = "json")]
        format: TopologyFormat,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Send a domain command (JSON `{"type", "subject", "data"}` on stdin) to a route's
    /// vendor and print the answer: the events its plugin made of the vendor's answer.
    #[command(name = "command")]
    Outbound {
        /// The route.
        route: String,
        /// The command's idempotency key (by default, the hash of the command): the same
        /// key gets the same answer, and the vendor sees it as `Idempotency-Key`.
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Every circuit breaker (one per sink and per vendor): list them (no subcommand), or
    /// set one.
    Breakers {
        #[command(subcommand)]
        command: Option<crate::sinks::BreakersCommand>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The sinks of a running host.
    #[command(subcommand)]
    Sinks(crate::sinks::SinksCommand),
    /// The configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Move audit history older than a hot retention into an archive directory: one segment
    /// file (and its digest) per run, an anchor left in each stream it cut.
    Archive {
        /// The sled store in this directory (the host must not be running).
        #[arg(long, value_name = "DIR", conflicts_with = "database_url")]
        data_dir: Option<PathBuf>,
        /// The PostgreSQL store at this URL (hosts may be running).
        #[arg(long, value_name = "URL", env = "DRAGOMAN_DATABASE_URL")]
        database_url: Option<String>,
        /// The archive directory (made if missing).
        #[arg(long, value_name = "DIR")]
        archive: PathBuf,
        /// Events recorded more than this many seconds ago move, on every route.
        #[arg(long, value_name = "SECS")]
        older_than_secs: u64,
    },
    /// Copy a sled store into fresh files and put them in its place, giving the space that
    /// archival and retention freed back to the file system (sled's files never shrink by
    /// themselves). Needs free space for the copy; the host must not be running.
    Compact {
        /// The sled store in this directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Signed checkpoints of the chains' heads.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Print the shell completion script: `dragoman completions bash > /etc/bash_completion.d/dragoman`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum CheckpointCommand {
    /// Make an Ed25519 key pair for `[checkpoints] key`: prints the signer key (secret: put it
    /// where the config's `key` reads it) on the first line, and the verifier key (for
    /// `audit verify --checkpoint-key`) on the second.
    Keygen {
        /// The key's name, the checkpoints' origin (no spaces or `+`), e.g.
        /// `dragoman.example.com/orders`.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file as `serve` would read it, without starting: secrets and
    /// plugin files are read, nothing listens and no store is opened. Exit 0 when it is
    /// good; otherwise the error, with the key and its line, and exit 2.
    Check {
        /// The configuration file.
        #[arg(value_name = "FILE.toml")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List the entries.
    List,
    /// Show one entry with its original message.
    Show {
        /// The entry's id.
        id: String,
    },
    /// Re-run an entry through the route's current plugin (or re-queue its event); or,
    /// with `--route`, every translation entry of the route that the filter matches, with a
    /// progress bar. `--version` pins the plugin version it goes through.
    Replay {
        /// The entry's id.
        #[arg(required_unless_present = "route", conflicts_with = "route")]
        id: Option<String>,
        /// Replay the route's entries that match the filter.
        #[arg(long)]
        route: Option<String>,
        /// Only entries with this code.
        #[arg(long, requires = "route")]
        code: Option<String>,
        /// Only entries the plugin with this version (or sha256 prefix) failed.
        #[arg(long, requires = "route")]
        plugin: Option<String>,
        /// Only entries made at or after this RFC 3339 instant.
        #[arg(long, requires = "route")]
        since: Option<String>,
        /// Only entries made before this RFC 3339 instant.
        #[arg(long, requires = "route")]
        until: Option<String>,
        /// Through this kept version (or sha256) of the route's plugin [default: the active one].
        #[arg(long)]
        version: Option<String>,
        /// Say what each would become, store nothing.
        #[arg(long, requires = "route")]
        dry_run: bool,
    },
    /// Discard an entry for good (recorded in the audit trail).
    Discard {
        /// The entry's id.
        id: String,
        /// Why, recorded with the discard in the message's audit trail.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk every audit stream and report any altered, missing or reordered event; exits 1
    /// when there is one.
    Verify {
        /// Read the store in this directory (the host must not be running).
        #[arg(long, value_name = "DIR", conflicts_with_all = ["server", "database_url"])]
        data_dir: Option<PathBuf>,
        /// Read the PostgreSQL store at this URL (hosts may be running).
        #[arg(
            long,
            value_name = "URL",
            env = "DRAGOMAN_DATABASE_URL",
            conflicts_with = "server"
        )]
        database_url: Option<String>,
        /// Ask a running host instead.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// The admin token of the running host.
        #[arg(long, env = "DRAGOMAN_TOKEN")]
        token: Option<String>,
        /// Also check the heads these signed checkpoints name (a file of one or more notes,
        /// as published): a chain rewritten with every hash recomputed fails here. Reads the
        /// store itself: with --data-dir or --database-url.
        #[arg(
            long,
            value_name = "FILE",
            requires = "checkpoint_key",
            conflicts_with = "server"
        )]
        checkpoints: Option<PathBuf>,
        /// The verifier key of the checkpoints, `NAME+KEYID+BASE64` (`dragoman checkpoint
        /// keygen` prints it).
        #[arg(long, value_name = "KEY", env = "DRAGOMAN_CHECKPOINT_KEY")]
        checkpoint_key: Option<String>,
        /// Also verify the archive in this directory: every segment's digest, its streams,
        /// and that each hot stream's anchor stands where its archived events end. Reads the
        /// store itself: with --data-dir or --database-url.
        #[arg(long, value_name = "DIR", conflicts_with = "server")]
        archive: Option<PathBuf>,
    },
    /// Print one message's state and its audit events, from a running host.
    Show {
        /// The message id.
        id: String,
        /// Its state at this instant (RFC 3339) instead of now.
        #[arg(long, value_name = "INSTANT")]
        at: Option<jiff::Timestamp>,
        /// Read the sled store in this directory (the host must not be running), not a host.
        #[arg(long, value_name = "DIR", conflicts_with = "database_url")]
        data_dir: Option<PathBuf>,
        /// Read the PostgreSQL store at this URL, not a host.
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        /// With --data-dir or --database-url: read the archive in this directory when the
        /// instant is before the message's archived events end.
        #[arg(long, value_name = "DIR")]
        archive: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct ServerArgs {
    /// The running host.
    #[arg(
        long,
        global = true,
        env = "DRAGOMAN_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub(crate) server: String,
    /// Its admin token.
    #[arg(long, global = true, env = "DRAGOMAN_TOKEN")]
    pub(crate) token: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TopologyFormat {
    Json,
    Mermaid,
    Dot,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Serve { config } => crate::serve::run(&config),
        Command::Dlq {
            command:
                DlqCommand::Replay {
                    id,
                    route,
                    code,
                    plugin,
                    since,
                    until,
                    version,
                    dry_run,
                },
            server,
        } => {
            let target = version.as_deref().map(crate::plugins::selector_body);
            let token = server.token.as_deref();
            match (id, route) {
                (Some(id), _) => {
                    let body = target
                        .map(|t| t.to_string().into_bytes())
                        .unwrap_or_default();
                    let path = format!("/v1/dlq/{}/replay", crate::client::segment(&id));
                    let headers = [("content-type", "application/json")];
                    crate::client::send(&server.server, token, "POST", &path, &headers, body)
                }
                (None, Some(route)) => {
                    let filter = json!({
                        "route": route, "code": code, "plugin": plugin,
                        "since": since, "until": until,
                    });
                    crate::client::replay_batch(&server.server, token, filter, target, dry_run)
                }
                (None, None) => bail!("give an entry's id, or --route with a filter"),
            }
        }
        Command::Dlq { command, server } => {
            let (method, path) = match &command {
                DlqCommand::List => ("GET", "/v1/dlq".to_owned()),
                DlqCommand::Show { id } => {
                    ("GET", format!("/v1/dlq/{}", crate::client::segment(id)))
                }
                DlqCommand::Replay { .. } => unreachable!("matched above"),
                DlqCommand::Discard { id, reason } => {
                    let reason = reason
                        .as_ref()
                        .map(|r| format!("?reason={}", crate::client::segment(r)))
                        .unwrap_or_default();
                    (
                        "DELETE",
                        format!("/v1/dlq/{}{reason}", crate::client::segment(id)),
                    )
                }
            };
            crate::client::call(&server.server, server.token.as_deref(), method, &path)
        }
        Command::Watch { listen } => crate::watch::watch(listen),
        Command::Breakers { command, server } => crate::sinks::breakers(command.as_ref(), &server),
        Command::Sinks(command) => crate::sinks::run(command),
        Command::Outbound { route, key, server } => {
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)
                .context("cannot read the command from stdin")?;
            crate::client::command(
                &server.server,
                server.token.as_deref(),
                &route,
                key.as_deref(),
                body,
            )
        }
        Command::Entity(command) => crate::entity::run(command),
        Command::Topology { format, server } => {
            let format = match format {
                TopologyFormat::Json => "json",
                TopologyFormat::Mermaid => "mermaid",
                TopologyFormat::Dot => "dot",
            };
            crate::client::call(
                &server.server,
                server.token.as_deref(),
                "GET",
                &format!("/v1/topology?format={format}"),
            )
        }
        Command::Archive {
            data_dir,
            database_url,
            archive,
            older_than_secs,
        } => {
            let store = crate::client::open_store(data_dir.as_deref(), database_url.as_deref())?;
            crate::client::archive(&*store, &archive, older_than_secs)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Compact { data_dir } => {
            let done = dragoman::storage::Db::compact(&data_dir)?;
            println!(
                "{} records copied: {} bytes on disk before, {} after",
                done.records, done.before, done.after
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command:
                AuditCommand::Show {
                    id,
                    at,
                    data_dir,
                    database_url,
                    archive,
                    server: _,
                },
        } if data_dir.is_some() || database_url.is_some() => {
            let store = crate::client::open_store(data_dir.as_deref(), database_url.as_deref())?;
            crate::client::show_offline(&*store, &id, at, archive.as_deref())
        }
        Command::Audit {
            command: AuditCommand::Show { id, at, server, .. },
        } => {
            let at = at.map(|at| format!("?at={}", crate::client::segment(&at.to_string())));
            crate::client::call(
                &server.server,
                server.token.as_deref(),
                "GET",
                &format!(
                    "/v1/messages/{}{}",
                    crate::client::segment(&id),
                    at.unwrap_or_default()
                ),
            )?;
            crate::client::call(
                &server.server,
                server.token.as_deref(),
                "GET",
                &format!("/v1/messages/{}/history", crate::client::segment(&id)),
            )
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    data_dir,
                    database_url,
                    server,
                    token,
                    checkpoints,
                    checkpoint_key,
                    archive,
                },
        } => {
            let anchors = crate::client::Anchors::read(checkpoints.as_deref(), checkpoint_key)?;
            if data_dir.is_some() || database_url.is_some() {
                let store =
                    crate::client::open_store(data_dir.as_deref(), database_url.as_deref())?;
                crate::client::verify_store(&*store, &anchors, archive.as_deref())
            } else if let Some(server) = server {
                crate::client::verify_online(&server, token.as_deref())
            } else {
                bail!(
                    "give --data-dir DIR (sled, host stopped), --database-url URL (PostgreSQL) or \
                     --server URL (host running)"
                )
            }
        }
        Command::Checkpoint(CheckpointCommand::Keygen { name }) => {
            let key = dragoman::checkpoint::SignerKey::generate(&name)?;
            println!("{}", key.expose());
            println!("{}", key.verifier());
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(command) => crate::plugins::run(command),
        Command::Config(ConfigCommand::Check { file }) => crate::serve::check(&file),
        Command::Completions { shell } => {
            let mut command = <Args as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "dragoman", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}
