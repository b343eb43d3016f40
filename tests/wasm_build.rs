//! Building Rust guests for wasm32-wasip2 with the cargo that runs the caller. Shared by
//! `tests/build.rs` and the host's benchmarks (through `#[path]`), so both build the same
//! artifacts into the same target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the guests are built: `wasm` inside the workspace's target directory.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm")
}

pub(crate) fn build(manifest: &Path, target: &Path) -> Result<(), String> {
    ensure_wasm_target()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target);
    // The outer build's settings are for the host, not for wasm guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo to build {}: {e}", manifest.display()))?;
    if !status.success() {
        return Err(format!(
            "building {} for wasm32-wasip2 failed ({status}); is the target installed? `rustup target add wasm32-wasip2`",
            manifest.display()
        ));
    }
    Ok(())
}

pub(crate) fn artifact(target: &Path, crate_name: &str) -> PathBuf {
    target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")))
}

/// Installs the wasm32-wasip2 standard library with rustup when the active toolchain lacks it
/// (rust-toolchain.toml lists it, but rustup adds listed targets only when it installs the
/// toolchain itself).
fn ensure_wasm_target() -> Result<(), String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {rustc}: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib/wasm32-wasip2").is_dir() {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .map_err(|e| format!("the wasm32-wasip2 target is missing and rustup cannot run: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`rustup target add wasm32-wasip2` failed ({status})"
        ))
    }
}

/// Runs a non-Rust plugin's build script (`bash SCRIPT OUT [APP]`) to make `out`.
pub(crate) fn build_scripted(
    root: &Path,
    script: &str,
    app: Option<&str>,
    out: &Path,
) -> Result<(), String> {
    std::fs::create_dir_all(out.parent().expect("an artifact has a directory"))
        .map_err(|e| e.to_string())?;
    let mut command = Command::new("bash");
    command.arg(root.join(script)).arg(out);
    if let Some(app) = app {
        command.arg(root.join(app));
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{script} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
