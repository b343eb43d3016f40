//! Projector versions while the host runs: a projector pushed (or dropped into the watched
//! directory), activated by hand or rolled back, like a translator.
//!
//! A candidate is loaded against the projector contract, its name checked against the plugin
//! it was given as, and the fold fixtures it carries run (`fixtures/fold.rs`); one that fails
//! is refused with the reason and nothing changes. It is then kept in the registry, and when
//! a `[projectors.TYPE]` table names the entity type it folds, recorded as that type's active
//! projector (`projector:TYPE` in the registry, with its history for rollback and gc) and
//! swapped in. A read takes its type's projector once, so it folds wholly with one version;
//! snapshots are keyed by name, version and sha256, so a new version folds from the start
//! and never trusts another's snapshots.
//!
//! The caller orders changes (the plugin changes' lock) and runs this off the async runtime.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::Projections;
use crate::fixtures;
use crate::outcome::{Activated, CandidateRefused, Refold};
use crate::plugin::{Projector, Runtime};
use crate::registry::{Found, Registry, Selector, Serve, Version, plugin_stream, projector_slot};

/// What projector changes work with.
pub(crate) struct FoldVersions<'a> {
    /// Where versions are kept.
    pub(crate) registry: &'a Registry,
    /// What candidates load into.
    pub(crate) runtime: &'a Runtime,
    /// The projectors that fold reads.
    pub(crate) projections: &'a Projections,
    /// Now.
    pub(crate) now: Timestamp,
}

/// A projector candidate that passed every check.
struct Checked {
    projector: Projector,
    version: Version,
    fixtures: usize,
}

impl FoldVersions<'_> {
    /// Receives a projector (of plugin `expected`, when given): checks it, keeps it and
    /// serves it as `serve` says.
    pub(crate) fn push(&self, wasm: &[u8], expected: Option<&str>, serve: Serve) -> Activated {
        let checked = match self.check(wasm, expected) {
            Ok(checked) => checked,
            Err((name, reason)) => {
                let sha256 = crate::plugin::sha256_hex(wasm);
                return self.refused(expected.map_or(name, str::to_owned), sha256, reason);
            }
        };
        let new = match self.registry.keep(wasm, &checked.version) {
            Ok(new) => new,
            Err(e) => return Activated::registry_failed(&e),
        };
        let entity_type = &checked.projector.info().entity_type;
        self.audit(
            &plugin_stream(&checked.version.name),
            "plugin_received",
            json!({
                "version": checked.version.version, "sha256": checked.version.sha256,
                "fixtures": checked.fixtures, "new": new, "folds": entity_type,
                "active": self.projections.projector(entity_type).map(|p| p.id().sha256.clone()),
            }),
        );
        self.serve(checked, new, serve, "received")
    }

    /// Makes the kept version of projector `name` that `selector` names fold its type; `None`
    /// when no entity type is folded by a projector of that name.
    pub(crate) fn activate(
        &self,
        name: &str,
        selector: &Selector,
        serve: Serve,
    ) -> Option<Activated> {
        if self.folding(name).is_empty() {
            return None;
        }
        let version = match self.registry.find(name, selector) {
            Ok(Found::One(version)) => version,
            Ok(Found::None) => {
                let (name, selector) = (name.to_owned(), selector.to_string());
                return Some(Activated::UnknownVersion { name, selector });
            }
            Ok(Found::Ambiguous(versions)) => {
                let name = name.to_owned();
                return Some(Activated::Ambiguous { name, versions });
            }
            Err(e) => return Some(Activated::registry_failed(&e)),
        };
        Some(match self.kept(name, &version.sha256) {
            // The registry's record, with its first receipt.
            Ok(checked) => self.serve(Checked { version, ..checked }, false, serve, "by_hand"),
            Err(answer) => *answer,
        })
    }

    /// Takes each entity type folded by projector `name` back to the version that folded it
    /// before: every way back checked first, then all go back or none. `None` when no entity
    /// type is folded by a projector of that name.
    pub(crate) fn rollback(&self, name: &str) -> Option<Activated> {
        let types = self.folding(name);
        if types.is_empty() {
            return None;
        }
        let mut back = Vec::new();
        for entity_type in &types {
            let Some(previous) = self.registry.previous(&projector_slot(entity_type)) else {
                continue;
            };
            match self.kept(name, &previous) {
                Ok(checked) => back.push(checked),
                Err(answer) => return Some(*answer),
            }
        }
        let Some(last) = back.last() else {
            let name = name.to_owned();
            return Some(Activated::NothingToRollBack { name });
        };
        let version = last.version.clone();
        let slots: Vec<String> = back
            .iter()
            .map(|c| projector_slot(&c.projector.info().entity_type))
            .collect();
        let slots: Vec<&str> = slots.iter().map(String::as_str).collect();
        if let Err(e) = self.registry.roll_back_all(&slots) {
            return Some(Activated::registry_failed(&e));
        }
        let mut changed = Vec::new();
        for checked in back {
            changed.push(self.swapped(checked.projector, "rollback"));
        }
        Some(Activated::Folding {
            version,
            new: false,
            changed,
        })
    }

    /// The entity types folded now by a version of projector `name`.
    pub(crate) fn folding(&self, name: &str) -> Vec<String> {
        self.projections
            .projectors()
            .into_iter()
            .filter(|p| p.id().name == name)
            .map(|p| p.info().entity_type.clone())
            .collect()
    }

    /// The kept version `sha256` of projector `name`, loaded and checked as a pushed one is;
    /// else what to answer.
    fn kept(&self, name: &str, sha256: &str) -> Result<Checked, Box<Activated>> {
        let wasm = self
            .registry
            .component(sha256)
            .map_err(|e| Box::new(Activated::registry_failed(&e)))?;
        self.check(&wasm, Some(name)).map_err(|(_, reason)| {
            Box::new(self.refused(name.to_owned(), sha256.to_owned(), reason))
        })
    }

    /// Every check of a projector candidate: it loads as a projector, it is the plugin it
    /// was given as, and the fold fixtures it carries pass. On failure, the name it gives
    /// itself (or the one asked for) and why.
    fn check(
        &self,
        wasm: &[u8],
        expected: Option<&str>,
    ) -> Result<Checked, (String, CandidateRefused)> {
        let sha256 = crate::plugin::sha256_hex(wasm);
        let what = format!("candidate {}", &sha256[..12]);
        let unnamed = expected.unwrap_or("unknown").to_owned();
        let projector = self
            .runtime
            .load_projector(wasm, &what)
            .map_err(|e| (unnamed, e.into()))?;
        let name = projector.info().name.clone();
        let refused = |reason| (name.clone(), reason);
        if let Some(expected) = expected.filter(|e| *e != name) {
            return Err(refused(CandidateRefused::OtherPlugin {
                expected: expected.to_owned(),
                found: name.clone(),
            }));
        }
        let fixtures = fixtures::check_carried(wasm, |f| fixtures::fold::run(&projector, f))
            .map_err(refused)?;
        let version = Version::of_projector(&projector, wasm, self.now);
        Ok(Checked {
            projector,
            version,
            fixtures,
        })
    }

    /// Serves a checked version as `serve` says; `new` when the registry received it now.
    fn serve(&self, checked: Checked, new: bool, serve: Serve, how: &str) -> Activated {
        let entity_type = checked.projector.info().entity_type.clone();
        let Some(active) = self.projections.projector(&entity_type) else {
            // No table names its entity type: kept, for a config that will.
            let version = checked.version;
            return Activated::Kept { version, new };
        };
        match serve {
            Serve::Keep => {
                return Activated::Kept {
                    version: checked.version,
                    new,
                };
            }
            Serve::Canary(_) | Serve::Shadow => {
                return Activated::NotForProjectors {
                    name: checked.version.name,
                    asked: if serve == Serve::Shadow {
                        "shadow"
                    } else {
                        "canary"
                    },
                };
            }
            Serve::Activate => {}
        }
        let version = checked.version.clone();
        let mut changed = Vec::new();
        if active.id().sha256 != version.sha256 {
            // Recorded before it folds: a restart folds with what the registry says.
            let slot = projector_slot(&entity_type);
            if let Err(e) = self.registry.set_active_all(&[&slot], &version.sha256) {
                return Activated::registry_failed(&e);
            }
            changed.push(self.swapped(checked.projector, how));
        }
        Activated::Folding {
            version,
            new,
            changed,
        }
    }

    /// Swaps `projector` in for its entity type; audits and logs the change.
    fn swapped(&self, projector: Projector, how: &str) -> Refold {
        let entity_type = projector.info().entity_type.clone();
        let to = projector.id().clone();
        let from = self
            .projections
            .swap(projector)
            .map_or_else(|| to.clone(), |p| p.id().clone());
        self.audit(
            &projector_slot(&entity_type),
            "projector_activated",
            json!({
                "from": from.to_string(), "from_sha256": from.sha256,
                "to": to.to_string(), "to_sha256": to.sha256, "how": how,
            }),
        );
        tracing::warn!(
            entity_type,
            from = %from,
            to = %to,
            how,
            "projector activated"
        );
        Refold {
            entity_type,
            from,
            to,
        }
    }

    /// Audits and logs a refusal, and answers it.
    fn refused(&self, name: String, sha256: String, reason: CandidateRefused) -> Activated {
        self.audit(
            &plugin_stream(&name),
            "plugin_refused",
            json!({"sha256": sha256, "code": reason.code(), "reason": reason.to_string()}),
        );
        tracing::warn!(plugin = name, sha256, code = reason.code(), %reason, "projector refused");
        Activated::Refused {
            name,
            sha256,
            reason,
        }
    }

    /// Appends one audit event now; a failure is logged (the change itself stands).
    fn audit(&self, stream: &str, kind: &str, data: Value) {
        let storage = &**self.projections.storage();
        crate::audit::record(storage, stream, self.now, kind, data);
    }
}
