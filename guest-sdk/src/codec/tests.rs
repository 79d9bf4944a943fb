//! Round trips and failure messages of both codecs.

use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Command {
    Put {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    Reset {},
    Add {
        delta: i64,
    },
    Cas {
        key: String,
        expected: Option<String>,
    },
}

fn samples() -> Vec<Command> {
    vec![
        Command::Put {
            key: "a".into(),
            value: "b".into(),
        },
        Command::Delete { key: "k".into() },
        Command::Reset {},
        Command::Add { delta: -7 },
        Command::Cas {
            key: "x".into(),
            expected: None,
        },
    ]
}

#[test]
fn json_is_externally_tagged_snake_case() -> Result<(), CodecError> {
    let bytes = encode_json(&samples()[0])?;
    assert_eq!(bytes, br#"{"put":{"key":"a","value":"b"}}"#);
    assert_eq!(encode_json(&Command::Reset {})?, br#"{"reset":{}}"#);
    Ok(())
}

#[test]
fn both_codecs_round_trip() -> Result<(), CodecError> {
    for cmd in samples() {
        for codec in [Codec::Json, Codec::Binary] {
            let bytes = codec.encode(&cmd)?;
            assert_eq!(Codec::detect(&bytes), codec);
            assert_eq!(decode::<Command>(&bytes)?, cmd);
        }
    }
    Ok(())
}

#[test]
fn binary_starts_with_tag_and_is_compact() -> Result<(), CodecError> {
    let bytes = encode_binary(&Command::Add { delta: 1 })?;
    assert_eq!(bytes[0], BINARY_TAG);
    assert!(bytes.len() < encode_json(&Command::Add { delta: 1 })?.len());
    Ok(())
}

#[test]
fn json_accepts_omitted_options_and_whitespace() -> Result<(), CodecError> {
    let cmd: Command = decode(b" {\"cas\": {\"key\": \"x\"}}\n")?;
    assert_eq!(
        cmd,
        Command::Cas {
            key: "x".into(),
            expected: None
        }
    );
    Ok(())
}

#[test]
fn bad_json_reports_the_decoder_message() {
    let err = decode::<Command>(br#"{"frobnicate":{}}"#).err();
    let err = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.starts_with("JSON: unknown variant `frobnicate`"),
        "{err}"
    );
    let empty = decode::<Command>(b"").err().map(|e| e.codec());
    assert_eq!(empty, Some(Codec::Json));
}

#[test]
fn bad_binary_is_an_error_not_a_panic() -> Result<(), CodecError> {
    let err = decode::<Command>(&[BINARY_TAG, 0xff, 0xff]).err();
    assert_eq!(err.map(|e| e.codec()), Some(Codec::Binary));
    let mut trailing = encode_binary(&Command::Reset {})?;
    trailing.push(9);
    let err = decode::<Command>(&trailing).err().map(|e| e.to_string());
    assert_eq!(err.as_deref(), Some("binary: 1 trailing bytes"));
    assert!(decode::<Command>(&[BINARY_TAG]).is_err());
    Ok(())
}

#[test]
fn outputs_decode_like_commands() -> Result<(), CodecError> {
    let out: Option<String> = decode(&encode_binary(&Some("v"))?)?;
    assert_eq!(out.as_deref(), Some("v"));
    let out: Option<String> = decode(&encode_json(&None::<String>)?)?;
    assert_eq!(out, None);
    Ok(())
}
