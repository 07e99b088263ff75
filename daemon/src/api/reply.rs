//! What a route handler answers, before the pipeline wraps it in Vault's envelope
//! (request id, mount type, `sys/` flattening).

use coffer_protocols::LogicalResponse;
use serde_json::{Map, Value};

#[derive(Debug)]
pub enum Reply {
    /// 200 with `data`.
    Data(Map<String, Value>),
    /// 200 with a fully built envelope (auth blocks, warnings, leases).
    Envelope(Box<LogicalResponse>),
    /// `data.keys` of a LIST; empty answers 404 with `{"errors":[]}`.
    List(Vec<String>),
    /// 204.
    NoContent,
    /// A raw JSON document with its own status (`sys/health` and friends).
    Raw(u16, Value),
    /// A non-JSON document (Prometheus metrics).
    Text(&'static str, String),
    /// Bytes (a snapshot download).
    Binary(&'static str, Vec<u8>),
}

impl Reply {
    pub fn data(value: Value) -> Reply {
        match value {
            Value::Object(map) => Reply::Data(map),
            _ => Reply::Data(Map::new()),
        }
    }
}
