//! Store logic against the SDK's native host twin.

use flotilla_sdk::testing::{apply_json, query_json, reset};
use flotilla_sdk::{ApplyContext, CommandError, QueryContext, decode, encode_binary};

use super::{Command, Kv, Pair, Query, QueryOutput};

fn apply(json: &str) -> Result<String, CommandError> {
    apply_json::<Kv>(&ApplyContext::default(), json)
}

fn query(json: &str) -> Result<String, CommandError> {
    query_json::<Kv>(&QueryContext::default(), json)
}

#[test]
fn put_get_delete_return_previous_values() -> Result<(), CommandError> {
    reset();
    assert_eq!(apply(r#"{"put":{"key":"a","value":"1"}}"#)?, "null");
    assert_eq!(apply(r#"{"put":{"key":"a","value":"2"}}"#)?, r#""1""#);
    assert_eq!(query(r#"{"get":{"key":"a"}}"#)?, r#"{"value":"2"}"#);
    assert_eq!(apply(r#"{"delete":{"key":"a"}}"#)?, r#""2""#);
    assert_eq!(query(r#"{"get":{"key":"a"}}"#)?, r#"{"value":null}"#);
    Ok(())
}

#[test]
fn set_writes_without_reading_the_previous_value() -> Result<(), CommandError> {
    reset();
    assert_eq!(apply(r#"{"set":{"key":"a","value":"1"}}"#)?, "null");
    assert_eq!(apply(r#"{"set":{"key":"a","value":"2"}}"#)?, "null");
    assert_eq!(query(r#"{"get":{"key":"a"}}"#)?, r#"{"value":"2"}"#);
    // A stored value that is not UTF-8 makes every command that reads it fail; `set`
    // replaces it, which shows it did not read it.
    flotilla_sdk::kv::put(b"raw", &[0xff, 0xfe]);
    let put = apply(r#"{"put":{"key":"raw","value":"x"}}"#);
    assert!(matches!(put, Err(CommandError::Rejected(_))), "{put:?}");
    assert_eq!(apply(r#"{"set":{"key":"raw","value":"x"}}"#)?, "null");
    assert_eq!(query(r#"{"get":{"key":"raw"}}"#)?, r#"{"value":"x"}"#);
    Ok(())
}

#[test]
fn binary_codec_keeps_the_variant_numbers_of_older_commands() -> Result<(), CommandError> {
    // Entries already in a log were encoded before `set` existed: put, delete and cas
    // must keep their postcard variant numbers 0, 1 and 2.
    let put = Command::Put {
        key: "k".into(),
        value: "v".into(),
    };
    let delete = Command::Delete { key: "k".into() };
    let cas = Command::Cas {
        key: "k".into(),
        expected: None,
        new: None,
    };
    let set = Command::Set {
        key: "k".into(),
        value: "v".into(),
    };
    for (cmd, variant) in [(put, 0u8), (delete, 1), (cas, 2), (set, 3)] {
        let bytes = encode_binary(&cmd).map_err(inv)?;
        assert_eq!(bytes.get(1), Some(&variant), "{cmd:?}");
    }
    Ok(())
}

#[test]
fn cas_checks_the_current_value() -> Result<(), CommandError> {
    reset();
    assert_eq!(apply(r#"{"cas":{"key":"k","new":"1"}}"#)?, "null");
    let miss = apply(r#"{"cas":{"key":"k","expected":"0","new":"2"}}"#);
    let Err(CommandError::Rejected(msg)) = miss else {
        panic!("expected a rejection, got {miss:?}");
    };
    assert!(msg.contains(r#"current value is "1""#), "{msg}");
    assert_eq!(apply(r#"{"cas":{"key":"k","expected":"1"}}"#)?, r#""1""#);
    assert_eq!(query(r#"{"get":{"key":"k"}}"#)?, r#"{"value":null}"#);
    Ok(())
}

#[test]
fn scan_pages_through_the_host_cap() -> Result<(), CommandError> {
    reset();
    for i in 0..300 {
        apply(&format!(r#"{{"put":{{"key":"k{i:03}","value":"{i}"}}}}"#))?;
    }
    let all: QueryOutput = decode(query(r#"{"scan":{}}"#)?.as_bytes()).map_err(inv)?;
    let QueryOutput::Pairs(all) = all else {
        panic!("not pairs")
    };
    assert_eq!(all.len(), 300);
    let some = query(r#"{"scan":{"start":"k010","end":"k012","limit":5}}"#)?;
    assert_eq!(
        some,
        r#"{"pairs":[{"key":"k010","value":"10"},{"key":"k011","value":"11"}]}"#
    );
    Ok(())
}

#[test]
fn binary_codec_round_trips() -> Result<(), CommandError> {
    reset();
    let cmd = encode_binary(&Command::Put {
        key: "b".into(),
        value: "v".into(),
    })
    .map_err(inv)?;
    let out = flotilla_sdk::testing::apply::<Kv>(&ApplyContext::default(), &cmd)?;
    assert_eq!(decode::<Option<String>>(&out).map_err(inv)?, None);
    let q = encode_binary(&Query::Scan {
        start: String::new(),
        end: None,
        limit: None,
    })
    .map_err(inv)?;
    let out = flotilla_sdk::testing::query::<Kv>(&QueryContext::default(), &q)?;
    let pair = Pair {
        key: "b".into(),
        value: "v".into(),
    };
    assert_eq!(
        decode::<QueryOutput>(&out).map_err(inv)?,
        QueryOutput::Pairs(vec![pair])
    );
    Ok(())
}

fn inv(e: flotilla_sdk::CodecError) -> CommandError {
    CommandError::Invalid(e.to_string())
}
