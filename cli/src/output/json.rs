//! The JSON printer: documents pretty-printed, streams one compact document per line.

use serde_json::Value;

/// One document, indented.
pub(super) fn document(value: &Value) {
    // Serialising a `Value` cannot fail (its map keys are strings).
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// One document on one line.
pub(super) fn line(value: &Value) {
    println!("{value}");
}
