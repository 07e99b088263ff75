//! `coffer pki`: certificates from a `pki` mount, printed or written as the
//! files `/secrets` shows (`cert.pem`, `key.pem`, `chain.pem`, `bundle.pem`).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::client::Client;
use super::output::Format;
use super::print_answer;

#[derive(Debug, Subcommand)]
pub enum Pki {
    /// Issue a certificate (and its key) for NAME under ROLE.
    Issue {
        role: String,
        /// The common name.
        name: String,
        /// The pki mount (default pki).
        #[arg(long, default_value = "pki")]
        mount: String,
        /// The validity, e.g. `72h` (default: the role's).
        #[arg(long)]
        ttl: Option<String>,
        /// More DNS names or emails, comma-separated.
        #[arg(long)]
        alt_names: Option<String>,
        /// IP addresses, comma-separated.
        #[arg(long)]
        ip_sans: Option<String>,
        /// Write cert.pem, key.pem (mode 0600), chain.pem and bundle.pem
        /// into this directory instead of printing the answer.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

pub(super) async fn pki(client: &Client, format: Format, command: Pki) -> anyhow::Result<i32> {
    let Pki::Issue {
        role,
        name,
        mount,
        ttl,
        alt_names,
        ip_sans,
        out,
    } = command;
    let mut body = Map::new();
    body.insert("common_name".into(), json!(name));
    for (key, value) in [("ttl", ttl), ("alt_names", alt_names), ("ip_sans", ip_sans)] {
        if let Some(value) = value {
            body.insert(key.into(), json!(value));
        }
    }
    let path = format!("{}/issue/{role}", mount.trim_matches('/'));
    let answer = client
        .call("PUT", &path, Some(&Value::Object(body)))
        .await?
        .context("the server answered without a certificate")?;
    let Some(directory) = out else {
        return print_answer(format, Some(&answer), None);
    };
    let data = answer
        .get("data")
        .context("the server answered without data")?;
    write_files(&directory, data)?;
    println!(
        "Certificate {} for {name}, valid until {}, written to {}",
        data["serial_number"].as_str().unwrap_or_default(),
        coffer_daemon::tokens::rfc3339(data["expiration"].as_u64().unwrap_or(0)),
        directory.display()
    );
    Ok(0)
}

/// PEM blocks, one newline after each.
fn pem(blocks: &[&str]) -> String {
    blocks
        .iter()
        .map(|block| block.trim())
        .filter(|block| !block.is_empty())
        .map(|block| format!("{block}\n"))
        .collect()
}

/// The four files of an issue answer's `data` in `directory`.
fn write_files(directory: &Path, data: &Value) -> anyhow::Result<()> {
    let text = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or_default();
    let chain: Vec<&str> = match data.get("ca_chain").and_then(Value::as_array) {
        Some(chain) => chain.iter().filter_map(Value::as_str).collect(),
        None => vec![text("issuing_ca")],
    };
    let (certificate, key) = (text("certificate"), text("private_key"));
    anyhow::ensure!(
        !certificate.is_empty() && !key.is_empty(),
        "the answer has no certificate and key"
    );
    std::fs::create_dir_all(directory)
        .with_context(|| format!("create {}", directory.display()))?;
    let bundle: Vec<&str> = [key, certificate]
        .into_iter()
        .chain(chain.clone())
        .collect();
    for (name, contents, mode) in [
        ("cert.pem", pem(&[certificate]), 0o644),
        ("key.pem", pem(&[key]), 0o600),
        ("chain.pem", pem(&chain), 0o644),
        ("bundle.pem", pem(&bundle), 0o600),
    ] {
        let path = directory.join(name);
        // A new file, so the key is never readable by others even briefly.
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .with_context(|| format!("write {}", path.display()))?;
        file.write_all(contents.as_bytes())
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
