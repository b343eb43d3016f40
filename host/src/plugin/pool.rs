//! The instances of one plugin with one route config: fresh per message by default, or
//! reused for up to N messages when a route asks for it, and never again after a fault.

use std::fmt;
use std::sync::Arc;

use super::{Fault, Plugin, PluginConfig, Session};

/// The instances of one plugin with one route config.
///
/// With `max_uses` 1 (the default everywhere) every message gets a fresh instance. With
/// `max_uses` N > 1 an instance serves up to N messages, one after another, and is then
/// dropped; one that faulted (trap, deadline, memory, output) is dropped at once. What may
/// survive from one message to the next on a reused instance: everything in its linear
/// memory (globals, statics, the heap, caches, an interpreter's module state) and its tables.
/// The host resets nothing but the deadline; a plugin that must not carry state from one
/// message to the next must run with `max_uses` 1.
///
/// An instance whose linear memory has grown past half the memory cap is also dropped after
/// its message: a garbage-collected guest (the JavaScript runtime grows its heap by about
/// 3.6 KiB a message of the seed order, to some 95 MiB before it collects) would otherwise
/// meet the cap after some thousands of messages and fault on a good one. Memory never
/// shrinks, so the next message gets a fresh instance instead.
pub struct Instances {
    plugin: Plugin,
    config: Arc<PluginConfig>,
    max_uses: u32,
    idle: std::sync::Mutex<Vec<(Session, u32)>>,
}

impl fmt::Debug for Instances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instances")
            .field("plugin", self.plugin.id())
            .field("max_uses", &self.max_uses)
            .finish_non_exhaustive()
    }
}

impl Instances {
    /// Instances of `plugin` with `config`, each used for at most `max_uses` messages (at
    /// least 1).
    pub fn new(plugin: Plugin, config: Arc<PluginConfig>, max_uses: u32) -> Self {
        Self {
            plugin,
            config,
            max_uses: max_uses.max(1),
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The plugin.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// The route config the instances read.
    pub fn config(&self) -> &Arc<PluginConfig> {
        &self.config
    }

    /// How many messages one instance serves at most.
    pub fn max_uses(&self) -> u32 {
        self.max_uses
    }

    /// An instance for one message: an idle one that has uses left, or a fresh one.
    ///
    /// # Errors
    ///
    /// A [`Fault`] when a fresh instance cannot be made.
    pub fn get(&self) -> Result<Lease<'_>, Fault> {
        let reused = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let (session, uses) = match reused {
            Some(idle) => idle,
            None => (self.plugin.session(self.config.clone())?, 0),
        };
        Ok(Lease {
            pool: self,
            session: Some(session),
            uses,
        })
    }
}

/// An instance lent for one message; back to its [`Instances`] when dropped, unless it
/// faulted or has served its last message.
pub struct Lease<'a> {
    pool: &'a Instances,
    session: Option<Session>,
    uses: u32,
}

impl fmt::Debug for Lease<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("uses", &self.uses)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = Session;

    fn deref(&self) -> &Session {
        self.session
            .as_ref()
            .expect("a lease holds its session until dropped")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Session {
        self.session
            .as_mut()
            .expect("a lease holds its session until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let uses = self.uses + 1;
        let grown = session.memory_bytes() > self.pool.plugin.inner.runtime.limits().memory / 2;
        if session.is_poisoned() || uses >= self.pool.max_uses || grown {
            return;
        }
        self.pool
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((session, uses));
    }
}
