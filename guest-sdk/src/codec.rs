//! The wire codecs for commands, queries and their outputs.
//!
//! A payload whose first byte is `0x00` uses the compact binary codec: the tag byte
//! followed by the value in [postcard](https://docs.rs/postcard) format. Anything else is
//! JSON. No JSON text starts with a NUL byte, so the two never collide. A plugin answers
//! in the codec the request used, so [`decode`] reads outputs as well as commands.
//!
//! These functions touch no host import: host-side Rust (CLI, benchmarks, tests) can
//! depend on `flotilla-sdk` natively to build commands and read outputs.
//!
//! Postcard is not self-describing, so types sent in both codecs must avoid
//! `#[serde(untagged)]`, `#[serde(tag = "...")]`, `#[serde(flatten)]` and
//! `skip_serializing_if`; externally tagged enums and plain structs work in both.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The first byte of a payload in the binary codec.
pub const BINARY_TAG: u8 = 0x00;

/// Which codec a payload uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// `serde_json`, for people and scripts.
    Json,
    /// `0x00` followed by postcard, for speed.
    Binary,
}

impl Codec {
    /// The codec of `bytes`, judged by its first byte.
    #[must_use]
    pub fn detect(bytes: &[u8]) -> Self {
        if bytes.first() == Some(&BINARY_TAG) {
            Self::Binary
        } else {
            Self::Json
        }
    }

    /// Encodes `value` in this codec.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, CodecError> {
        match self {
            Self::Json => serde_json::to_vec(value).map_err(|e| self.error(e)),
            Self::Binary => postcard::to_extend(value, vec![BINARY_TAG]).map_err(|e| self.error(e)),
        }
    }

    /// Decodes `bytes`, which must be in this codec (binary payloads include the tag).
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        match self {
            Self::Json => serde_json::from_slice(bytes).map_err(|e| self.error(e)),
            Self::Binary => {
                let body = bytes.strip_prefix(&[BINARY_TAG]).unwrap_or(bytes);
                let (value, rest) = postcard::take_from_bytes(body).map_err(|e| self.error(e))?;
                if rest.is_empty() {
                    Ok(value)
                } else {
                    Err(self.error(format_args!("{} trailing bytes", rest.len())))
                }
            }
        }
    }

    fn error(self, err: impl fmt::Display) -> CodecError {
        CodecError {
            codec: self,
            message: err.to_string(),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Json => "JSON",
            Self::Binary => "binary",
        })
    }
}

/// Encodes `value` as JSON.
pub fn encode_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Codec::Json.encode(value)
}

/// Encodes `value` in the binary codec (`0x00` + postcard).
pub fn encode_binary<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Codec::Binary.encode(value)
}

/// Decodes `bytes` in whichever codec its first byte names.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Codec::detect(bytes).decode(bytes)
}

/// A payload that could not be encoded or decoded; the message is the codec library's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError {
    codec: Codec,
    message: String,
}

impl CodecError {
    /// The codec that failed.
    #[must_use]
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The codec library's message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.codec, self.message)
    }
}

impl std::error::Error for CodecError {}

#[cfg(test)]
mod tests;
