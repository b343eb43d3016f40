//! `PluginState`, the data of every plugin `Store`, and the host side of the contract's
//! imports: logging and the route's plugin config. WASI is linked with nothing granted.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::PluginConfig;
use super::limits::{Limiter, Limits};
use super::output::Capture;
use crate::bindings::dragoman::translator::{config, log, types};

/// What one call's store holds.
pub(crate) struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    config: Arc<PluginConfig>,
    /// `name@version`, for log lines.
    pub(crate) who: Arc<str>,
    pub(crate) stdout: Capture,
    pub(crate) stderr: Capture,
}

impl PluginState {
    pub(crate) fn new(who: Arc<str>, config: Arc<PluginConfig>, limits: &Limits) -> Self {
        let stdout = Capture::new(limits.log_capture);
        let stderr = Capture::new(limits.log_capture);
        // No arguments, environment, preopened directories, network or name lookups: the
        // builder grants none by default and the sockets are refused explicitly.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(limits.memory),
            config,
            who,
            stdout,
            stderr,
        }
    }

    /// Writes what the guest printed to tracing, one event a line.
    pub(crate) fn flush_output(&self) {
        for (stream, capture) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (bytes, dropped) = capture.take();
            for line in String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| !l.is_empty())
            {
                tracing::info!(target: "dragoman::plugin", plugin = %self.who, stream, "{line}");
            }
            if dropped > 0 {
                tracing::warn!(target: "dragoman::plugin", plugin = %self.who, stream, dropped, "plugin output over the capture limit was dropped");
            }
        }
    }

    /// The last lines the guest wrote to stderr (a panic message, typically).
    pub(crate) fn stderr_tail(&self, max: usize) -> String {
        self.stderr.tail(max)
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl log::Host for PluginState {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        let fields = Fields(&fields);
        let who = &*self.who;
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "dragoman::plugin", plugin = who, %fields, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: "dragoman::plugin", plugin = who, %fields, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: "dragoman::plugin", plugin = who, %fields, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: "dragoman::plugin", plugin = who, %fields, "{message}")
            }
            log::Level::Error => {
                tracing::error!(target: "dragoman::plugin", plugin = who, %fields, "{message}")
            }
        }
    }
}

/// Key-value fields from a guest, shown as `k=v k=v`.
struct Fields<'a>(&'a [(String, String)]);

impl std::fmt::Display for Fields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        Ok(())
    }
}

impl config::Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl types::Host for PluginState {}
