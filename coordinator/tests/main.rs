//! Coordinator integration tests: one binary (one link step), one module per topic.

mod api;
mod concurrency;
mod store_contract;
mod support;
