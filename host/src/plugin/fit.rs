//! Whether a plugin fits the sandbox's fixed slots (the pooling allocator's limits in
//! [`super::engine`]), checked at deploy with messages that name the limit and the
//! plugin's own value, instead of the allocator's wording after compilation.

use wasmparser::{Encoding, Parser, Payload};

use super::PluginError;
use super::engine::{MEMORIES_PER_COMPONENT_MAX, TABLE_ELEMENTS_MAX, TABLES_PER_COMPONENT_MAX};
use crate::limits;

const WASM_PAGE_BYTES: u64 = 65_536;

/// Refuses a plugin one of whose core modules asks for more than a sandbox slot holds:
/// more than one linear memory, a memory that starts larger than
/// [`limits::PLUGIN_MEMORY_BYTES_MAX`], a table that starts longer than
/// [`TABLE_ELEMENTS_MAX`], or more tables than [`TABLES_PER_COMPONENT_MAX`].
pub(crate) fn check_fits(bytes: &[u8]) -> Result<(), PluginError> {
    let not_wasm = |e: wasmparser::BinaryReaderError| PluginError::NotWasm(e.to_string());
    let refuse = |what: String| {
        Err(PluginError::Compile(format!(
            "{what}; build it to fit (a Rust plugin built with the SDK's release profile does)"
        )))
    };
    let (mut memories, mut tables) = (0u64, 0u64);
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(not_wasm)? {
            Payload::Version {
                encoding: Encoding::Module,
                ..
            } => (memories, tables) = (0, 0),
            Payload::MemorySection(section) => {
                for memory in section {
                    let memory = memory.map_err(not_wasm)?;
                    memories += 1;
                    let page = memory
                        .page_size_log2
                        .map_or(WASM_PAGE_BYTES, |log2| 1u64 << log2.min(32));
                    let start = memory.initial.saturating_mul(page);
                    let max = limits::PLUGIN_MEMORY_BYTES_MAX as u64;
                    if start > max {
                        return refuse(format!(
                            "its linear memory starts at {} bytes ({} pages), over the \
                             per-plugin memory limit of {max} bytes ({} pages)",
                            start,
                            memory.initial,
                            max / page
                        ));
                    }
                }
                if memories > u64::from(MEMORIES_PER_COMPONENT_MAX) {
                    return refuse(format!(
                        "a module of it defines {memories} linear memories; a plugin may \
                         have {MEMORIES_PER_COMPONENT_MAX}"
                    ));
                }
            }
            Payload::TableSection(section) => {
                for table in section {
                    let table = table.map_err(not_wasm)?;
                    tables += 1;
                    if table.ty.initial > TABLE_ELEMENTS_MAX as u64 {
                        return refuse(format!(
                            "table {} of a module starts with {} elements, over the \
                             per-table limit of {TABLE_ELEMENTS_MAX}",
                            tables - 1,
                            table.ty.initial
                        ));
                    }
                }
                if tables > u64::from(TABLES_PER_COMPONENT_MAX) {
                    return refuse(format!(
                        "a module of it defines {tables} tables; a plugin may have \
                         {TABLES_PER_COMPONENT_MAX}"
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The compile error for `error`, saying plainly when the sandbox's slots refused the
/// plugin (a limit [`check_fits`] does not check itself, such as the number of core
/// instances in a component).
pub(crate) fn compile_error(error: &wasmtime::Error) -> PluginError {
    let text = format!("{error:#}");
    if text.contains("pooling allocator") {
        PluginError::Compile(format!(
            "it does not fit the node's fixed plugin slots ({} core instances, \
             {MEMORIES_PER_COMPONENT_MAX} memory of at most {} bytes, {} tables of at most \
             {TABLE_ELEMENTS_MAX} elements): {text}",
            super::engine::CORE_INSTANCES_PER_COMPONENT_MAX,
            limits::PLUGIN_MEMORY_BYTES_MAX,
            TABLES_PER_COMPONENT_MAX,
        ))
    } else {
        PluginError::Compile(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm(wat: &str) -> Vec<u8> {
        wat::parse_str(wat).expect("valid WAT")
    }

    fn refusal(wat: &str) -> String {
        match check_fits(&wasm(wat)) {
            Err(PluginError::Compile(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_plugin_within_the_slots_fits() {
        let ok = "(module (memory 17) (table 10 funcref))";
        assert!(check_fits(&wasm(ok)).is_ok());
    }

    #[test]
    fn each_limit_is_named_with_the_plugins_value() {
        let pages = limits::PLUGIN_MEMORY_BYTES_MAX as u64 / WASM_PAGE_BYTES + 1;
        let message = refusal(&format!("(module (memory {pages}))"));
        assert!(message.contains(&format!("({pages} pages)")), "{message}");
        assert!(
            message.contains(&limits::PLUGIN_MEMORY_BYTES_MAX.to_string()),
            "{message}"
        );
        let elements = TABLE_ELEMENTS_MAX + 1;
        let message = refusal(&format!("(module (table {elements} funcref))"));
        assert!(message.contains(&elements.to_string()), "{message}");
        assert!(message.contains("per-table limit"), "{message}");
        let many = "(module (memory 1) (memory 1))";
        let message = refusal(many);
        assert!(message.contains("2 linear memories"), "{message}");
        let tables: String = (0..=TABLES_PER_COMPONENT_MAX)
            .map(|_| "(table 1 funcref)")
            .collect();
        let message = refusal(&format!("(module {tables})"));
        assert!(
            message.contains(&format!("{} tables", TABLES_PER_COMPONENT_MAX + 1)),
            "{message}"
        );
    }
}
