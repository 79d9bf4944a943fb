//! Serde codecs for the shared id types, which carry no serde derives of their own:
//! node, group and peer ids travel as plain JSON numbers and plugin digests as 64
//! lower-case hex characters (an optional `sha256:` prefix is accepted on input). Used
//! with `#[serde(with = "...")]` on the fields of the meta records, commands and outputs.

use serde::{Deserialize, Deserializer, Serializer};

use crate::ids::{GroupId, NodeId, PeerId, PluginDigest};

/// An id that is a plain `u64` on the wire.
pub trait U64Id: Copy {
    fn to_u64(self) -> u64;
    fn from_u64(value: u64) -> Self;
}

impl U64Id for NodeId {
    fn to_u64(self) -> u64 {
        self.0
    }
    fn from_u64(value: u64) -> Self {
        Self(value)
    }
}

impl U64Id for GroupId {
    fn to_u64(self) -> u64 {
        self.0
    }
    fn from_u64(value: u64) -> Self {
        Self(value)
    }
}

impl U64Id for PeerId {
    fn to_u64(self) -> u64 {
        self.0
    }
    fn from_u64(value: u64) -> Self {
        Self(value)
    }
}

/// One id as a number.
pub mod id {
    use super::*;

    pub fn serialize<T: U64Id, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(value.to_u64())
    }

    pub fn deserialize<'de, T: U64Id, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        u64::deserialize(d).map(T::from_u64)
    }
}

/// An optional id as a number or `null`.
pub mod opt_id {
    use super::*;

    pub fn serialize<T: U64Id, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_some(&v.to_u64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: U64Id, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
        Option::<u64>::deserialize(d).map(|v| v.map(T::from_u64))
    }
}

/// A list of ids as an array of numbers.
pub mod id_vec {
    use super::*;

    pub fn serialize<T: U64Id, S: Serializer>(value: &[T], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(value.iter().map(|v| v.to_u64()))
    }

    pub fn deserialize<'de, T: U64Id, D: Deserializer<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        Vec::<u64>::deserialize(d).map(|v| v.into_iter().map(T::from_u64).collect())
    }
}

/// A plugin digest as hex.
pub mod digest {
    use super::*;

    pub fn serialize<S: Serializer>(value: &PluginDigest, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PluginDigest, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "'{text}' is not a plugin digest (expected 64 hex characters, optionally after 'sha256:')"
            ))
        })
    }

    /// Parses `sha256:<hex>` or bare `<hex>`.
    pub fn parse(text: &str) -> Option<PluginDigest> {
        PluginDigest::from_hex(text.strip_prefix("sha256:").unwrap_or(text))
    }
}
