//! Counter logic against the SDK's native host twin.

use flotilla_sdk::testing::{apply_json, query_json, reset};
use flotilla_sdk::{ApplyContext, CommandError, QueryContext};

use super::Counter;

fn add(delta: i64) -> Result<String, CommandError> {
    apply_json::<Counter>(
        &ApplyContext::default(),
        &format!(r#"{{"add":{{"delta":{delta}}}}}"#),
    )
}

fn get() -> Result<String, CommandError> {
    query_json::<Counter>(&QueryContext::default(), r#"{"get":{}}"#)
}

#[test]
fn adds_resets_and_reads() -> Result<(), CommandError> {
    reset();
    assert_eq!(get()?, "0");
    assert_eq!(add(5)?, "5");
    assert_eq!(add(-7)?, "-2");
    assert_eq!(
        apply_json::<Counter>(&ApplyContext::default(), r#"{"reset":{}}"#)?,
        "-2"
    );
    assert_eq!(get()?, "0");
    Ok(())
}

#[test]
fn overflow_is_rejected_and_changes_nothing() -> Result<(), CommandError> {
    reset();
    add(i64::MAX)?;
    assert!(matches!(add(1), Err(CommandError::Rejected(m)) if m.starts_with("overflow")));
    assert_eq!(get()?, i64::MAX.to_string());
    Ok(())
}

#[test]
fn garbage_is_invalid() {
    reset();
    let out = apply_json::<Counter>(&ApplyContext::default(), r#"{"mul":{"by":2}}"#);
    assert!(matches!(out, Err(CommandError::Invalid(_))));
}
