//! `dragoman plugin …`: the commands that work with translator plugins, on files here
//! (check, test, pack, translate, new, dev) or on a running host's registry (push, activate,
//! rollback, shadow, list, gc), and the sandbox settings the local ones run under.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use dragoman::fixtures;
use dragoman::plugin::{Limits, LoadError, Loaded, Plugin, Runtime};
use serde_json::json;

use crate::cli::ServerArgs;
use crate::folder::Folder;
use crate::local;

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Check a component against the contract and print its metadata.
    Check {
        /// The component.
        file: PathBuf,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Run a plugin's contract fixtures; exits 1 on any mismatch.
    Test {
        /// The component, or a plugin folder (its component, refused when older than its
        /// sources, with its `fixtures/`).
        file: PathBuf,
        /// The directory of `NAME.input.*` and `NAME.expected.json` files [default: the
        /// fixtures the component carries, or the folder's `fixtures/`].
        fixtures: Option<PathBuf>,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Embed a fixtures directory in a component (replacing any it carries), so that a host
    /// runs them before the version serves.
    Pack {
        /// The component.
        file: PathBuf,
        /// The directory of fixtures.
        fixtures: PathBuf,
        /// Where to write the packed component [default: over FILE].
        #[arg(short, long, value_name = "FILE.wasm")]
        output: Option<PathBuf>,
    },
    /// Send a new version to a running host: checked (contract, routes, its fixtures), kept
    /// in its registry and made active on every route that serves the plugin.
    Push {
        /// The component.
        file: PathBuf,
        /// The plugin it must be a version of [default: the one it names itself].
        #[arg(long)]
        name: Option<String>,
        /// Keep it in the registry without making it active.
        #[arg(long, conflicts_with = "canary")]
        no_activate: bool,
        /// Serve it as a canary for this percent (1 to 99) of the messages, beside the
        /// active version; rolled back by itself if it fails more.
        #[arg(long, value_name = "PERCENT")]
        canary: Option<u8>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Make a kept version of a plugin active on a running host.
    Activate {
        /// The plugin.
        name: String,
        /// Its version, or the sha256 of its component (12 or more hex digits).
        version: String,
        /// Serve it as a canary for this percent (1 to 99) of the messages.
        #[arg(long, value_name = "PERCENT")]
        canary: Option<u8>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// End a plugin's canary; without one, take every route that serves the plugin back to
    /// the version it served before.
    Rollback {
        /// The plugin.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove the kept versions past `[plugins] keep_versions` (and their compiled files)
    /// from a running host's registry, sparing every version that is active, in a canary or
    /// shadow, or in a route's history; `--dry-run` shows what would go.
    Gc {
        /// Show what would go; remove nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run a kept version in shadow on a running host's live messages (`VERSION`), stop it
    /// (`--stop`), or show what it found so far (neither).
    Shadow {
        /// The plugin.
        name: String,
        /// The version to shadow, or the sha256 of its component.
        version: Option<String>,
        /// Stop the shadow.
        #[arg(long, conflicts_with = "version")]
        stop: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Every version a running host keeps, and what each route serves.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Create a plugin folder (source, SDK, fixtures, build script, README, .gitignore) that
    /// builds and passes its fixtures as generated: `dragoman plugin dev NAME`, or
    /// `./NAME/build.sh` (which embeds the fixtures in the component) then `dragoman plugin
    /// test NAME`.
    New {
        /// The language: rust (rs), python (py) or js (javascript).
        #[arg(long, value_enum)]
        lang: crate::scaffold::Lang,
        /// The plugin's name, kebab-case; also the folder's.
        name: String,
        /// Where to create the folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The guest SDK, for Rust plugins [default: the one this host was built from].
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
    /// Watch a plugin folder: on every save of a source, rebuild (`build.sh`), reload and
    /// rerun its fixtures, printing only what changed; a fixture's change reruns without a
    /// build. Runs until ctrl-c.
    Dev {
        /// The plugin folder.
        dir: PathBuf,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Translate one message read from stdin and print the events as JSON.
    Translate {
        /// The component.
        file: PathBuf,
        /// The content type the message declares.
        #[arg(long)]
        content_type: Option<String>,
        /// A plugin config entry, `KEY=VALUE`; repeat for more.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
}

/// What `dragoman topology` prints.
#[derive(Debug, clap::Args)]
pub(crate) struct RuntimeArgs {
    /// Where compiled components are cached [default: $XDG_CACHE_HOME/dragoman or ~/.cache/dragoman;
    /// none for `plugin dev`].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every time; use no cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// Wall-clock deadline of one plugin call, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    deadline_ms: u64,
    /// Memory cap of one plugin instance, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    memory_mib: usize,
    /// Compile without optimising (`plugin dev` always does): faster to load, slower to run.
    #[arg(long)]
    quick_compile: bool,
}

impl RuntimeArgs {
    fn runtime(&self) -> Result<Runtime> {
        let mut builder = Runtime::builder();
        builder.limits(Limits {
            deadline: Duration::from_millis(self.deadline_ms),
            memory: self
                .memory_mib
                .checked_mul(1 << 20)
                .context("--memory-mib is too large")?,
            ..Limits::default()
        });
        // The command line runs one plugin at a time: a small pool is enough.
        builder.max_instances(4).quick_compile(self.quick_compile);
        if !self.no_cache
            && let Some(dir) = self.cache_dir.clone().or_else(default_cache_dir)
        {
            builder.cache_dir(dir);
        }
        Ok(builder.build()?)
    }

    fn load(&self, file: &PathBuf) -> Result<Plugin> {
        Ok(self.runtime()?.load_file(file)?)
    }

    /// A translator or a projector, whichever contract the component implements.
    fn load_any(&self, file: &PathBuf) -> Result<Loaded> {
        let wasm = std::fs::read(file).map_err(|error| LoadError::Read {
            path: file.clone(),
            error,
        })?;
        Ok(self
            .runtime()?
            .load_any(&wasm, &file.display().to_string())?)
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("dragoman").join("components"))
}

// Long on purpose: one arm per command, each a call into the module that does it.
pub(crate) fn run(command: PluginCommand) -> Result<ExitCode> {
    match command {
        PluginCommand::New {
            lang,
            name,
            dir,
            sdk,
        } => {
            let created = crate::scaffold::create(lang, &name, &dir, sdk)?;
            let at = created.display();
            println!("created {at}");
            println!("work on it: dragoman plugin dev {at}   (rebuilds and tests on every save)");
            println!("build it:   {at}/build.sh");
            println!("test it:    dragoman plugin test {at}");
            println!("push it:    dragoman plugin push {at}/{name}.wasm --server URL");
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Check { file, runtime } => local::check(&runtime.load_any(&file)?),
        PluginCommand::Test {
            file,
            fixtures,
            runtime,
        } => {
            if file.is_dir() {
                // A plugin folder: its component, if built after its last edit, and its
                // fixtures as they are now.
                let folder = Folder::open(&file)?;
                let component = folder.fresh_component()?.to_owned();
                let dir = fixtures.unwrap_or_else(|| folder.fixtures());
                let found = fixtures::discover(&dir).map_err(dragoman::Error::from)?;
                return local::test(&runtime.load_any(&component)?, &found);
            }
            let found = match fixtures {
                Some(dir) => fixtures::discover(&dir).map_err(dragoman::Error::from)?,
                None => {
                    let wasm = std::fs::read(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    fixtures::embedded(&wasm)
                        .map_err(dragoman::Error::from)?
                        .with_context(|| {
                            format!(
                                "{} carries no fixtures: give a directory, or embed one with \
                             `dragoman plugin pack`",
                                file.display()
                            )
                        })?
                }
            };
            local::test(&runtime.load_any(&file)?, &found)
        }
        PluginCommand::Dev { dir, mut runtime } => {
            // Every save makes a new component: caching each compiled one would only fill the
            // disk, so the cache is used only when asked for.
            runtime.no_cache = runtime.cache_dir.is_none();
            runtime.quick_compile = true;
            crate::dev::run(&Folder::open(&dir)?, &runtime.runtime()?)
        }
        PluginCommand::Pack {
            file,
            fixtures,
            output,
        } => {
            let wasm =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let packed = fixtures::pack(&wasm, &fixtures).map_err(dragoman::Error::from)?;
            let count = fixtures::embedded(&packed)
                .map_err(dragoman::Error::from)?
                .map_or(0, |f| f.len());
            let output = output.unwrap_or(file);
            std::fs::write(&output, packed)
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!("{}: {count} fixtures embedded", output.display());
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Push {
            file,
            name,
            no_activate,
            canary,
            server,
        } => {
            let wasm =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let path = match &name {
                Some(name) => format!("/v1/plugins/{name}"),
                None => "/v1/plugins".to_owned(),
            };
            let path = match (no_activate, canary) {
                (true, _) => format!("{path}?activate=false"),
                (false, Some(percent)) => format!("{path}?canary={percent}"),
                (false, None) => path,
            };
            let method = if name.is_some() { "PUT" } else { "POST" };
            let headers = [("content-type", "application/wasm")];
            crate::client::send(
                &server.server,
                server.token.as_deref(),
                method,
                &path,
                &headers,
                wasm,
            )
        }
        PluginCommand::Activate {
            name,
            version,
            canary,
            server,
        } => {
            let mut body = selector_body(&version);
            if let Some(percent) = canary {
                body["canary_percent"] = json!(percent);
            }
            crate::client::send(
                &server.server,
                server.token.as_deref(),
                "POST",
                &format!("/v1/plugins/{name}/activate"),
                &[("content-type", "application/json")],
                body.to_string().into_bytes(),
            )
        }
        PluginCommand::Shadow {
            name,
            version,
            stop,
            server,
        } => {
            let path = format!("/v1/plugins/{name}/shadow");
            let token = server.token.as_deref();
            match (version, stop) {
                (Some(version), _) => {
                    let body = selector_body(&version);
                    let headers = [("content-type", "application/json")];
                    let body = body.to_string().into_bytes();
                    crate::client::send(&server.server, token, "POST", &path, &headers, body)
                }
                (None, true) => crate::client::call(&server.server, token, "DELETE", &path),
                (None, false) => crate::client::call(&server.server, token, "GET", &path),
            }
        }
        PluginCommand::Rollback { name, server } => crate::client::call(
            &server.server,
            server.token.as_deref(),
            "POST",
            &format!("/v1/plugins/{}/rollback", crate::client::segment(&name)),
        ),
        PluginCommand::Gc { dry_run, server } => crate::client::call(
            &server.server,
            server.token.as_deref(),
            "POST",
            &format!("/v1/plugins/gc?dry_run={dry_run}"),
        ),
        PluginCommand::List { server } => crate::client::call(
            &server.server,
            server.token.as_deref(),
            "GET",
            "/v1/plugins",
        ),
        PluginCommand::Translate {
            file,
            content_type,
            config,
            runtime,
        } => {
            let config = local::parse_config(&config)?;
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .context("cannot read the message from stdin")?;
            local::translate(&runtime.load(&file)?, content_type, config, body)
        }
    }
}

/// A version as the registry's calls take it: `{"sha256"}` for 12 or more hex digits, else
/// `{"version"}`.
pub(crate) fn selector_body(version: &str) -> serde_json::Value {
    match dragoman::registry::Selector::parse(version) {
        dragoman::registry::Selector::Sha256(sha) => json!({ "sha256": sha }),
        dragoman::registry::Selector::Version(v) => json!({ "version": v }),
    }
}
