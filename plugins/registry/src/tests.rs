//! Lease logic against the SDK's native host twin.

use flotilla_sdk::testing::{apply_json, dump_kv, query_json, reset};
use flotilla_sdk::{ApplyContext, CommandError, QueryContext};

use super::Registry;

fn at(ms: u64) -> ApplyContext {
    ApplyContext {
        timestamp_ms: ms,
        ..ApplyContext::default()
    }
}

fn list(ms: u64) -> Result<String, CommandError> {
    let ctx = QueryContext {
        applied_timestamp_ms: ms,
        ..QueryContext::default()
    };
    query_json::<Registry>(&ctx, r#"{"list":{"service":"api"}}"#)
}

fn register(ms: u64, instance: &str, ttl: u64) -> Result<String, CommandError> {
    let cmd = format!(
        r#"{{"register":{{"service":"api","instance":"{instance}","address":"{instance}:80","ttl_ms":{ttl}}}}}"#
    );
    apply_json::<Registry>(&at(ms), &cmd)
}

#[test]
fn leases_expire_by_entry_time() -> Result<(), CommandError> {
    reset();
    let out = register(1000, "a", 100)?;
    assert_eq!(
        out,
        r#"{"service":"api","instance":"a","address":"a:80","ttl_ms":100,"expires_at_ms":1100}"#
    );
    register(1000, "b", 500)?;
    assert!(list(1099)?.contains(r#""instance":"a""#));
    let later = list(1100)?;
    assert!(!later.contains(r#""instance":"a""#) && later.contains(r#""instance":"b""#));
    Ok(())
}

#[test]
fn heartbeat_renews_and_expired_instances_are_gone() -> Result<(), CommandError> {
    reset();
    register(0, "a", 100)?;
    let hb = r#"{"heartbeat":{"service":"api","instance":"a"}}"#;
    assert!(apply_json::<Registry>(&at(90), hb)?.contains(r#""expires_at_ms":190"#));
    assert!(list(150)?.contains(r#""instance":"a""#));
    let late = apply_json::<Registry>(&at(190), hb);
    assert!(matches!(late, Err(CommandError::Rejected(_))), "{late:?}");
    Ok(())
}

#[test]
fn apply_collects_expired_leases() -> Result<(), CommandError> {
    reset();
    for i in 0..10 {
        register(0, &format!("old{i}"), 10)?;
    }
    register(0, "keep", 1000)?;
    assert_eq!(dump_kv().len(), 22);
    register(50, "new", 1000)?;
    assert_eq!(dump_kv().len(), 4);
    let dereg = r#"{"deregister":{"service":"api","instance":"keep"}}"#;
    apply_json::<Registry>(&at(60), dereg)?;
    assert_eq!(dump_kv().len(), 2);
    Ok(())
}

#[test]
fn bad_names_and_ttls_are_rejected() {
    reset();
    assert!(register(0, "", 10).is_err());
    assert!(register(0, "x", 0).is_err());
    assert!(dump_kv().is_empty());
}
