//! Serde for prost enums (`v1::TestOutcome`, `v1::InstallOutcome`): stored as their number, as
//! every release so far has written them; an unknown number fails to decode (a corrupt record),
//! it is never read as "unspecified".
//!
//! `#[serde(with = "crate::repository::proto_enum")]`.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

/// Writes the enum as its protobuf number.
pub fn serialize<S: Serializer, T: Copy + Into<i32>>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i32((*value).into())
}

/// Reads a protobuf number; one the enum does not know is an error.
pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<i32>>(d: D) -> Result<T, D::Error> {
    let n = i32::deserialize(d)?;
    T::try_from(n).map_err(|_| D::Error::custom(format!("{n} is not a known value")))
}
