//! `dragoman plugin dev DIR`: the edit-to-result loop. On every save of a source the folder's
//! `build.sh` runs, the new component is loaded and the fixtures run again; a saved fixture
//! reruns them without a build. After the first run only what changed is printed (a fixture
//! that now fails with its diff, one that passes again, one added or removed), then one line
//! of counts with the time from the save to the result. Components are compiled without
//! optimisation (`quick_compile`): each is loaded once to run a handful of fixtures.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dragoman::fixtures::{self, Verdict};
use dragoman::plugin::{Plugin, Runtime};
use notify::{RecursiveMode, Watcher};

use crate::folder::Folder;

/// Saves closer together than this are one change (an editor writes a file in several steps).
const QUIET: Duration = Duration::from_millis(100);
/// The longest a burst of saves is waited out before running anyway.
const MOST: Duration = Duration::from_secs(2);

/// What a run found for each fixture.
type Results = BTreeMap<String, Verdict>;

/// Runs until the process is stopped (or the folder cannot be watched).
pub(crate) fn run(folder: &Folder, runtime: &Runtime) -> Result<ExitCode> {
    let (tx, rx) = channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        // The receiver lives as long as the loop; a send after it is gone is moot.
        let _ = tx.send(event);
    })
    .context("cannot watch the folder")?;
    // The folder itself and each directory of sources, not the ones builds fill
    // (`node_modules`, `target`, `.venv`): they would cost a watch per directory.
    watcher.watch(folder.dir(), RecursiveMode::NonRecursive)?;
    for dir in folder.watched_dirs()? {
        watcher.watch(&dir, RecursiveMode::Recursive)?;
    }
    println!(
        "watching {}: every save rebuilds and reruns the fixtures (ctrl-c to stop)",
        folder.dir().display()
    );

    let mut plugin: Option<Plugin> = None;
    let mut last: Option<Results> = None;
    let mut change = Change {
        build: true,
        seen: Instant::now(),
    };
    loop {
        let mut built_in = None;
        if change.build {
            let started = Instant::now();
            let rebuilt = rebuild(folder, runtime);
            built_in = Some(started.elapsed());
            match rebuilt {
                Ok(loaded) => plugin = Some(loaded),
                Err(why) => {
                    println!("{why}");
                    println!(
                        "build failed · {:.2} s",
                        change.seen.elapsed().as_secs_f64()
                    );
                    change = next_change(&rx, folder)?;
                    continue;
                }
            }
        }
        if let Some(plugin) = &plugin {
            match results(plugin, folder) {
                Ok(now) => {
                    show(last.as_ref(), &now);
                    let failed = now.values().filter(|v| **v != Verdict::Pass).count();
                    let build = built_in.map_or_else(
                        || " (fixtures only)".to_owned(),
                        |t| format!(" (build and load {:.2} s)", t.as_secs_f64()),
                    );
                    println!(
                        "{} passed, {failed} failed · edit to result {:.2} s{build}",
                        now.len() - failed,
                        change.seen.elapsed().as_secs_f64()
                    );
                    last = Some(now);
                }
                Err(why) => println!("fixtures: {why:#}"),
            }
        }
        change = next_change(&rx, folder)?;
    }
}

/// Builds and loads the component, or says why not (the build's own output names the file and
/// line of a syntax error).
fn rebuild(folder: &Folder, runtime: &Runtime) -> Result<Plugin, String> {
    println!("building…");
    let built = folder.build().map_err(|e| format!("cannot build: {e:#}"))?;
    if !built.ok {
        let log: Vec<&str> = built.log.lines().filter(|l| !l.trim().is_empty()).collect();
        let shown = log.len().saturating_sub(20);
        let mut out = format!("build.sh failed ({}):", built.status);
        for line in &log[shown..] {
            out += &format!("\n  {line}");
        }
        return Err(out);
    }
    let component = folder.fresh_component().map_err(|e| format!("{e:#}"))?;
    runtime
        .load_file(component)
        .map_err(|e| format!("the component does not load: {e}"))
}

/// Each fixture's outcome, read from the folder as it is now.
fn results(plugin: &Plugin, folder: &Folder) -> Result<Results> {
    let found = fixtures::discover(&folder.fixtures())?;
    let mut out = Results::new();
    for fixture in &found {
        out.insert(fixture.name.clone(), fixtures::run(plugin, fixture)?);
    }
    Ok(out)
}

/// Prints every fixture the first time, then only those whose outcome changed.
fn show(last: Option<&Results>, now: &Results) {
    let mut shown = 0;
    for (name, verdict) in now {
        if last.is_some_and(|last| last.get(name) == Some(verdict)) {
            continue;
        }
        shown += 1;
        crate::local::print_verdict(name, verdict);
    }
    for name in last.into_iter().flat_map(|l| l.keys()) {
        if !now.contains_key(name) {
            shown += 1;
            println!("gone {name}");
        }
    }
    if shown == 0 {
        println!("no fixture changed");
    }
}

/// A change to act on: whether a source changed (else only fixtures), and when it was first
/// seen.
struct Change {
    build: bool,
    seen: Instant,
}

/// Waits for the next save of a source or a fixture, then for the burst to end.
fn next_change(rx: &Receiver<notify::Result<notify::Event>>, folder: &Folder) -> Result<Change> {
    let relevant = |event: notify::Result<notify::Event>| -> Result<Option<bool>> {
        let event = event.context("watching the folder failed")?;
        if event.kind.is_access() {
            return Ok(None);
        }
        let paths: Vec<PathBuf> = event.paths;
        if paths.iter().any(|p| folder.is_source(p)) {
            Ok(Some(true))
        } else if paths.iter().any(|p| folder.is_fixture(p)) {
            Ok(Some(false))
        } else {
            Ok(None)
        }
    };
    let (mut build, seen) = loop {
        let event = rx.recv().context("the folder watch ended")?;
        if let Some(build) = relevant(event)? {
            break (build, Instant::now());
        }
    };
    loop {
        let left = MOST.saturating_sub(seen.elapsed());
        if left.is_zero() {
            break;
        }
        match rx.recv_timeout(QUIET.min(left)) {
            Ok(event) => build |= relevant(event)?.unwrap_or(false),
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => anyhow::bail!("the folder watch ended"),
        }
    }
    Ok(Change { build, seen })
}
