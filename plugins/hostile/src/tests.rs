//! The well-behaved parts of the hostile plugin, natively.

use flotilla_sdk::testing::{apply_json, query_json, reset};
use flotilla_sdk::{ApplyContext, CommandError, QueryContext};

use super::Hostile;

fn apply(json: &str) -> Result<String, CommandError> {
    apply_json::<Hostile>(&ApplyContext::default(), json)
}

#[test]
fn bounded_commands_finish() -> Result<(), CommandError> {
    reset();
    assert_eq!(apply(r#"{"recurse":{"depth":100}}"#)?, r#"{"depth":100}"#);
    assert_eq!(apply(r#"{"spin":{"iterations":7}}"#)?, r#"{"count":7}"#);
    assert_eq!(
        apply(r#"{"huge_output":{"bytes":3}}"#)?,
        r#"{"bytes":"xxx"}"#
    );
    Ok(())
}

#[test]
fn rejected_writes_are_discarded() -> Result<(), CommandError> {
    reset();
    assert_eq!(
        apply(r#"{"put":{"key":"k","value":"1"}}"#)?,
        r#"{"previous":null}"#
    );
    let out = apply(r#"{"write_then_reject":{"key":"k","value":"2"}}"#);
    assert!(matches!(out, Err(CommandError::Rejected(_))));
    let get = query_json::<Hostile>(&QueryContext::default(), r#"{"get":{"key":"k"}}"#)?;
    assert_eq!(get, r#""1""#);
    Ok(())
}
