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
