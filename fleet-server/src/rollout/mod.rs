//! Staged rollouts. Pure decisions: which devices each stage takes and whether it advances
//! (`decide`), each gate's check (`gates`), the legal state transitions (`states`), which
//! selected devices can run a model's runtime ABI (`compat`). In the
//! database: the operator's request (`request`), the rows (`records`), a rollout's life
//! (`lifecycle`), what devices are told and what their reports change (`devices`), and the API's
//! view (`view`). The driver that applies decisions (`engine`).

pub mod compat;
pub mod decide;
pub mod devices;
pub mod engine;
pub mod error;
pub mod gates;
pub mod lifecycle;
pub mod records;
pub mod request;
pub mod states;
pub mod view;

pub use error::Error;
