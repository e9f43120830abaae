//! Serde for byte fields: lowercase hex strings in the stored JSON (the format every release so
//! far has written). A stored string that is not hex, or has the wrong length, fails to decode:
//! the record is then reported corrupt, never read as empty bytes.
//!
//! `#[serde(with = "crate::repository::hex")]` on a `Vec<u8>` or `[u8; N]` field;
//! `#[serde(with = "crate::repository::hex::or_empty")]` on an `Option<T>` whose `T` is itself
//! written as a string (an empty string meaning none).

use serde::de::{Error as _, IntoDeserializer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Writes bytes as one lowercase hex string.
pub fn serialize<S: Serializer, T: AsRef<[u8]>>(bytes: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

/// Reads a hex string into `T`; wrong characters or a wrong length are an error.
pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<Vec<u8>>>(d: D) -> Result<T, D::Error> {
    let text = String::deserialize(d)?;
    decode(&text).map_err(D::Error::custom)
}

/// Decodes hex text into `T` (a `Vec<u8>` or a `[u8; N]`), saying what is wrong with it.
pub fn decode<T: TryFrom<Vec<u8>>>(text: &str) -> Result<T, String> {
    let bytes = hex::decode(text).map_err(|e| format!("{text:?} is not hex: {e}"))?;
    let len = bytes.len();
    T::try_from(bytes).map_err(|_| format!("{len} bytes is the wrong length"))
}

/// `Option<T>` written as `T`'s string form, or `""` for none.
pub mod or_empty {
    use super::*;

    /// Writes `Some(v)` as `v` does, `None` as `""`.
    pub fn serialize<S: Serializer, T: Serialize>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => v.serialize(s),
            None => s.serialize_str(""),
        }
    }

    /// Reads `""` as `None`, any other string as `T`.
    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        T::deserialize(text.into_deserializer()).map(Some)
    }
}

/// `Option<bytes>` as hex, or `""` for none.
pub mod optional {
    use super::*;

    /// Writes `Some(bytes)` as hex, `None` as `""`.
    pub fn serialize<S: Serializer, T: AsRef<[u8]>>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => super::serialize(bytes, s),
            None => s.serialize_str(""),
        }
    }

    /// Reads `""` as `None`, any other string as hex bytes of `T`'s length.
    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<Vec<u8>>,
    {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        decode(&text).map(Some).map_err(D::Error::custom)
    }
}
