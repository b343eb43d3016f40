//! The open connections, and which one makes room when there are as many as allowed: the one
//! idle the longest. Idle means open with no request being served (waiting for a request
//! head, or between requests): a client that holds connections without using them loses
//! them first, and one that is being answered is never cut off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// File handles kept for everything but connections: the store, the plugin cache, sinks,
/// the log.
const RESERVED_FILES: u64 = 256;

/// The open connections, at most `max`.
#[derive(Debug)]
pub(super) struct Connections {
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next: AtomicU64,
    max: usize,
}

/// One open connection.
#[derive(Debug)]
pub(super) struct Connection {
    id: u64,
    /// Requests being served on it now.
    serving: AtomicUsize,
    /// When it last started or finished serving one (or was opened).
    active_at: Mutex<Instant>,
    evict: CancellationToken,
}

impl Connections {
    pub(super) fn new(max: usize) -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            max: max.max(1),
        }
    }

    /// Registers a new connection, evicting the longest idle one when there are `max`
    /// already; `None` when every open connection is serving a request.
    pub(super) fn admit(&self) -> Option<Arc<Connection>> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.len() >= self.max {
            let idle = open
                .values()
                .filter(|c| c.serving.load(Ordering::SeqCst) == 0)
                .min_by_key(|c| {
                    *c.active_at
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                })
                .map(|c| c.id)?;
            if let Some(evicted) = open.remove(&idle) {
                evicted.evict.cancel();
            }
        }
        let connection = Arc::new(Connection {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            serving: AtomicUsize::new(0),
            active_at: Mutex::new(Instant::now()),
            evict: CancellationToken::new(),
        });
        open.insert(connection.id, connection.clone());
        Some(connection)
    }

    /// Forgets a connection that ended.
    pub(super) fn remove(&self, connection: &Connection) {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&connection.id);
    }
}

impl Connection {
    /// Marks a request as being served until the guard drops.
    pub(super) fn busy(self: &Arc<Self>) -> Busy {
        self.serving.fetch_add(1, Ordering::SeqCst);
        self.touch();
        Busy(self.clone())
    }

    /// Resolves when the connection must close to make room.
    pub(super) async fn evicted(&self) {
        self.evict.cancelled().await;
    }

    fn touch(&self) {
        *self
            .active_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }
}

/// A request being served.
#[derive(Debug)]
pub(super) struct Busy(Arc<Connection>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.serving.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `max`, or less when the process may not open that many files beside what else it needs.
pub(super) fn within_file_limit(max: usize) -> usize {
    let Some(files) = file_limit() else {
        return max;
    };
    let room = usize::try_from(files.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX);
    if room < max {
        tracing::warn!(
            max_connections = max,
            file_limit = files,
            used = room,
            "max_connections is above what the process's file limit allows; using less"
        );
        return room.max(1);
    }
    max
}

/// The process's soft limit on open files.
#[expect(unsafe_code, reason = "one libc call that fills a struct it is given")]
fn file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` through a valid pointer to one.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) };
    (status == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}
