//! The flashgate coordinator: turns a customer's order into signed, leased provisioning jobs
//! and keeps the count exact. See `docs/coordinator.md`.
//!
//! One flow, one folder:
//!
//! | flow | folder | what it holds |
//! | --- | --- | --- |
//! | catalogue | [`catalogue`] | products, vendor-signed releases, orders |
//! | provisioning | [`provisioning`] | stations and their signed requests, leases, the quota per order, the device registry, `StationService` |
//! | update | [`update`] | campaigns (an OS release encrypted once), per-device packages and receipts, `UpdateService` |
//! | data | [`data_stream`] | sealed telemetry records (gRPC and UDP), replay windows, `DataService` |
//! | field verification | [`genuineness`] | one-shot hello challenges, the verdict genuine / unregistered / clone suspected, clone evidence |
//! | housekeeping | [`housekeeping`] | lease expiry, the replay-cache sweep, leader election |
//!
//! Under the flows: [`repository`] (typed records over the store: key prefixes, typed
//! [`ids`], hex fields, the compare-and-swap retry), [`store`] (the `KvStore` interface, etcd
//! and embedded backends, their elections) and [`keys`] (the KEK ring). Beside them:
//! [`rpc`] (the one RPC wrapper: span, metrics, error mapping, operator token),
//! [`operator_api`] (`OperatorService`, spanning catalogue and provisioning), [`rotation`]
//! (KEK rewrap), [`server`], and [`coordinator`], which builds the flows over one store.
//!
//! To follow one board from lease to registry: `provisioning/service.rs` (`AcquireLease`) →
//! `provisioning/leases.rs` → `provisioning/registry.rs` (`ReportInstall`).

pub mod access;
pub mod audit;
pub mod catalogue;
pub mod config;
pub mod console;
pub mod coordinator;
pub mod data_stream;
pub mod device_gateway;
pub mod error;
pub mod genuineness;
pub mod housekeeping;
pub mod ids;
pub mod keys;
pub mod metrics;
pub mod operator_api;
pub mod provisioning;
pub mod repository;
pub mod rotation;
pub mod rpc;
pub mod server;
pub mod store;
pub mod testing;
pub mod tls;
pub mod update;

pub use config::CoordinatorConfig;
pub use coordinator::Coordinator;
pub use error::CoordinatorError;
