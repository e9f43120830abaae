//! What the coordinator stores, as JSON values under these keys:
//!
//! | key | value |
//! | --- | --- |
//! | `products/{product_id:010}` | [`ProductRecord`] |
//! | `releases/{digest}` / `images/{digest}` | [`ReleaseRecord`] / raw signed image |
//! | `orders/{order_id}` | [`OrderRecord`] (immutable) |
//! | `quota/{order_id}` | [`QuotaRecord`]: slots neither consumed nor leased |
//! | `leases/{lease_id}` | [`LeaseRecord`] |
//! | `stations/{station_id}` | [`StationRecord`] |
//! | `devices/{product_id:010}/{serial}` | [`DeviceRecord`] (device key sealed under the KEK) |
//! | `failures/{order_id}/{lease_id}/{failed_at_ms:013}-{serial or "unknown"}` | [`FailureRecord`] (nothing registered, no slot consumed) |
//! | `nonces/{station_id}/{nonce}` | request timestamp (replay cache) |
//! | `leader` | [`LeaderRecord`] |

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{CoordinatorError, Result};

pub fn product_key(product_id: u32) -> String {
    format!("products/{product_id:010}")
}
pub fn release_key(digest_hex: &str) -> String {
    format!("releases/{digest_hex}")
}
pub fn image_key(digest_hex: &str) -> String {
    format!("images/{digest_hex}")
}
pub fn order_key(order_id: &str) -> String {
    format!("orders/{order_id}")
}
pub fn quota_key(order_id: &str) -> String {
    format!("quota/{order_id}")
}
pub fn lease_key(lease_id: &str) -> String {
    format!("leases/{lease_id}")
}
pub fn station_key(station_id: &str) -> String {
    format!("stations/{station_id}")
}
pub fn device_prefix(product_id: u32) -> String {
    format!("devices/{product_id:010}/")
}
pub fn device_key(product_id: u32, serial_hex: &str) -> String {
    format!("devices/{product_id:010}/{serial_hex}")
}
pub fn failure_prefix(order_id: &str) -> String {
    format!("failures/{order_id}/")
}
pub fn failure_key(order_id: &str, lease_id: &str, failed_at_ms: i64, serial_hex: &str) -> String {
    let serial = if serial_hex.is_empty() {
        "unknown"
    } else {
        serial_hex
    };
    format!("failures/{order_id}/{lease_id}/{failed_at_ms:013}-{serial}")
}
pub fn nonce_key(station_id: &str, nonce_hex: &str) -> String {
    format!("nonces/{station_id}/{nonce_hex}")
}
pub const LEADER_KEY: &str = "leader";

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| CoordinatorError::Internal(format!("stored record {key} is unreadable: {e}")))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProductRecord {
    pub product_id: u32,
    pub name: String,
    pub vendor_public_key: String,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReleaseRecord {
    pub digest: String,
    pub product_id: u32,
    pub kind: u16,
    pub version: u32,
    pub load_address: u32,
    pub body_size: u32,
    pub body_digest: String,
    pub vendor_signature: String,
    pub uploaded_at_ms: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order_id: String,
    pub product_id: u32,
    pub bootloader_digest: String,
    pub bootloader_version: u32,
    pub test_app_digest: String,
    pub station_ids: Vec<String>,
    pub factory: String,
    pub count: u64,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QuotaRecord {
    pub remaining: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StationState {
    Pending,
    Approved,
    Revoked,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StationRecord {
    pub station_id: String,
    pub ed25519_public_key: String,
    pub x25519_public_key: String,
    pub name: String,
    pub factory: String,
    pub state: StationState,
    pub enrolled_at_ms: i64,
    pub approved_at_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseState {
    Active,
    Returned,
    Expired,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub lease_id: String,
    pub station_id: String,
    pub order_id: String,
    pub product_id: u32,
    pub count: u32,
    pub used: u32,
    pub state: LeaseState,
    pub issued_at_ms: i64,
    pub not_after_ms: i64,
    /// The lease secret sealed under the KEK (hex).
    pub sealed_secret: String,
    /// Slots given back to the quota when the lease ended.
    pub released: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub serial: String,
    pub product_id: u32,
    pub order_id: String,
    pub lease_id: String,
    pub station_id: String,
    pub installed_at_ms: i64,
    pub registered_at_ms: i64,
    pub bootloader_version: u32,
    pub test_outcome: i32,
    pub test_log: String,
    pub outcome: i32,
    /// The device key sealed under the KEK, AAD = product id + serial (hex).
    pub sealed_device_key: String,
}

/// A target that failed under a lease: recorded for the order's yield, never registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub order_id: String,
    pub lease_id: String,
    pub station_id: String,
    pub product_id: u32,
    /// Hex; empty when the station never learnt it.
    pub serial: String,
    pub reason: String,
    pub failed_at_ms: i64,
    pub recorded_at_ms: i64,
    pub test_outcome: i32,
    pub test_log: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaderRecord {
    pub node_id: String,
    pub expires_at_ms: i64,
}
