//! What one plugin instance owns while it runs (its wasmtime store data, [`Sandbox`]) and
//! how a failed call becomes an [`FsmError`].
//!
//! The store holds the group's [`KvView`], a memory cap that remembers a refused growth,
//! the entry's log context and the last panic line the guest reported. After a call the
//! runtime takes the view back with `Store::into_data`.

use wasmtime::{ResourceLimiter, Trap};

use super::engine::TABLE_ELEMENTS_MAX;
use crate::ids::GroupId;
use crate::limits;
use crate::raftstore::fsm::{FsmError, KvView};

/// What wasmtime puts before every trap's description; the error says "trapped" already.
const TRAP_PREFIX: &str = "wasm trap: ";

/// Where a guest's log lines go: the group and the entry index (for a query, the applied
/// index it reads at).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogContext {
    pub group: GroupId,
    pub index: u64,
}

/// The data of one plugin store.
#[derive(Debug)]
pub(crate) struct Sandbox {
    pub kv: KvView,
    pub memory: MemoryCap,
    pub log: LogContext,
    /// The message of the last `panic: <message>` line the guest logged at error level
    /// during the current call.
    pub last_panic: Option<String>,
    /// Lines the guest logged during the current call.
    pub log_lines: u32,
}

impl Sandbox {
    pub fn new(kv: KvView, log: LogContext) -> Self {
        Self {
            kv,
            memory: MemoryCap::default(),
            log,
            last_panic: None,
            log_lines: 0,
        }
    }

    /// Forgets what the previous call left behind, before the next call starts.
    pub fn begin_call(&mut self) {
        self.last_panic = None;
        self.log_lines = 0;
        self.memory.refused = false;
    }
}

/// Refuses to grow a linear memory past [`limits::PLUGIN_MEMORY_BYTES_MAX`] and remembers
/// that it did, so a guest that then traps (Rust aborts on allocation failure) is
/// reported as [`FsmError::MemoryLimit`] rather than as a trap. A refused growth is a
/// failed `memory.grow` (it returns -1), exactly as Wasm specifies, so a guest that
/// handles allocation failure keeps running.
#[derive(Debug, Default)]
pub(crate) struct MemoryCap {
    pub refused: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > limits::PLUGIN_MEMORY_BYTES_MAX {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX)
    }
}

/// The [`FsmError`] for a call (or instantiation) that returned `error`. The checks run
/// from the most specific cause to the least: a KV error a host import raised, a refused
/// memory growth, fuel, a reported panic, then the trap itself.
pub(crate) fn classify(error: &wasmtime::Error, sandbox: &Sandbox) -> FsmError {
    if let Some(fsm) = error.downcast_ref::<FsmError>() {
        return fsm.clone();
    }
    if sandbox.memory.refused {
        return FsmError::MemoryLimit {
            limit_bytes: limits::PLUGIN_MEMORY_BYTES_MAX,
        };
    }
    let trap = error.downcast_ref::<Trap>();
    if trap == Some(&Trap::OutOfFuel) {
        return FsmError::OutOfFuel {
            budget: limits::PLUGIN_FUEL_PER_CALL,
        };
    }
    if let Some(message) = &sandbox.last_panic {
        return FsmError::Panicked(message.clone());
    }
    match trap {
        Some(Trap::StackOverflow) => FsmError::Trapped(format!(
            "stack overflow: the plugin's calls nested deeper than its {} KiB Wasm stack \
             allows (deep or endless recursion)",
            limits::PLUGIN_STACK_BYTES_MAX / 1024
        )),
        Some(Trap::MemoryOutOfBounds) if recursing(error).is_some() => {
            let function = recursing(error).unwrap_or_default();
            FsmError::Trapped(format!(
                "stack overflow, most likely: an out-of-bounds memory access at the end of \
                 a deep recursion ({function} calls itself over and over on the stack). \
                 Compiled Rust keeps its own stack at the bottom of linear memory (1 MiB for \
                 wasm32-unknown-unknown unless linked with `-C link-arg=-zstack-size=N`), \
                 and running past it shows as this trap; recurse less deeply"
            ))
        }
        Some(trap) => {
            let text = trap.to_string();
            FsmError::Trapped(text.strip_prefix(TRAP_PREFIX).unwrap_or(&text).to_owned())
        }
        // Not a trap: the canonical ABI refused what the guest handed over (a string that
        // is not UTF-8, a list out of bounds). The root cause names it without the
        // backtrace context wasmtime adds around it.
        None => FsmError::Trapped(error.root_cause().to_string()),
    }
}

/// The function that fills the trap's captured backtrace, if one does: the sign of a
/// recursion that ran out of stack. Only the innermost frames are captured
/// ([`super::engine::BACKTRACE_FRAMES_MAX`]); a backtrace that deep made of one or two
/// functions is a recursion, not an ordinary bug's out-of-bounds access.
fn recursing(error: &wasmtime::Error) -> Option<String> {
    let frames = error.downcast_ref::<wasmtime::WasmBacktrace>()?.frames();
    if frames.len() < super::engine::BACKTRACE_FRAMES_MAX {
        return None;
    }
    let mut counts: Vec<(u32, usize)> = Vec::new();
    for frame in frames {
        match counts.iter_mut().find(|(f, _)| *f == frame.func_index()) {
            Some((_, n)) => *n += 1,
            None => counts.push((frame.func_index(), 1)),
        }
    }
    let (index, times) = counts.iter().max_by_key(|(_, n)| *n).copied()?;
    if counts.len() > 2 || times * 2 < frames.len() {
        return None;
    }
    let frame = frames.iter().find(|f| f.func_index() == index)?;
    Some(match frame.func_name() {
        Some(name) => format!("`{:#}`", rustc_demangle::demangle(name)),
        None => format!("function {index}"),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::raftstore::fsm::KvReader;

    struct Empty;
    impl KvReader for Empty {
        fn get(&self, _: GroupId, _: &[u8]) -> Result<Option<Vec<u8>>, String> {
            Ok(None)
        }
        fn scan<'a>(
            &'a self,
            _: GroupId,
            _: &[u8],
            _: Option<&[u8]>,
        ) -> crate::raftstore::fsm::KvIter<'a> {
            Box::new(std::iter::empty())
        }
    }

    fn sandbox() -> Sandbox {
        let kv = KvView::for_apply(Arc::new(Empty), GroupId(7));
        Sandbox::new(
            kv,
            LogContext {
                group: GroupId(7),
                index: 1,
            },
        )
    }

    #[test]
    fn causes_are_ranked() {
        let mut s = sandbox();
        let fuel = wasmtime::Error::new(Trap::OutOfFuel);
        assert!(matches!(classify(&fuel, &s), FsmError::OutOfFuel { .. }));
        let unreachable = wasmtime::Error::new(Trap::UnreachableCodeReached);
        assert!(matches!(classify(&unreachable, &s), FsmError::Trapped(_)));
        s.last_panic = Some("boom".into());
        assert_eq!(
            classify(&unreachable, &s),
            FsmError::Panicked("boom".into())
        );
        s.memory.refused = true;
        assert!(matches!(
            classify(&unreachable, &s),
            FsmError::MemoryLimit { .. }
        ));
        let kv = wasmtime::Error::new(FsmError::KvMisuse("no".into()));
        assert_eq!(classify(&kv, &s), FsmError::KvMisuse("no".into()));
    }

    #[test]
    fn memory_cap_refuses_past_the_limit() {
        let mut cap = MemoryCap::default();
        assert!(
            cap.memory_growing(0, limits::PLUGIN_MEMORY_BYTES_MAX, None)
                .expect("grow")
        );
        assert!(!cap.refused);
        assert!(
            !cap.memory_growing(0, limits::PLUGIN_MEMORY_BYTES_MAX + 65_536, None)
                .expect("grow")
        );
        assert!(cap.refused);
    }
}
