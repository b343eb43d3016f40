//! Entity state at any instant: an entity's stream folded by its type's projector (a
//! sandboxed component), from the latest snapshot that fits the instant, writing a snapshot
//! every N events on the way. So the state at an instant costs a snapshot load plus at most
//! N applies once the stream has been read once by this projector version.
//!
//! Two clocks, chosen per read ([`Basis`]):
//! - **commit time** (the default): the state as the host had recorded it at that instant,
//!   the events committed by then. A stream's commit times never go back, so this is a
//!   prefix of the stream, and an answer about the past never changes later.
//! - **event time**: the state as the world was at that instant by the vendors' word
//!   (`occurred_at` in the events' data, else the commit time), including an event that
//!   arrived late. Events still fold in commit order; only which ones count changes. An
//!   answer about the past can change when a late event arrives, and a read costs the
//!   events after its snapshot to find late ones (their applies stay only those that count).
//!
//! A refused transition is reported beside the state, never hidden and never fatal; a
//! projector that traps, loops or breaks a cap fails the read as a fault.

mod versions;

pub(crate) use versions::FoldVersions;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use jiff::Timestamp;

use crate::plugin::{Fault, FoldEvent, PluginRef, Projector};
use crate::storage::{
    EntityEvent, EntityRef, RefusedEvent, Snapshot, SnapshotBound, Storage, StorageError,
};

/// By default, a snapshot every 100 events.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 100;

/// Which clock an instant is read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Basis {
    /// When the host committed the events.
    #[default]
    Committed,
    /// When the events happened, by the vendors' word.
    Occurred,
}

/// Why a state could not be given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// No projector folds this entity type.
    #[error("no projector folds entity type `{entity_type}`")]
    NoProjector {
        /// The entity type asked for.
        entity_type: String,
    },
    /// No event was ever about this entity.
    #[error("no event was ever about {entity}")]
    UnknownEntity {
        /// `type/id`.
        entity: String,
    },
    /// The projector faulted: trapped, missed its deadline, broke a cap.
    #[error(transparent)]
    Fault(#[from] Fault),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// An entity's state at an instant, and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityState {
    /// The entity.
    pub entity: EntityRef,
    /// The projector version that folded it.
    pub projector: PluginRef,
    /// The state, JSON.
    pub state: String,
    /// The last place of the stream the read looked at.
    pub through: u64,
    /// Places up to `through` that do not count at this instant (event time: they happened
    /// later).
    pub skipped: Vec<u64>,
    /// The events the projector refused, among those that count.
    pub refused: Vec<RefusedEvent>,
    /// The place of the snapshot the read started from, if any.
    pub snapshot: Option<u64>,
    /// How many events this read applied.
    pub applied: u64,
}

impl EntityState {
    /// Whether the event at `seq` counts in this state.
    pub fn counts(&self, seq: u64) -> bool {
        seq <= self.through && self.skipped.binary_search(&seq).is_err()
    }
}

/// The projectors of a host, by entity type, over its store. Cheap to clone: clones share
/// the projectors, so a version swapped in (`projection/versions.rs`) folds every read that
/// starts after it, while a read under way finishes on the version it started with.
#[derive(Clone)]
pub struct Projections {
    storage: Arc<dyn Storage>,
    /// Each entity type's projector, with its snapshot interval.
    slots: Arc<BTreeMap<String, Slot>>,
}

/// The projector an entity type is folded by now, and its snapshot interval.
#[derive(Debug)]
struct Slot {
    active: RwLock<Projector>,
    every: u64,
}

impl Slot {
    fn active(&self) -> Projector {
        self.active
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl std::fmt::Debug for Projections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projections")
            .field("projectors", &self.slots)
            .finish_non_exhaustive()
    }
}

/// A state on its way: the fold so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    /// The state, JSON.
    pub state: String,
    /// The events refused so far.
    pub refused: Vec<RefusedEvent>,
}

/// Folds `events` from `projector`'s initial state in one fresh instance, as a read folds a
/// stream: a refused event leaves the state as it was. Fixtures run through here.
///
/// # Errors
///
/// A [`Fault`] when the projector faults.
pub fn fold_all(
    projector: &Projector,
    events: impl IntoIterator<Item = FoldEvent>,
) -> Result<Folded, Fault> {
    let mut fold = projector.fold()?;
    let mut folded = Folded {
        state: fold.initial_state()?,
        refused: Vec::new(),
    };
    for event in events {
        step(&mut fold, &mut folded, &event)?;
    }
    Ok(folded)
}

/// Applies one event: the new state, or the refusal noted and the state kept.
fn step(
    fold: &mut crate::plugin::Fold,
    folded: &mut Folded,
    event: &FoldEvent,
) -> Result<(), Fault> {
    match fold.apply(&folded.state, event)? {
        Ok(state) => folded.state = state,
        Err(refusal) => folded.refused.push(RefusedEvent {
            seq: event.seq,
            code: refusal.code,
            message: refusal.message,
        }),
    }
    Ok(())
}

/// The event as a fold reads it.
pub(crate) fn fold_event(event: &EntityEvent) -> FoldEvent {
    FoldEvent {
        seq: event.seq,
        event_type: event.event.event_type.clone(),
        subject: event.event.subject.clone(),
        data: event.event.data.clone(),
        committed_at: event.committed_at.to_string(),
        occurred_at: event.occurred_at.map(|t| t.to_string()),
    }
}

/// The key snapshots of a projector version are kept under: name, version and hash.
fn snapshot_owner(id: &PluginRef) -> String {
    format!("{}@{}@{}", id.name, id.version, id.sha256)
}

impl Projections {
    /// The projectors, one per entity type (the one it names), over `storage`, each with a
    /// snapshot every so many events (at least 1).
    pub fn new(storage: Arc<dyn Storage>, projectors: Vec<(Projector, u64)>) -> Self {
        let slots = projectors
            .into_iter()
            .map(|(p, every)| {
                let slot = Slot {
                    active: RwLock::new(p.clone()),
                    every: every.max(1),
                };
                (p.info().entity_type.clone(), slot)
            })
            .collect();
        Self {
            storage,
            slots: Arc::new(slots),
        }
    }

    /// The projector that folds an entity type now.
    pub fn projector(&self, entity_type: &str) -> Option<Projector> {
        self.slots.get(entity_type).map(Slot::active)
    }

    /// Every entity type's projector now, by entity type.
    pub fn projectors(&self) -> Vec<Projector> {
        self.slots.values().map(Slot::active).collect()
    }

    /// Makes `projector` fold its entity type from the next read on; the projector it
    /// replaces, or `None` when no `[projectors.TYPE]` table names its type (then nothing
    /// changes).
    pub(crate) fn swap(&self, projector: Projector) -> Option<Projector> {
        let slot = self.slots.get(&projector.info().entity_type)?;
        let mut active = slot
            .active
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(std::mem::replace(&mut *active, projector))
    }

    /// The store the streams are read from.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The state of `entity` at `at` (now when `None`) on the clock `basis`. Blocking: call
    /// it off the async runtime.
    ///
    /// # Errors
    ///
    /// [`ProjectionError::NoProjector`] for an entity type no projector folds,
    /// [`ProjectionError::UnknownEntity`] for an entity no event was ever about, a fault of
    /// the projector, or a storage error.
    // Long on purpose: one pass over the stream, whose state (the fold, the snapshot due,
    // whether everything so far counted) is shared by every step.
    pub fn state_at(
        &self,
        entity: &EntityRef,
        at: Option<Timestamp>,
        basis: Basis,
    ) -> Result<EntityState, ProjectionError> {
        let slot =
            self.slots
                .get(&entity.entity_type)
                .ok_or_else(|| ProjectionError::NoProjector {
                    entity_type: entity.entity_type.clone(),
                })?;
        // Taken once: the whole read folds with one version, whatever is swapped in meanwhile.
        let (projector, every) = (slot.active(), slot.every);
        let owner = snapshot_owner(projector.id());
        let bound = match (at, basis) {
            (None, _) => SnapshotBound::Latest,
            (Some(at), Basis::Committed) => SnapshotBound::CommittedBy(at),
            (Some(at), Basis::Occurred) => SnapshotBound::OccurredBy(at),
        };
        let snapshot = self.storage.entity_snapshot(entity, &owner, bound)?;
        let mut fold = projector.fold()?;
        let (mut folded, mut through, mut committed_at, mut occurred_until) = match &snapshot {
            Some(s) => (
                Folded {
                    state: s.state.clone(),
                    refused: s.refused.clone(),
                },
                s.seq,
                s.committed_at,
                s.occurred_until,
            ),
            None => (
                Folded {
                    state: fold.initial_state()?,
                    refused: Vec::new(),
                },
                0,
                Timestamp::MIN,
                Timestamp::MIN,
            ),
        };
        let mut skipped = Vec::new();
        let mut applied = 0;
        // A snapshot is a fold of a whole prefix of the stream: none is written once an
        // event has been left out.
        let mut prefix = true;
        let page = usize::try_from(every).unwrap_or(usize::MAX).min(1024);
        'pages: loop {
            let events = self.storage.entity_events(entity, through, page)?;
            if events.is_empty() {
                if through == 0 {
                    return Err(ProjectionError::UnknownEntity {
                        entity: entity.label(),
                    });
                }
                break;
            }
            for event in &events {
                let counts = match (at, basis) {
                    (None, _) => true,
                    (Some(at), Basis::Committed) => {
                        if event.committed_at > at {
                            break 'pages;
                        }
                        true
                    }
                    (Some(at), Basis::Occurred) => event.occurred_or_committed() <= at,
                };
                through = event.seq;
                if !counts {
                    skipped.push(event.seq);
                    prefix = false;
                    continue;
                }
                step(&mut fold, &mut folded, &fold_event(event))?;
                applied += 1;
                committed_at = committed_at.max(event.committed_at);
                occurred_until = occurred_until.max(event.occurred_or_committed());
                if prefix && event.seq % every == 0 {
                    let kept = Snapshot {
                        seq: event.seq,
                        committed_at,
                        occurred_until,
                        state: folded.state.clone(),
                        refused: folded.refused.clone(),
                    };
                    self.storage.put_entity_snapshot(entity, &owner, &kept)?;
                }
            }
            if events.len() < page {
                break;
            }
        }
        Ok(EntityState {
            entity: entity.clone(),
            projector: projector.id().clone(),
            state: folded.state,
            through,
            skipped,
            refused: folded.refused,
            snapshot: snapshot.map(|s| s.seq),
            applied,
        })
    }
}
