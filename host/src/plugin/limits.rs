//! Per-call limits and the resource limiter that enforces the memory cap.

use std::time::Duration;

/// The limits every plugin call runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time one call may take, instantiation included.
    pub deadline: Duration,
    /// Bytes each linear memory of an instance may grow to.
    pub memory: usize,
    /// Bytes one call may return (event payloads, types, subjects and keys together).
    pub output: usize,
    /// Bytes of stdout and stderr kept per call for the log; the rest is dropped.
    pub log_capture: usize,
}

/// By default, 1 s a call.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(1);
/// By default, 64 MiB of linear memory.
pub const DEFAULT_MEMORY: usize = 64 << 20;
/// By default, 1 MiB of output.
pub const DEFAULT_OUTPUT: usize = 1 << 20;
/// By default, 16 KiB of stdout and stderr.
pub const DEFAULT_LOG_CAPTURE: usize = 16 << 10;

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: DEFAULT_DEADLINE,
            memory: DEFAULT_MEMORY,
            output: DEFAULT_OUTPUT,
            log_capture: DEFAULT_LOG_CAPTURE,
        }
    }
}

/// Refuses memory growth past the cap and remembers that it did, so that the resulting trap
/// is reported as a memory fault rather than a generic one.
#[derive(Debug)]
pub(crate) struct Limiter {
    memory_cap: usize,
    pub(crate) memory_exceeded: Option<usize>,
    /// The bytes of linear memory the instance has now, all its memories together.
    pub(crate) memory: usize,
}

impl Limiter {
    pub(crate) fn new(memory_cap: usize) -> Self {
        Self {
            memory_cap,
            memory_exceeded: None,
            memory: 0,
        }
    }
}

/// The error a refused growth traps with.
#[derive(Debug, thiserror::Error)]
#[error("memory grow to {desired} bytes refused: the cap is {cap} bytes")]
pub(crate) struct MemoryCapExceeded {
    pub(crate) desired: usize,
    pub(crate) cap: usize,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_exceeded = Some(desired);
            return Err(MemoryCapExceeded {
                desired,
                cap: self.memory_cap,
            }
            .into());
        }
        self.memory = self.memory.saturating_add(desired.saturating_sub(current));
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}
