//! Staged rollouts: pure decisions (`decide`), their state in the database (`state`), and the
//! driver that applies them (`engine`).

pub mod decide;
pub mod engine;
pub mod state;
