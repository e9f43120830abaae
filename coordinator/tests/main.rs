//! Coordinator integration tests: one binary (one link step), one module per topic.

mod api;
mod binary;
mod concurrency;
mod corrupt_records;
mod store_contract;
mod support;
