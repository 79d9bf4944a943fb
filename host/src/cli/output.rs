//! Output: tables for people, JSON for scripts, and plugin outputs shown as JSON when
//! they are JSON.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    t.to_string()
}

pub fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A plugin output as JSON: parsed if it is JSON, else `{"hex": ...}`.
pub fn output_value(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::json!({ "hex": hex::encode(bytes) }))
}
