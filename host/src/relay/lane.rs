//! One sink's lane: reads the sink's partition keys that are due, delivers up to
//! `concurrency` of them at once (each a chain, in commit order), and sleeps until the next
//! key is due, a commit wakes it, or a chain ends. Lanes share nothing but the store, so one
//! sink's backlog or outage never holds up another's.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Relay;
use super::chain::Chain;

/// How many deliveries of one key a chain takes at a time; then the key goes back in line.
const PER_CHAIN: usize = 64;

pub(super) async fn run(relay: Arc<Relay>, sink: String, cancel: CancellationToken) {
    let (Some(target), Some(breaker)) = (
        relay.sinks.get(&sink).cloned(),
        relay.circuits.get(&sink).cloned(),
    ) else {
        return;
    };
    let mut wake = relay.wake.subscribe();
    // Keys being delivered, by the task delivering them.
    let mut busy: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut chains = JoinSet::new();
    loop {
        let room = relay.config.concurrency.saturating_sub(chains.len());
        let mut next_at = None;
        // While the circuit is open nothing is read and nothing is tried: the sink's events
        // wait in the outbox, their attempts unspent, until the next probe may go.
        let refusing = breaker.refusing_for();
        if room > 0 && refusing.is_none() {
            let keys: BTreeSet<String> = busy.values().cloned().collect();
            let (storage, name, now) = (relay.storage.clone(), sink.clone(), relay.clock.now());
            let due = tokio::task::spawn_blocking(move || {
                storage.due(&name, now, &keys, room, PER_CHAIN)
            })
            .await;
            match due {
                Ok(Ok(due)) => {
                    next_at = due.next_at;
                    for chain in due.chains {
                        let (relay, target, breaker, name, cancel) = (
                            relay.clone(),
                            target.clone(),
                            breaker.clone(),
                            sink.clone(),
                            cancel.clone(),
                        );
                        let task = chains.spawn(async move {
                            Chain::new(&relay, &name, target, &breaker)
                                .run(chain.deliveries, &cancel)
                                .await;
                        });
                        busy.insert(task.id(), chain.partition_key);
                    }
                }
                Ok(Err(e)) => tracing::error!(sink, error = %e, "reading due deliveries failed"),
                Err(e) => tracing::error!(sink, error = %e, "the read task failed"),
            }
        }
        let wait = match refusing {
            Some(wait) => wait.clamp(Duration::from_millis(1), relay.config.poll_interval),
            None => relay.wait(next_at),
        };
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(done) = chains.join_next_with_id(), if !chains.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => {
                        tracing::error!(sink, error = %e, "a delivery task failed");
                        e.id()
                    }
                };
                busy.remove(&id);
            }
            _ = wake.changed() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    // Deliveries in progress finish; chains stop between deliveries once cancelled.
    while chains.join_next().await.is_some() {}
}
