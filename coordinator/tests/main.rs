//! Coordinator integration tests: one binary (one link step), one module per topic.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test binary: a panic is how it reports a failure"
)]

mod access;
mod api;
mod bad_input;
mod binary;
mod certificates;
mod concurrency;
mod corrupt_records;
mod device_gateway;
mod device_messages;
mod factory_packages;
mod hot_path;
mod rollouts;
mod store_contract;
mod support;
