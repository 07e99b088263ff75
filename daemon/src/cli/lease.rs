//! `coffer lease`: look up, renew and revoke leases.

use super::client::Client;
use super::output;
use super::output::Format;
use super::print_answer;
use clap::Subcommand;
use serde_json::Value;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum Lease {
    /// Show a lease's times and TTL.
    Lookup { lease_id: String },
    /// Extend a lease (within its max TTL).
    Renew {
        lease_id: String,
        /// How much to extend it by, e.g. `1h` (default: the lease's TTL).
        #[arg(long)]
        increment: Option<String>,
    },
    /// Revoke a lease, or every lease under a prefix.
    Revoke {
        lease_id: String,
        /// Revoke every lease under LEASE_ID as a prefix.
        #[arg(long)]
        prefix: bool,
        /// Remove the leases without revoking what they stand for (with
        /// --prefix; for irrevocable leases).
        #[arg(long, requires = "prefix")]
        force: bool,
        /// Return at once; the leader revokes in the background.
        #[arg(long)]
        no_sync: bool,
    },
}

pub(super) async fn lease(client: &Client, format: Format, command: Lease) -> anyhow::Result<i32> {
    match command {
        Lease::Lookup { lease_id } => {
            let body = json!({ "lease_id": lease_id });
            let answer = client.call("PUT", "sys/leases/lookup", Some(&body)).await?;
            print_answer(format, answer.as_ref(), None)
        }
        Lease::Renew {
            lease_id,
            increment,
        } => {
            let body = json!({ "lease_id": lease_id, "increment": increment });
            let answer = client.call("PUT", "sys/leases/renew", Some(&body)).await?;
            let answer = answer.unwrap_or(Value::Null);
            if format == Format::Json {
                output::json(&answer);
                return Ok(0);
            }
            let cell = |key: &str| answer.get(key).map(output::cell).unwrap_or_default();
            output::table(&[
                ("lease_id".into(), cell("lease_id")),
                ("lease_duration".into(), cell("lease_duration")),
                ("lease_renewable".into(), cell("renewable")),
            ]);
            Ok(0)
        }
        Lease::Revoke {
            lease_id,
            prefix,
            force,
            no_sync,
        } => {
            let body = json!({ "sync": !no_sync });
            let (path, body) = match (prefix, force) {
                (true, true) => (format!("sys/leases/revoke-force/{lease_id}"), None),
                (true, false) => (format!("sys/leases/revoke-prefix/{lease_id}"), Some(&body)),
                _ => (
                    "sys/leases/revoke".to_owned(),
                    Some(&json!({ "lease_id": lease_id, "sync": !no_sync })),
                ),
            };
            client.call("PUT", &path, body).await?;
            match (no_sync, prefix) {
                (true, _) => println!("Success! Revocation queued for: {lease_id}"),
                (false, true) => println!("Success! Revoked any leases with prefix: {lease_id}"),
                (false, false) => println!("Success! Revoked lease: {lease_id}"),
            }
            Ok(0)
        }
    }
}
