//! Printing answers as the vault CLI does: a Key/Value table, or JSON with
//! `-format=json`.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

pub fn json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A value as a table cell: strings bare, everything else as JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "n/a".to_owned(),
        Value::Array(items) if items.iter().all(Value::is_string) => format!(
            "[{}]",
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

pub fn table(rows: &[(String, String)]) {
    let width = rows
        .iter()
        .map(|(key, _)| key.len())
        .max()
        .unwrap_or(3)
        .max(3);
    println!("{:<width$}    Value", "Key");
    println!("{:<width$}    -----", "---");
    for (key, value) in rows {
        println!("{key:<width$}    {value}");
    }
}

pub fn map_table(map: &Map<String, Value>) {
    let mut rows: Vec<(String, String)> = map
        .iter()
        .map(|(key, value)| (key.clone(), cell(value)))
        .collect();
    rows.sort();
    table(&rows);
}

pub fn header(title: &str) {
    let bar = "=".repeat(title.len() + 2);
    println!("{bar} {title} {bar}");
}

/// The new key shares of an answer (`keys_base64`), one numbered line each:
/// `Unseal Key 1: ...`.
pub fn key_shares(answer: &Value, label: &str) {
    shares_of(answer, "keys_base64", label);
}

/// The shares in the answer's `field`, one numbered line each.
pub fn shares_of(answer: &Value, field: &str, label: &str) {
    let shares = answer
        .get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (index, share) in shares.iter().enumerate() {
        println!("{label} {}: {}", index + 1, cell(share));
    }
}

pub fn keys(value: &Value) {
    println!("Keys\n----");
    if let Some(keys) = value.pointer("/data/keys").and_then(Value::as_array) {
        for key in keys {
            println!("{}", cell(key));
        }
    }
}

/// Rows under a header, in aligned columns (as `vault operator raft list-peers`).
pub fn columns(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|title| title.len()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", text.join("    ").trim_end());
    };
    line(header.to_vec());
    let rules: Vec<String> = header.iter().map(|title| "-".repeat(title.len())).collect();
    line(rules.iter().map(String::as_str).collect());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
