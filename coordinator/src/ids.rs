//! Typed identifiers: parsed once where they enter (a request, a header), then written into
//! keys and records one way. A record field of one of these types that does not parse makes the
//! record corrupt.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{CoordinatorError as E, Result};
use crate::repository::{hex, KeyPart};

/// A product's number, written `{:010}` in keys so they sort numerically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProductId(pub u32);

impl KeyPart for ProductId {
    fn write_key(&self, out: &mut String) {
        out.push_str(&format!("{:010}", self.0));
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Ids made by the coordinator or an operator: 1–128 letters, digits, `-` and `_` (so an id
/// never reaches into another key).
macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses an id given by a caller.
            pub fn parse(text: &str) -> Result<Self> {
                if text.is_empty() {
                    return Err(E::InvalidArgument(format!("{} is required", $what)));
                }
                if !valid_text_id(text) {
                    return Err(E::InvalidArgument(format!(
                        "{} is 1-128 characters of letters, digits, '-' and '_'",
                        $what
                    )));
                }
                Ok(Self(text.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                if !valid_text_id(&text) {
                    return Err(serde::de::Error::custom(format!("{text:?} is not {}", $what)));
                }
                Ok(Self(text))
            }
        }

        impl KeyPart for $name {
            fn write_key(&self, out: &mut String) {
                out.push_str(&self.0);
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn valid_text_id(text: &str) -> bool {
    (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

text_id!(
    /// An order (`ord-…` when the coordinator picks it).
    OrderId,
    "an order id"
);
text_id!(
    /// A lease (`lease-…`).
    LeaseId,
    "a lease id"
);
text_id!(
    /// An update campaign (`upd-…`).
    CampaignId,
    "an update campaign id"
);
text_id!(
    /// A field verification's challenge (`ver-…`).
    VerificationId,
    "a verification id"
);

/// Random ids: a prefix and 24 hex characters.
pub(crate) fn random_text_id(prefix: &str) -> String {
    use rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 12];
    OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", ::hex::encode(bytes))
}

impl OrderId {
    /// A fresh random order id (`ord-` and 24 hex characters).
    pub fn random() -> Self {
        Self(random_text_id("ord-"))
    }
}

impl LeaseId {
    /// A fresh random lease id (`lease-` and 24 hex characters).
    pub fn random() -> Self {
        Self(random_text_id("lease-"))
    }
}

impl CampaignId {
    /// A fresh random campaign id (`upd-` and 24 hex characters).
    pub fn random() -> Self {
        Self(random_text_id("upd-"))
    }
}

impl VerificationId {
    /// A fresh random verification id (`ver-` and 24 hex characters).
    pub fn random() -> Self {
        Self(random_text_id("ver-"))
    }
}

/// A station's fingerprint: 32 lowercase hex characters
/// (`flashgate_proto::station_auth::fingerprint`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StationId(String);

fn valid_fingerprint(text: &str) -> bool {
    text.len() == 32
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl StationId {
    /// Parses a fingerprint given by a caller: 32 lowercase hex characters.
    pub fn parse(text: &str) -> Result<Self> {
        if !valid_fingerprint(text) {
            return Err(E::InvalidArgument(format!(
                "station id {text:?} is not a fingerprint (32 lowercase hex characters)"
            )));
        }
        Ok(Self(text.to_owned()))
    }

    /// The fingerprint as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for StationId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if !valid_fingerprint(&text) {
            return Err(serde::de::Error::custom(format!(
                "{text:?} is not a station fingerprint"
            )));
        }
        Ok(Self(text))
    }
}

impl KeyPart for StationId {
    fn write_key(&self, out: &mut String) {
        out.push_str(&self.0);
    }
}

impl fmt::Display for StationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Fixed-size byte ids, written as lowercase hex in keys and records.
macro_rules! byte_id {
    ($(#[$doc:meta])* $name:ident, $len:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// The id as lowercase hex.
            pub fn hex(&self) -> String {
                ::hex::encode(self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                hex::serialize(&self.0, s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                hex::deserialize(d).map(Self)
            }
        }

        impl KeyPart for $name {
            fn write_key(&self, out: &mut String) {
                out.push_str(&self.hex());
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.hex())
            }
        }
    };
}

byte_id!(
    /// A device: its 16-byte unique id (`flashgate_proto::serial`).
    Serial,
    16
);
byte_id!(
    /// A release: the SHA-256 of its signed image.
    Digest,
    32
);

impl Serial {
    /// Parses a serial sent on the wire.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        flashgate_proto::serial::from_bytes(bytes)
            .map(Self)
            .ok_or_else(|| {
                E::InvalidArgument(format!(
                    "a serial is the board's 16-byte unique id; got {} bytes",
                    bytes.len()
                ))
            })
    }
}

impl Digest {
    /// Parses a release digest sent on the wire.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        bytes.try_into().map(Self).map_err(|_| {
            E::InvalidArgument(format!(
                "a release digest is 32 bytes (SHA-256); got {}",
                bytes.len()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_what_could_reach_into_another_key() {
        assert!(OrderId::parse("ord-1_a").is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(129)] {
            assert!(OrderId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(StationId::parse(&"ab".repeat(16)).is_ok());
        assert!(StationId::parse(&"AB".repeat(16)).is_err());
        assert!(serde_json::from_str::<LeaseId>("\"../x\"").is_err());
    }

    #[test]
    fn byte_ids_are_hex_and_refuse_anything_else() {
        let serial = Serial([0xab; 16]);
        let json = serde_json::to_string(&serial).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(16)));
        assert_eq!(serde_json::from_str::<Serial>(&json).unwrap(), serial);
        assert!(serde_json::from_str::<Serial>("\"zz\"").is_err());
        assert!(serde_json::from_str::<Serial>("\"abab\"").is_err());
        assert!(Digest::parse(&[0; 31]).is_err());
        let mut key = String::new();
        (ProductId(7), serial).write_key(&mut key);
        assert_eq!(key, format!("0000000007/{}", "ab".repeat(16)));
    }
}
