//! The fleet server: signed artifact store, device API (the `protocol` crate's CBOR messages
//! over HTTP), operator API (JSON). Rollouts, the dashboard and operations come next.
//!
//! # Invariants
//!
//! - The server never holds a signing key: bundles are verified against the fleet's trust root
//!   on upload, and devices verify them again.
//! - Device credentials are stored as SHA-256 hashes; an unknown credential is 401, and a
//!   device can fetch only the artifact assigned to it.
//! - Every report is stored once per (device, seq), so redelivery after a lost acknowledgement
//!   counts once.
//! - Nothing an unauthenticated client sends is read beyond a small bound: device bodies are
//!   read after their credential is checked and up to `body::MAX_DEVICE_BODY`, uploads after
//!   the operator's, JSON and form bodies within a few KiB; failed operator credentials are
//!   throttled (`throttle`).

pub mod api;
pub mod audit;
pub mod auth;
pub mod body;
pub mod checkins;
pub mod credentials;
pub mod db;
pub mod demo;
pub mod error;
pub mod log;
pub mod metrics;
pub mod rollout;
pub mod schema;
pub mod server;
pub mod store;
pub mod streams;
pub mod throttle;
pub mod tls;
pub mod waiters;

pub use api::{AppState, configure};
