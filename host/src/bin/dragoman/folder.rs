//! A plugin folder as `dragoman plugin new` makes it: sources, `fixtures/`, `build.sh`, and
//! the component the build leaves beside them. `plugin test DIR` and `plugin dev DIR` take the
//! folder; both refuse a component older than its sources, so a failed build is never
//! mistaken for a green one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};

/// Directories that hold what the build fetched or made, never the plugin's sources.
const NOT_SOURCES: &[&str] = &["node_modules", "target", "__pycache__", "fixtures"];
/// How deep and how many entries a look for sources goes: a folder is small.
const MAX_DEPTH: usize = 8;
const MAX_ENTRIES: usize = 20_000;

/// A plugin folder.
#[derive(Debug, Clone)]
pub(crate) struct Folder {
    dir: PathBuf,
    component: PathBuf,
}

impl Folder {
    /// The folder at `dir`: it has a `build.sh`; its component is `NAME.wasm`, NAME being the
    /// folder's name, or else the one `*.wasm` file in it (built or not yet).
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot open {}", dir.display()))?;
        if !dir.join("build.sh").is_file() {
            bail!(
                "{} has no build.sh: give a plugin folder (`dragoman plugin new` makes one) or a component file",
                dir.display()
            );
        }
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .context("the folder has no name")?;
        let mut component = dir.join(format!("{name}.wasm"));
        if !component.exists() {
            let found: Vec<PathBuf> = std::fs::read_dir(&dir)?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.extension().is_some_and(|e| e == "wasm"))
                .collect();
            if let [only] = found.as_slice() {
                component.clone_from(only);
            }
        }
        Ok(Self { dir, component })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn fixtures(&self) -> PathBuf {
        self.dir.join("fixtures")
    }

    /// Whether a changed path is one the build reads (a fixture is not: it is read by the
    /// test itself).
    pub(crate) fn is_source(&self, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(&self.dir) else {
            return false;
        };
        let mut parts = relative.components().peekable();
        while let Some(part) = parts.next() {
            let part = part.as_os_str().to_string_lossy();
            if holds_no_sources(&part) {
                return false;
            }
            if parts.peek().is_none() {
                return is_source_file(&part);
            }
        }
        false
    }

    /// The folder's subdirectories that may hold sources or fixtures: not hidden ones, not
    /// the ones builds fill.
    pub(crate) fn watched_dirs(&self) -> Result<Vec<PathBuf>> {
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let watched = name == "fixtures" || !holds_no_sources(&name);
            if entry.file_type()?.is_dir() && watched {
                dirs.push(entry.path());
            }
        }
        Ok(dirs)
    }

    /// Whether a changed path is a fixture.
    pub(crate) fn is_fixture(&self, path: &Path) -> bool {
        path.starts_with(self.fixtures())
            && path
                .file_name()
                .is_some_and(|f| !f.to_string_lossy().starts_with('.'))
    }

    /// The component, or why it must not be tested: missing (a failed or no build), or older
    /// than a source (edited since the last good build).
    pub(crate) fn fresh_component(&self) -> Result<&Path> {
        let built = match std::fs::metadata(&self.component).and_then(|m| m.modified()) {
            Ok(built) => built,
            Err(_) => bail!(
                "{} has no component {}: build it with {}/build.sh (a failed build leaves none)",
                self.dir.display(),
                file_name(&self.component),
                self.dir.display()
            ),
        };
        if let Some((source, changed)) = self.newest_source()?
            && changed > built
        {
            let after = changed.duration_since(built).unwrap_or(Duration::ZERO);
            bail!(
                "{} is older than its source {} (changed {:.1} s after the build): rebuild with \
                 {}/build.sh, or run `dragoman plugin dev {}`",
                file_name(&self.component),
                source.strip_prefix(&self.dir).unwrap_or(&source).display(),
                after.as_secs_f64(),
                self.dir.display(),
                self.dir.display()
            );
        }
        Ok(&self.component)
    }

    /// The most recently changed source file and when.
    fn newest_source(&self) -> Result<Option<(PathBuf, SystemTime)>> {
        let mut newest: Option<(PathBuf, SystemTime)> = None;
        let mut pending = vec![(self.dir.clone(), 0)];
        let mut seen = 0;
        while let Some((dir, depth)) = pending.pop() {
            for entry in
                std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
            {
                seen += 1;
                if seen > MAX_ENTRIES {
                    bail!(
                        "{} holds more than {MAX_ENTRIES} files: is it a plugin folder?",
                        self.dir.display()
                    );
                }
                let entry = entry?;
                let path = entry.path();
                let kind = entry.file_type()?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if kind.is_dir() {
                    if !holds_no_sources(&name) && depth < MAX_DEPTH {
                        pending.push((path, depth + 1));
                    }
                } else if self.is_source(&path) {
                    let changed = entry.metadata()?.modified()?;
                    if newest.as_ref().is_none_or(|(_, t)| changed > *t) {
                        newest = Some((path, changed));
                    }
                }
            }
        }
        Ok(newest)
    }

    /// Runs `build.sh` with this very binary for its `dragoman plugin pack`; returns whether
    /// it succeeded and what it wrote (stdout and stderr, interleaved as far as pipes allow).
    pub(crate) fn build(&self) -> Result<Built> {
        let mut command = Command::new(self.dir.join("build.sh"));
        command.current_dir(&self.dir).stdin(Stdio::null());
        if let Ok(exe) = std::env::current_exe() {
            command.env("DRAGOMAN", exe);
        }
        let output = command
            .output()
            .with_context(|| format!("cannot run {}/build.sh", self.dir.display()))?;
        let mut log = String::from_utf8_lossy(&output.stdout).into_owned();
        log.push_str(&String::from_utf8_lossy(&output.stderr));
        Ok(Built {
            ok: output.status.success(),
            status: output.status.to_string(),
            log,
        })
    }
}

/// What a build did.
#[derive(Debug)]
pub(crate) struct Built {
    pub(crate) ok: bool,
    pub(crate) status: String,
    pub(crate) log: String,
}

/// Whether a file or directory of this name is hidden or one of [`NOT_SOURCES`].
fn holds_no_sources(name: &str) -> bool {
    name.starts_with('.') || NOT_SOURCES.contains(&name)
}

/// A file the build reads: code, manifests, the contract; not docs, not what builds make or
/// rewrite (lockfiles, compiled caches), not an editor's backup.
fn is_source_file(name: &str) -> bool {
    let skipped = [".wasm", ".tmp", ".md", ".pyc", ".lock", "~", ".swp"];
    !name.starts_with('.')
        && name != "package-lock.json"
        && !skipped.iter().any(|end| name.ends_with(end))
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
