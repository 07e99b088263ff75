//! The `coffer` command line: `coffer server`, and client subcommands in the
//! vault CLI's shapes (`status`, `operator`, `kv`, `read`/`write`/`list`/`delete`,
//! `token`, `policy`, `secrets`, `audit`, `auth`, `login`, `lease`, `pki`). Like the vault CLI,
//! long flags take one dash (`-format=json`); two dashes work too.

mod audit;
mod auth;
mod client;
mod kv;
mod lease;
mod operator;
mod output;
mod pki;
mod policy;
mod quorum;
mod raft;
mod secrets;
mod token;

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};

use audit::{Audit, audit};
use auth::{Auth, auth};
pub use client::ApiFailure;
use client::Client;
use kv::{Kv, kv};
use lease::{Lease, lease};
use operator::{Operator, operator};
use output::Format;
use pki::{Pki, pki};
use policy::{Policy, policy};
use secrets::{Secrets, secrets};
use token::{Token, token};

#[derive(Debug, Parser)]
#[command(
    name = "coffer",
    version = coffer_daemon::build_info::VERSION,
    long_version = concat!(
        env!("CARGO_PKG_VERSION"),
        " (",
        env!("COFFER_BUILD_COMMIT"),
        ")"
    ),
    about = "coffer: a secrets appliance for Linux hosts"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Output format of client commands.
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub format: Format,
    /// Server address (default: $COFFER_ADDR, $VAULT_ADDR, http://127.0.0.1:8200).
    #[arg(long, global = true)]
    pub address: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Server(ServerArgs),
    /// Print the seal status (exit code 2 when sealed).
    Status,
    /// Initialize, unseal, seal and rotate.
    #[command(subcommand)]
    Operator(Operator),
    /// Read and write key-value secrets (v1 and v2 mounts).
    #[command(subcommand)]
    Kv(Kv),
    /// Read any path.
    Read {
        path: String,
        /// Print only this field's value.
        #[arg(long)]
        field: Option<String>,
    },
    /// Write KEY=VALUE pairs to any path (VALUE may be @file or - for stdin).
    Write { path: String, pairs: Vec<String> },
    /// List the keys under a path.
    List { path: String },
    /// Delete a path.
    Delete { path: String },
    /// Create, look up, renew and revoke tokens.
    #[command(subcommand)]
    Token(Token),
    /// Manage ACL policies.
    #[command(subcommand)]
    Policy(Policy),
    /// Enable, disable and list secrets engines.
    #[command(subcommand)]
    Secrets(Secrets),
    /// Enable, disable and list audit devices.
    #[command(subcommand)]
    Audit(Audit),
    /// Look up, renew and revoke leases.
    #[command(subcommand)]
    Lease(Lease),
    /// Issue certificates from a pki mount.
    #[command(subcommand)]
    Pki(Pki),
    /// Enable, disable and list auth methods.
    #[command(subcommand)]
    Auth(Auth),
    /// Log in with an auth method and print the token.
    Login {
        /// The method: userpass, approle, or another whose login takes its
        /// fields at auth/<path>/login.
        #[arg(long, default_value = "userpass")]
        method: String,
        /// Where the method is mounted (below auth/); default: its name.
        #[arg(long)]
        path: Option<String>,
        /// KEY=VALUE login fields (VALUE may be @file or - for stdin).
        pairs: Vec<String>,
    },
    /// Print the version, the git commit and its date.
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion { shell: clap_complete::Shell },
    /// Write the man pages (coffer.1, coffer-server.1, ...) into a directory.
    #[command(hide = true)]
    Man { directory: PathBuf },
}

/// The commands that need no server; `None` for the others.
pub fn run_local(command: &Command) -> Option<anyhow::Result<i32>> {
    use clap::CommandFactory as _;
    match command {
        Command::Version => {
            println!("{}", coffer_daemon::build_info::line());
            Some(Ok(0))
        }
        Command::Completion { shell } => {
            use std::io::Write as _;
            // Into memory first: clap_complete panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "coffer", &mut script);
            Some(
                std::io::stdout()
                    .write_all(&script)
                    .context("cannot write the completion script")
                    .map(|()| 0),
            )
        }
        Command::Man { directory } => Some(
            std::fs::create_dir_all(directory)
                .and_then(|()| clap_mangen::generate_to(Cli::command(), directory))
                .with_context(|| format!("cannot write man pages into {}", directory.display()))
                .map(|()| 0),
        ),
        _ => None,
    }
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The HCL configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run an initialized, unsealed development server with KV v2 at secret/.
    #[arg(long)]
    pub dev: bool,
    /// The dev server's root token (default: random).
    #[arg(long, requires = "dev")]
    pub dev_root_token: Option<String>,
    /// The dev server's listen address (default 127.0.0.1:8200).
    #[arg(long, requires = "dev")]
    pub dev_listen: Option<String>,
    /// Mount the dev server's /secrets filesystem at this empty directory.
    #[arg(long, requires = "dev", value_name = "PATH")]
    pub dev_fuse: Option<PathBuf>,
    /// Also serve the dev server's API on a Unix socket at this path (mode 0666;
    /// callers without a token are authenticated by their uid through
    /// `auth/local` roles).
    #[arg(long, requires = "dev", value_name = "PATH")]
    pub dev_unix: Option<PathBuf>,
    /// Let the dev server's `sys/audit` enable devices, as a config file's
    /// `unsafe_allow_api_audit_creation = true` does.
    #[arg(long, requires = "dev")]
    pub dev_unsafe_allow_api_audit_creation: bool,
    /// Also serve the dev server's gRPC API (plain HTTP/2) at this host:port.
    #[arg(long, requires = "dev", value_name = "ADDR")]
    pub dev_grpc_listen: Option<String>,
    /// Data directory (dev: default a throwaway temporary directory; with
    /// --config: overrides storage "raft" path).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// trace, debug, info, warn or error (default: the config's log_level, or info).
    #[arg(long)]
    pub log_level: Option<String>,
    /// standard or json (default: the config's log_format, or standard).
    #[arg(long, value_parser = parse_log_format)]
    pub log_format: Option<coffer_daemon::logging::Format>,
}

fn parse_log_format(text: &str) -> Result<coffer_daemon::logging::Format, String> {
    coffer_daemon::logging::Format::parse(text)
        .ok_or_else(|| format!("{text:?} is not a log format: standard or json"))
}

/// Rewrites vault-style single-dash long flags (`-format=json`) to clap's
/// double-dash form. Arguments after `--` are left alone.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut normalized = Vec::new();
    let mut passthrough = false;
    for (index, argument) in args.into_iter().enumerate() {
        if index == 0 || passthrough {
            normalized.push(argument);
            continue;
        }
        if argument == "--" {
            passthrough = true;
            normalized.push(argument);
            continue;
        }
        let name = argument
            .strip_prefix('-')
            .filter(|rest| !rest.starts_with('-'))
            .map(|rest| rest.split('=').next().unwrap_or(rest));
        match name {
            Some(name)
                if name.len() > 1
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    && name.starts_with(|c: char| c.is_ascii_alphabetic()) =>
            {
                normalized.push(format!("-{argument}"))
            }
            _ => normalized.push(argument),
        }
    }
    normalized
}

/// Runs a client subcommand. Returns the process exit code.
pub async fn run_client(cli: Cli) -> anyhow::Result<i32> {
    let client = Client::new(cli.address.clone())?;
    let format = cli.format;
    match cli.command {
        Command::Server(_)
        | Command::Version
        | Command::Completion { .. }
        | Command::Man { .. } => {
            bail!("not a client command")
        }
        Command::Status => status(&client, format).await,
        Command::Operator(command) => operator(&client, format, command).await,
        Command::Kv(command) => kv(&client, format, command).await,
        Command::Read { path, field } => {
            let answer = client.call("GET", &path, None).await?;
            print_answer(format, answer.as_ref(), field.as_deref())
        }
        Command::Write { path, pairs } => {
            let data = parse_pairs(&pairs)?;
            let answer = client.call("PUT", &path, Some(&data)).await?;
            match answer {
                Some(answer) => print_answer(format, Some(&answer), None),
                None => {
                    println!("Success! Data written to: {path}");
                    Ok(0)
                }
            }
        }
        Command::List { path } => {
            let answer = client.call("LIST", &path, None).await?;
            print_keys(format, answer.as_ref())
        }
        Command::Delete { path } => {
            client.call("DELETE", &path, None).await?;
            println!("Success! Data deleted (if it existed) at: {path}");
            Ok(0)
        }
        Command::Token(command) => token(&client, format, command).await,
        Command::Policy(command) => policy(&client, format, command).await,
        Command::Secrets(command) => secrets(&client, format, command).await,
        Command::Audit(command) => audit(&client, format, command).await,
        Command::Lease(command) => lease(&client, format, command).await,
        Command::Pki(command) => pki(&client, format, command).await,
        Command::Auth(command) => auth(&client, format, command).await,
        Command::Login {
            method,
            path,
            pairs,
        } => auth::login(&client, format, &method, path.as_deref(), &pairs).await,
    }
}

fn print_answer(
    format: Format,
    answer: Option<&Value>,
    field: Option<&str>,
) -> anyhow::Result<i32> {
    let Some(answer) = answer else {
        println!("Success!");
        return Ok(0);
    };
    if let Some(field) = field {
        let value = answer
            .pointer(&format!("/data/{field}"))
            .or_else(|| answer.pointer(&format!("/auth/{field}")))
            .with_context(|| format!("field {field:?} is not present in the answer"))?;
        print!("{}", output::cell(value));
        return Ok(0);
    }
    match format {
        Format::Json => output::json(answer),
        Format::Table => {
            if let Some(auth) = answer.get("auth").and_then(Value::as_object) {
                output::map_table(auth);
            } else if let Some(data) = answer.get("data").and_then(Value::as_object) {
                output::map_table(data);
            } else {
                output::json(answer);
            }
        }
    }
    Ok(0)
}

fn print_keys(format: Format, answer: Option<&Value>) -> anyhow::Result<i32> {
    match (format, answer) {
        (Format::Json, Some(answer)) => {
            output::json(answer.pointer("/data/keys").unwrap_or(&Value::Null))
        }
        (Format::Table, Some(answer)) => output::keys(answer),
        (_, None) => {}
    }
    Ok(0)
}

/// `KEY=VALUE` pairs into a JSON object; `VALUE` may be `@file` or `-` (stdin).
fn parse_pairs(pairs: &[String]) -> anyhow::Result<Value> {
    let mut data = Map::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("{pair:?} is not KEY=VALUE"))?;
        let value = if value == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read stdin")?;
            text
        } else if let Some(path) = value.strip_prefix('@') {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
        } else {
            value.to_owned()
        };
        data.insert(key.to_owned(), Value::String(value));
    }
    Ok(Value::Object(data))
}

async fn status(client: &Client, format: Format) -> anyhow::Result<i32> {
    let status = client
        .call("GET", "sys/seal-status", None)
        .await?
        .unwrap_or(Value::Null);
    let sealed = status
        .get("sealed")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    match format {
        Format::Json => output::json(&status),
        Format::Table => {
            let field = |key: &str| status.get(key).map(output::cell).unwrap_or_default();
            let mut rows = vec![
                ("Seal Type".to_owned(), field("type")),
                ("Initialized".to_owned(), field("initialized")),
                ("Sealed".to_owned(), field("sealed")),
                ("Total Shares".to_owned(), field("n")),
                ("Threshold".to_owned(), field("t")),
            ];
            if status.get("recovery_seal").and_then(Value::as_bool) == Some(true) {
                rows.insert(
                    1,
                    ("Recovery Seal Type".to_owned(), field("recovery_seal_type")),
                );
                rows[4].0 = "Total Recovery Shares".to_owned();
            }
            if status.get("migration").and_then(Value::as_bool) == Some(true) {
                rows.push(("Seal Migration in Progress".to_owned(), "true".to_owned()));
            }
            if sealed {
                rows.push((
                    "Unseal Progress".to_owned(),
                    format!("{}/{}", field("progress"), field("t")),
                ));
                rows.push(("Unseal Nonce".to_owned(), field("nonce")));
            }
            rows.push(("Version".to_owned(), field("version")));
            rows.push(("Storage Type".to_owned(), field("storage_type")));
            if !sealed {
                rows.push(("Cluster Name".to_owned(), field("cluster_name")));
                rows.push(("Cluster ID".to_owned(), field("cluster_id")));
            }
            output::table(&rows);
        }
    }
    Ok(if sealed { 2 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(list: &[&str]) -> Vec<String> {
        normalize_args(list.iter().map(|arg| arg.to_string()))
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            args(&[
                "coffer",
                "kv",
                "get",
                "-format=json",
                "-mount",
                "secret",
                "app"
            ]),
            vec![
                "coffer",
                "kv",
                "get",
                "--format=json",
                "--mount",
                "secret",
                "app"
            ]
        );
        assert_eq!(
            args(&["coffer", "write", "x", "-"]),
            vec!["coffer", "write", "x", "-"]
        );
        assert_eq!(
            args(&["coffer", "--format=json"]),
            vec!["coffer", "--format=json"]
        );
        assert_eq!(args(&["coffer", "-h"]), vec!["coffer", "-h"]);
        assert_eq!(
            args(&["coffer", "--", "-x-y"]),
            vec!["coffer", "--", "-x-y"]
        );
        assert_eq!(args(&["coffer", "-5"]), vec!["coffer", "-5"]);
    }

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from(args(&[
            "coffer",
            "token",
            "create",
            "-policy=a",
            "-policy=b",
            "-ttl=1h",
            "-format=json",
        ]))
        .unwrap();
        assert_eq!(cli.format, Format::Json);
        let Command::Token(Token::Create { policies, ttl, .. }) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(policies, vec!["a", "b"]);
        assert_eq!(ttl.as_deref(), Some("1h"));
    }

    #[test]
    fn pairs_become_an_object() {
        assert_eq!(
            parse_pairs(&["a=1".into(), "b=x=y".into()]).unwrap(),
            json!({"a": "1", "b": "x=y"})
        );
        assert!(parse_pairs(&["novalue".into()]).is_err());
    }
}
