//! The functions a plugin imports: `flotilla:fsm/kv` over the store's [`KvView`] and
//! `flotilla:fsm/log` into `tracing`.
//!
//! A KV error (a rule broken, or a storage read that failed) aborts the guest: the import
//! returns the [`crate::raftstore::fsm::FsmError`] as a wasmtime error, the call traps,
//! and [`super::sandbox::classify`] finds the same error again.
//!
//! [`KvView`]: crate::raftstore::fsm::KvView

use super::bindings::flotilla::fsm::{kv, log, types};
use super::sandbox::Sandbox;
use crate::limits;

/// The prefix the guest SDK's panic hook puts before a panic message.
const PANIC_PREFIX: &str = "panic: ";

impl types::Host for Sandbox {}

impl kv::Host for Sandbox {
    fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.kv.get(&key)?)
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        Ok(self.kv.put(&key, &value)?)
    }

    fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<()> {
        Ok(self.kv.delete(&key)?)
    }

    fn scan(
        &mut self,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: u32,
    ) -> wasmtime::Result<Vec<types::KvPair>> {
        let pairs = self.kv.scan(&start, end.as_deref(), limit)?;
        Ok(pairs
            .into_iter()
            .map(|(key, value)| types::KvPair { key, value })
            .collect())
    }
}

impl log::Host for Sandbox {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let line = cut(&message, limits::GUEST_LOG_LINE_BYTES_MAX);
        if level == log::Level::Error
            && let Some(panic) = line.strip_prefix(PANIC_PREFIX)
        {
            self.last_panic = Some(panic.to_owned());
        }
        self.log_lines = self.log_lines.saturating_add(1);
        let (group, index) = (self.log.group.0, self.log.index);
        if self.log_lines > limits::GUEST_LOG_LINES_PER_CALL_MAX {
            if self.log_lines == limits::GUEST_LOG_LINES_PER_CALL_MAX + 1 {
                tracing::warn!(
                    target: "flotilla::guest",
                    group,
                    index,
                    "more than {} log lines in one call; the rest of this call's are dropped",
                    limits::GUEST_LOG_LINES_PER_CALL_MAX
                );
            }
            return Ok(());
        }
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "flotilla::guest", group, index, "{line}");
            }
            log::Level::Debug => {
                tracing::debug!(target: "flotilla::guest", group, index, "{line}");
            }
            log::Level::Info => {
                tracing::info!(target: "flotilla::guest", group, index, "{line}");
            }
            log::Level::Warn => {
                tracing::warn!(target: "flotilla::guest", group, index, "{line}");
            }
            log::Level::Error => {
                tracing::error!(target: "flotilla::guest", group, index, "{line}");
            }
        }
        Ok(())
    }
}

/// The longest prefix of `text` of at most `bytes_max` bytes that ends on a character
/// boundary.
fn cut(text: &str, bytes_max: usize) -> &str {
    let mut end = bytes_max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn lines_are_cut_on_character_boundaries() {
        assert_eq!(cut("hello", 10), "hello");
        assert_eq!(cut("hello", 3), "hel");
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("", 0), "");
    }
}
