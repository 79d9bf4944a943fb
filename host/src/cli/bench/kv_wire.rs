//! The `kv` plugin's put and get as the bench sends them, in either of the SDK's codecs:
//! JSON, or the compact binary codec (`0x00` and postcard), which is to the plugin what
//! protobuf is to etcd's KV API.
//!
//! Only the two messages the workloads need are written here, each serialized as the
//! variant of the plugin's enum it stands for: postcard numbers enum variants by
//! position, so the variant index must match `plugins/kv` (a test decodes both codecs
//! with the plugin's own types).

use flotilla_sdk::Codec;
use serde::Serialize;
use serde::ser::{SerializeStructVariant, Serializer};

/// `Command::Set`: the fourth variant of the plugin's `Command`.
const SET_VARIANT: u32 = 3;
/// `Query::Get`: the first variant of the plugin's `Query`.
const GET_VARIANT: u32 = 0;
/// `QueryOutput::Value`: the first variant of the plugin's `QueryOutput`.
const VALUE_VARIANT: u32 = 0;

/// A blind write of `value` to `key` (no previous value read or answered).
struct Set<'a> {
    key: &'a str,
    value: &'a str,
}

impl Serialize for Set<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = s.serialize_struct_variant("Command", SET_VARIANT, "set", 2)?;
        v.serialize_field("key", self.key)?;
        v.serialize_field("value", self.value)?;
        v.end()
    }
}

/// A read of `key`.
struct Get<'a> {
    key: &'a str,
}

impl Serialize for Get<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = s.serialize_struct_variant("Query", GET_VARIANT, "get", 1)?;
        v.serialize_field("key", self.key)?;
        v.end()
    }
}

/// The answer to a get of a key the plugin does not hold.
struct Missing;

impl Serialize for Missing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_variant("QueryOutput", VALUE_VARIANT, "value", &None::<String>)
    }
}

/// The encodings of one codec; [`KvWire::new`] checks that they encode at all.
#[derive(Debug, Clone)]
pub struct KvWire {
    codec: Codec,
    missing: Vec<u8>,
}

impl KvWire {
    pub fn new(codec: Codec) -> Result<Self, flotilla_sdk::CodecError> {
        Ok(Self {
            codec,
            missing: codec.encode(&Missing)?,
        })
    }

    /// The command that sets `key` to `value`.
    pub fn set(&self, key: &str, value: &str) -> Vec<u8> {
        self.encode(&Set { key, value })
    }

    /// The query that reads `key`.
    pub fn get(&self, key: &str) -> Vec<u8> {
        self.encode(&Get { key })
    }

    /// Whether `output` is the plugin's answer for a key it does not hold.
    pub fn is_missing(&self, output: &[u8]) -> bool {
        output == self.missing
    }

    fn encode(&self, message: &impl Serialize) -> Vec<u8> {
        // Strings and structs always encode in both codecs (checked by `new` and the
        // tests); an empty payload would come back as the plugin's decode error.
        self.codec.encode(message).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use flotilla_plugin_kv::{Command, Query, QueryOutput};

    use super::*;

    #[test]
    fn both_codecs_encode_what_the_kv_plugin_decodes() {
        for codec in [Codec::Json, Codec::Binary] {
            let wire = KvWire::new(codec).expect("encodes");
            let set: Command = codec.decode(&wire.set("k1", "v\"1")).expect("a set");
            assert_eq!(
                set,
                Command::Set {
                    key: "k1".into(),
                    value: "v\"1".into()
                },
                "{codec:?}"
            );
            let get: Query = codec.decode(&wire.get("k2")).expect("a get");
            assert_eq!(get, Query::Get { key: "k2".into() }, "{codec:?}");
            let absent = codec.encode(&QueryOutput::Value(None)).expect("encodes");
            assert!(wire.is_missing(&absent), "{codec:?}");
            let present = codec
                .encode(&QueryOutput::Value(Some(String::new())))
                .expect("encodes");
            assert!(!wire.is_missing(&present), "{codec:?}");
        }
    }

    #[test]
    fn json_is_what_people_would_type() {
        let wire = KvWire::new(Codec::Json).expect("encodes");
        assert_eq!(wire.set("a", "1"), br#"{"set":{"key":"a","value":"1"}}"#);
        assert_eq!(wire.get("a"), br#"{"get":{"key":"a"}}"#);
        assert!(wire.is_missing(br#"{"value":null}"#));
    }

    #[test]
    fn binary_starts_with_its_tag() {
        let wire = KvWire::new(Codec::Binary).expect("encodes");
        let set = wire.set("a", "1");
        assert_eq!(set.first(), Some(&flotilla_sdk::codec::BINARY_TAG));
        assert!(set.len() < br#"{"set":{"key":"a","value":"1"}}"#.len());
    }
}
