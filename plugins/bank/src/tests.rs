//! Bank logic against the SDK's native host twin.

use flotilla_sdk::testing::{apply_json, query_json, reset};
use flotilla_sdk::{ApplyContext, CommandError, QueryContext};

use super::Bank;

fn apply(json: &str) -> Result<String, CommandError> {
    apply_json::<Bank>(&ApplyContext::default(), json)
}

fn query(json: &str) -> Result<String, CommandError> {
    query_json::<Bank>(&QueryContext::default(), json)
}

fn rejected(out: Result<String, CommandError>, needle: &str) {
    match out {
        Err(CommandError::Rejected(m)) if m.contains(needle) => {}
        other => panic!("expected a rejection containing {needle:?}, got {other:?}"),
    }
}

#[test]
fn transfers_conserve_money() -> Result<(), CommandError> {
    reset();
    apply(r#"{"open":{"account":"alice","initial":100}}"#)?;
    apply(r#"{"open":{"account":"bob"}}"#)?;
    let out = apply(r#"{"transfer":{"from":"alice","to":"bob","amount":30}}"#)?;
    assert_eq!(
        out,
        r#"[{"account":"alice","balance":70},{"account":"bob","balance":30}]"#
    );
    assert_eq!(query(r#"{"total":{}}"#)?, r#"{"total":100}"#);
    assert_eq!(
        query(r#"{"balance":{"account":"bob"}}"#)?,
        r#"{"balance":30}"#
    );
    assert_eq!(
        query(r#"{"list":{}}"#)?,
        r#"{"list":[{"account":"alice","balance":70},{"account":"bob","balance":30}]}"#
    );
    Ok(())
}

#[test]
fn refusals_leave_state_unchanged() -> Result<(), CommandError> {
    reset();
    apply(r#"{"open":{"account":"a","initial":10}}"#)?;
    apply(r#"{"open":{"account":"b","initial":18446744073709551615}}"#)?;
    rejected(apply(r#"{"open":{"account":"a"}}"#), "already exists");
    rejected(
        apply(r#"{"withdraw":{"account":"a","amount":11}}"#),
        "insufficient",
    );
    rejected(
        apply(r#"{"deposit":{"account":"zed","amount":1}}"#),
        "unknown account",
    );
    rejected(
        apply(r#"{"transfer":{"from":"a","to":"zed","amount":1}}"#),
        "unknown account",
    );
    // The debit succeeds before the credit overflows: the whole command must roll back.
    rejected(
        apply(r#"{"transfer":{"from":"a","to":"b","amount":5}}"#),
        "overflow",
    );
    rejected(
        apply(r#"{"transfer":{"from":"a","to":"a","amount":1}}"#),
        "itself",
    );
    assert_eq!(
        query(r#"{"balance":{"account":"a"}}"#)?,
        r#"{"balance":10}"#
    );
    assert_eq!(
        query(r#"{"total":{}}"#)?,
        r#"{"total":18446744073709551625}"#
    );
    Ok(())
}
