//! `coffer operator generate-root` and `coffer operator rekey`: what a quorum
//! of unseal-key holders does, with the vault CLI's flags. Without a token,
//! run them on a node as root against the Unix socket
//! (`COFFER_ADDR=unix:///run/coffer/coffer.sock`).

use anyhow::Context;
use base64::Engine as _;
use clap::Args;
use serde_json::{Value, json};

use super::client::Client;
use super::output::{self, Format};

#[derive(Debug, Args)]
pub struct GenerateRoot {
    /// Start an attempt (the server makes the one-time password, shown once).
    #[arg(long)]
    init: bool,
    /// Show the attempt in progress.
    #[arg(long)]
    status: bool,
    /// Discard the attempt and the shares given so far.
    #[arg(long)]
    cancel: bool,
    /// Decode an encoded token with --otp (done here; nothing is sent).
    #[arg(long)]
    decode: Option<String>,
    /// The one-time password: to decode with, or to start with (letters and
    /// digits, as long as a token).
    #[arg(long)]
    otp: Option<String>,
    /// The attempt's nonce (read from the server when not given).
    #[arg(long)]
    nonce: Option<String>,
    /// An unseal key share.
    key: Option<String>,
}

#[derive(Debug, Args)]
pub struct Rekey {
    /// Start a rekey to --key-shares shares with --key-threshold.
    #[arg(long)]
    init: bool,
    #[arg(long, default_value_t = 5)]
    key_shares: u8,
    #[arg(long, default_value_t = 3)]
    key_threshold: u8,
    /// With --init: the new shares must be given back before they count. With
    /// a key: the key is a new share, for that verification.
    #[arg(long)]
    verify: bool,
    /// Show the rekey in progress.
    #[arg(long)]
    status: bool,
    /// Discard the rekey in progress.
    #[arg(long)]
    cancel: bool,
    /// The rekey's (or the verification's) nonce; read from the server when
    /// not given.
    #[arg(long)]
    nonce: Option<String>,
    /// An unseal key share: a current one, or with --verify a new one.
    key: Option<String>,
}

/// A key from the argument, or from stdin.
pub(super) fn key_or_stdin(key: Option<String>) -> anyhow::Result<String> {
    if let Some(key) = key {
        return Ok(key);
    }
    eprint!("Unseal Key (read from stdin): ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the key from stdin")?;
    Ok(line.trim().to_owned())
}

fn field(value: &Value, key: &str) -> String {
    value.get(key).map(output::cell).unwrap_or_default()
}

fn print(format: Format, value: &Value, rows: &[(&str, &str)]) {
    match format {
        Format::Json => output::json(value),
        Format::Table => output::table(
            &rows
                .iter()
                .map(|(label, key)| ((*label).to_owned(), field(value, key)))
                .collect::<Vec<_>>(),
        ),
    }
}

const ROOT_ROWS: [(&str, &str); 6] = [
    ("Nonce", "nonce"),
    ("Started", "started"),
    ("Progress", "progress"),
    ("Required", "required"),
    ("Complete", "complete"),
    ("OTP Length", "otp_length"),
];

/// XORs the base64 `encoded` token with `otp`.
pub fn decode_token(encoded: &str, otp: &str) -> anyhow::Result<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .context("the encoded token is not base64")?;
    if bytes.len() != otp.len() {
        anyhow::bail!("the OTP and the encoded token differ in length");
    }
    let token: Vec<u8> = bytes
        .iter()
        .zip(otp.as_bytes())
        .map(|(a, b)| a ^ b)
        .collect();
    String::from_utf8(token).context("the decoded token is not text: wrong OTP?")
}

pub(super) async fn generate_root(
    client: &Client,
    format: Format,
    command: GenerateRoot,
) -> anyhow::Result<i32> {
    const PATH: &str = "sys/generate-root/attempt";
    if let Some(encoded) = command.decode {
        let otp = command.otp.context("--decode needs --otp")?;
        println!("{}", decode_token(&encoded, &otp)?);
        return Ok(0);
    }
    if command.cancel {
        client.call("DELETE", PATH, None).await?;
        println!("Success! Root token generation canceled (if there was one in progress)");
        return Ok(0);
    }
    if command.init {
        let body = match &command.otp {
            Some(otp) => json!({"otp": otp}),
            None => json!({}),
        };
        let started = client
            .call("PUT", PATH, Some(&body))
            .await?
            .unwrap_or(Value::Null);
        let mut rows = ROOT_ROWS.to_vec();
        rows.push(("OTP", "otp"));
        print(format, &started, &rows);
        return Ok(0);
    }
    if command.status {
        let status = client.call("GET", PATH, None).await?.unwrap_or(Value::Null);
        print(format, &status, &ROOT_ROWS);
        return Ok(0);
    }
    let nonce = match command.nonce {
        Some(nonce) => nonce,
        None => field(
            &client.call("GET", PATH, None).await?.unwrap_or(Value::Null),
            "nonce",
        ),
    };
    let key = key_or_stdin(command.key)?;
    let answer = client
        .call(
            "PUT",
            "sys/generate-root/update",
            Some(&json!({"key": key, "nonce": nonce})),
        )
        .await?
        .unwrap_or(Value::Null);
    let mut rows = ROOT_ROWS.to_vec();
    if answer.get("complete").and_then(Value::as_bool) == Some(true) {
        rows.push(("Encoded Token", "encoded_token"));
    }
    print(format, &answer, &rows);
    Ok(0)
}

const REKEY_ROWS: [(&str, &str); 6] = [
    ("Nonce", "nonce"),
    ("Started", "started"),
    ("Rekey Progress", "progress"),
    ("New Shares", "n"),
    ("New Threshold", "t"),
    ("Verification Required", "verification_required"),
];

pub(super) async fn rekey(client: &Client, format: Format, command: Rekey) -> anyhow::Result<i32> {
    let stage = if command.verify && !command.init {
        "rekey/verify"
    } else {
        "rekey/init"
    };
    let status_path = format!("sys/{stage}");
    if command.cancel {
        client.call("DELETE", &status_path, None).await?;
        println!("Success! Canceled rekeying (if it was started)");
        return Ok(0);
    }
    if command.init {
        let body = json!({
            "secret_shares": command.key_shares,
            "secret_threshold": command.key_threshold,
            "require_verification": command.verify,
        });
        let started = client
            .call("PUT", "sys/rekey/init", Some(&body))
            .await?
            .unwrap_or(Value::Null);
        print(format, &started, &REKEY_ROWS);
        return Ok(0);
    }
    if command.status {
        let status = client
            .call("GET", &status_path, None)
            .await?
            .unwrap_or(Value::Null);
        print(format, &status, &REKEY_ROWS);
        return Ok(0);
    }
    let nonce = match command.nonce {
        Some(nonce) => nonce,
        None => field(
            &client
                .call("GET", &status_path, None)
                .await?
                .unwrap_or(Value::Null),
            "nonce",
        ),
    };
    let key = key_or_stdin(command.key)?;
    let update = if command.verify {
        "sys/rekey/verify"
    } else {
        "sys/rekey/update"
    };
    let answer = client
        .call("PUT", update, Some(&json!({"key": key, "nonce": nonce})))
        .await?
        .unwrap_or(Value::Null);
    if format == Format::Json {
        output::json(&answer);
        return Ok(0);
    }
    if answer.get("complete").and_then(Value::as_bool) != Some(true) {
        print(format, &answer, &REKEY_ROWS);
        return Ok(0);
    }
    if command.verify {
        println!(
            "Rekey verification successful. The rekey operation is complete and the new keys are now active."
        );
        return Ok(0);
    }
    output::key_shares(&answer, "Key");
    println!();
    match answer.get("verification_nonce") {
        Some(verification) => println!(
            "The new keys take effect once a threshold of them is given to `coffer operator rekey --verify --nonce={}`.",
            output::cell(verification)
        ),
        None => println!(
            "Operation nonce: {}\n\nThe unseal key was replaced: distribute the new key shares; the old ones no longer unseal.",
            field(&answer, "nonce")
        ),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_decodes_with_its_otp() {
        let token = "hvs.abcdefghijklmnopqrstuvwxyz012345";
        let otp = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij";
        assert_eq!(token.len(), otp.len());
        let encoded: Vec<u8> = token.bytes().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(encoded);
        assert_eq!(decode_token(&encoded, otp).unwrap(), token);
        assert!(decode_token(&encoded, "short").is_err());
    }
}
