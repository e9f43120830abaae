//! The one wall clock of the host programs (coordinator, station, CLI): unix time in
//! milliseconds, the unit every timestamp on the `flashgate.v1` wire uses.

/// Current unix time in milliseconds (0 if the system clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
