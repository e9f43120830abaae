//! The flashgate coordinator: turns a customer's order into signed, leased provisioning jobs
//! and keeps the count exact. See `docs/coordinator.md`.
#![forbid(unsafe_code)]

pub mod auth;
pub mod coordinator;
pub mod data_stream;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod quota;
pub mod records;
pub mod rotation;
pub mod server;
pub mod service;
pub mod store;
pub mod testing;
pub mod update;

pub use coordinator::{Coordinator, CoordinatorConfig};
pub use error::CoordinatorError;
