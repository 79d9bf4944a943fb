//! The shape rules of names the meta state machine accepts from outside: node
//! addresses and plugin names.

use crate::placement::meta_types::*;

pub(super) fn check_addr(addr: &str) -> Result<(), MetaError> {
    let bad = |reason: &str| {
        Err(MetaError::BadAddress {
            addr: addr.into(),
            reason: reason.into(),
        })
    };
    if addr.is_empty() {
        return bad("it is empty");
    }
    if addr.len() > NODE_ADDR_BYTES_MAX {
        return bad(&format!("it is longer than {NODE_ADDR_BYTES_MAX} bytes"));
    }
    if addr.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains whitespace or control characters");
    }
    Ok(())
}

/// Why `name` cannot be a plugin name, if it cannot.
pub(super) fn plugin_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    if name.len() > PLUGIN_NAME_BYTES_MAX {
        return Some(format!("it is longer than {PLUGIN_NAME_BYTES_MAX} bytes"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some("it must start with a letter or digit".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some("only ASCII letters, digits, '-', '_' and '.' are allowed".into());
    }
    None
}
