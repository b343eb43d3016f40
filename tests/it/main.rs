//! The integration tests: one binary, one module per area.

// Contract fixtures of every Rust plugin, through the real runtime.
mod fixtures;
// Misbehaving guests are contained, each with its typed fault, and the runtime keeps serving.
mod sandbox;
// The on-disk cache of compiled components.
mod cache;
// The `dragoman` command line, as a user runs it.
mod cli;
// Durable ingest over HTTP: duplicates, answers, bad input.
mod ingest;
// The dead letter channel, replay and the audit trail.
mod dlq;
// The outbox relay: order, dead-lettered deliveries, NATS JetStream.
mod relay;
// SIGKILL under load, restart on the same data directory.
mod crash;
// The storage conformance suite every backend must pass.
mod storage;
// Hosts on a PostgreSQL store: readiness and ingest while the database is away.
mod postgres;
// Three replicas on one PostgreSQL database, one of them killed twice.
mod replicas;
// Request decoding over fuzzed inputs (the stable twin of the cargo-fuzz target).
mod decoding;
// Signed checkpoints of every chain head, and a chain rewritten under them.
mod checkpoints;
// Retention and archival of the audit trail.
mod retention;
// Operating a host: token, health, topology, metrics, state at an instant, config errors.
mod operations;
// The Python translator on the same contract.
mod python;
// The JavaScript translator on the same contract.
mod javascript;
// `dragoman plugin new` in each language: generate, build, test.
mod scaffold;
// The embed example: an axum service with Dragoman inside, driven through both doors.
mod embed;
// The door: bounded connections, timeouts, saturation.
mod door;
// Outbound commands through the vendor's breaker, degradation, a sink down for an hour.
mod commands;
// Hot swap of a route's plugin while messages flow.
mod swap;
// Entity streams: every committed event in the stream of the entity it is about.
mod entities;
// Several vendors into one domain, and an order's state at any instant from a sandboxed fold.
mod domain;
// Projector versions pushed, refused, rolled back and kept while entity reads run.
mod projectors;
// Routes that take their messages from a NATS JetStream stream.
mod source;
// The operator's console, driven in headless Chromium.
mod console;
