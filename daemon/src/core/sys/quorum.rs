//! What a quorum of unseal-key holders authorizes, Vault's way:
//! `sys/generate-root/*` makes a new root token (for an operator who lost
//! theirs), `sys/rekey/*` replaces the unseal key shares (optionally verified
//! with the new shares before they take effect).
//!
//! Vault serves these without a token, so anyone who reaches the port can
//! start or cancel an attempt (OpenBao now turns them off by default). coffer
//! takes a caller with a token that has `sudo` on the path, or a caller on the
//! Unix socket running as root or as the daemon's own user: the operator who
//! lost the root token logs in to a node and uses the socket. The key shares
//! are what authorizes the result; the caller rule only keeps strangers from
//! interfering. An attempt lives in the memory of the node that runs it (the
//! leader: writes are forwarded there).

use base64::Engine as _;
use coffer_protocols::{LocalPeer, Operation, Request};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::super::{Core, Routed, Unsealed};
use super::{decode_share, share_count, system};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::crypto;
use crate::policy::ROOT_POLICY;
use crate::seal::{self, Progress, Rekeyed, SealConfig, Submitted};
use crate::tokens::{NewToken, TOKEN_LEN};

/// The attempts in progress on this node.
#[derive(Default)]
pub(crate) struct Attempts {
    generate_root: Option<GenerateRoot>,
    rekey: Option<Rekey>,
}

struct GenerateRoot {
    nonce: String,
    otp: Zeroizing<String>,
    shares: Progress,
}

struct Rekey {
    nonce: String,
    shares: u8,
    threshold: u8,
    verify: bool,
    progress: Progress,
    /// With verification: the new key, waiting for its own shares.
    pending: Option<Pending>,
}

struct Pending {
    rekeyed: Rekeyed,
    nonce: String,
    progress: Progress,
}

/// Whether a caller on this host may act for the key holders without a token:
/// root, or the daemon's own user.
pub(crate) fn trusted_peer(peer: &LocalPeer) -> bool {
    peer.uid == 0 || peer.uid == nix::unistd::geteuid().as_raw()
}

fn new_nonce() -> String {
    coffer_protocols::request::new_request_id()
}

/// A share from the body, and the attempt's nonce, which must match.
fn share_and_nonce(data: &Map<String, Value>, nonce: &str) -> ApiResult<Zeroizing<Vec<u8>>> {
    let fields = Fields::new(data);
    let given = fields.string("nonce")?.unwrap_or_default();
    if !crypto::constant_time_eq(given.as_bytes(), nonce.as_bytes()) {
        return Err(ApiError::invalid(
            "the nonce does not match the attempt in progress",
        ));
    }
    let key = fields
        .string("key")?
        .ok_or_else(|| ApiError::invalid("'key' must be specified in request body as JSON"))?;
    decode_share(&key)
        .ok_or_else(|| ApiError::invalid("'key' must be a valid hex or base64 string"))
}

fn submit(
    progress: &mut Progress,
    config: &SealConfig,
    share: Zeroizing<Vec<u8>>,
) -> ApiResult<Submitted> {
    progress
        .submit(config, share)
        .map_err(|error| ApiError::invalid(error.to_string()))
}

/// An answer both ways clients read it: Vault's unauthenticated endpoints
/// answer bare JSON, OpenBao's token variants an envelope; a `sys/` envelope
/// carries the fields at its top level and in `data`.
fn answer(body: Value) -> Routed {
    system(Reply::data(body))
}

pub(super) async fn route(
    core: &Core,
    unsealed: &Unsealed,
    request: &Request,
    rest: &str,
) -> ApiResult<Routed> {
    let config = core
        .seal_config()
        .ok_or_else(|| ApiError::invalid("coffer is not initialized"))?;
    let operation = request.operation;
    let data = &request.data;
    let rest = match rest.strip_prefix("generate-root-token/") {
        Some(action) => &format!("generate-root/{action}"),
        None => rest,
    };
    match (rest, operation) {
        ("generate-root/attempt", Operation::Read) => Ok(answer(root_status(core, &config, None))),
        ("generate-root/attempt", Operation::Write) => start_root(core, &config, data),
        ("generate-root/attempt", Operation::Delete) => {
            core.lock_attempts().generate_root = None;
            Ok(system(Reply::NoContent))
        }
        ("generate-root/update", Operation::Write) => {
            update_root(core, unsealed, &config, data).await
        }
        ("rekey/init", Operation::Read) => Ok(answer(rekey_status(core, &config))),
        ("rekey/init", Operation::Write) => start_rekey(core, &config, data),
        ("rekey/init", Operation::Delete) => {
            core.lock_attempts().rekey = None;
            Ok(system(Reply::NoContent))
        }
        ("rekey/update", Operation::Write) => update_rekey(core, unsealed, &config, data).await,
        ("rekey/verify", Operation::Read) => Ok(answer(verify_status(core))),
        ("rekey/verify", Operation::Write) => verify_rekey(core, unsealed, data).await,
        ("rekey/verify", Operation::Delete) => {
            if let Some(pending) = core
                .lock_attempts()
                .rekey
                .as_mut()
                .and_then(|rekey| rekey.pending.as_mut())
            {
                pending.nonce = new_nonce();
                pending.progress.reset();
            }
            Ok(answer(verify_status(core)))
        }
        ("rekey/backup", _) => Err(ApiError::invalid(
            "coffer keeps no backup of unseal keys (it does not encrypt them with PGP)",
        )),
        _ => Err(ApiError::no_route(&format!("sys/{rest}"))),
    }
}

fn root_status(core: &Core, config: &SealConfig, otp: Option<&str>) -> Value {
    let attempts = core.lock_attempts();
    let attempt = attempts.generate_root.as_ref();
    let mut status = json!({
        "started": attempt.is_some(),
        "nonce": attempt.map(|attempt| attempt.nonce.as_str()).unwrap_or(""),
        "progress": attempt.map_or(0, |attempt| attempt.shares.count()),
        "required": config.key_shares().1,
        "complete": false,
        "encoded_token": "",
        "encoded_root_token": "",
        "pgp_fingerprint": "",
        "otp_length": TOKEN_LEN,
    });
    if let Some(otp) = otp {
        status["otp"] = json!(otp);
    }
    status
}

fn start_root(core: &Core, config: &SealConfig, data: &Map<String, Value>) -> ApiResult<Routed> {
    if config.is_auto() && config.recovery_shares == 0 {
        return Err(seal::Error::NoRecoveryKey.into());
    }
    let fields = Fields::new(data);
    fields.refuse_unless_empty(&["pgp_key"])?;
    // A client may bring its own OTP (`-generate-otp`); it must be as long as
    // a token.
    let (otp, returned) = match fields.string("otp")?.filter(|otp| !otp.is_empty()) {
        Some(otp) if otp.len() == TOKEN_LEN && otp.chars().all(|c| c.is_ascii_alphanumeric()) => {
            (Zeroizing::new(otp), false)
        }
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "the OTP must be {TOKEN_LEN} letters and digits"
            )));
        }
        None => (Zeroizing::new(crypto::random_base62(TOKEN_LEN)?), true),
    };
    {
        let mut attempts = core.lock_attempts();
        if attempts.generate_root.is_some() {
            return Err(ApiError::invalid("root generation already in progress"));
        }
        attempts.generate_root = Some(GenerateRoot {
            nonce: new_nonce(),
            otp: otp.clone(),
            shares: Progress::default(),
        });
    }
    tracing::warn!("a root token generation attempt was started");
    let shown = returned.then_some(otp.as_str());
    Ok(answer(root_status(core, config, shown)))
}

async fn update_root(
    core: &Core,
    unsealed: &Unsealed,
    config: &SealConfig,
    data: &Map<String, Value>,
) -> ApiResult<Routed> {
    let (submitted, otp, nonce) = {
        let mut attempts = core.lock_attempts();
        let attempt = attempts
            .generate_root
            .as_mut()
            .ok_or_else(|| ApiError::invalid("no root generation in progress"))?;
        let share = share_and_nonce(data, &attempt.nonce)?;
        let submitted = submit(&mut attempt.shares, config, share)?;
        (submitted, attempt.otp.clone(), attempt.nonce.clone())
    };
    let Submitted::Complete(key) = submitted else {
        return Ok(answer(root_status(core, config, None)));
    };
    if config.is_auto() {
        // Under an auto seal the quorum is of recovery key holders.
        let wrapper = core.wrapper_for(config)?;
        seal::check_recovery_key(core.backend.as_ref(), wrapper.as_ref(), &key).await?;
    } else if seal::open(core.backend.as_ref(), &key).is_err() {
        return Err(ApiError::invalid(
            "the key shares do not open this server's root key; submit them again",
        ));
    }
    core.lock_attempts().generate_root = None;
    let (token, _) = unsealed
        .tokens
        .create(NewToken {
            bound_cidrs: Vec::new(),
            policies: vec![ROOT_POLICY.into()],
            display_name: "root".into(),
            path: "auth/token/root".into(),
            ..NewToken::default()
        })
        .await?;
    let encoded: Vec<u8> = token
        .as_bytes()
        .iter()
        .zip(otp.as_bytes())
        .map(|(token, otp)| token ^ otp)
        .collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(encoded);
    tracing::warn!("a root token was generated by a quorum of key holders");
    Ok(answer(json!({
        "started": true,
        "nonce": nonce,
        "progress": config.key_shares().1,
        "required": config.key_shares().1,
        "complete": true,
        "encoded_token": encoded,
        "encoded_root_token": encoded,
        "pgp_fingerprint": "",
        "otp_length": TOKEN_LEN,
    })))
}

fn rekey_status(core: &Core, config: &SealConfig) -> Value {
    let attempts = core.lock_attempts();
    let rekey = attempts.rekey.as_ref();
    json!({
        "started": rekey.is_some(),
        "nonce": rekey.map(|rekey| rekey.nonce.as_str()).unwrap_or(""),
        "t": rekey.map_or(0, |rekey| rekey.threshold),
        "n": rekey.map_or(0, |rekey| rekey.shares),
        "progress": rekey.map_or(0, |rekey| rekey.progress.count()),
        "required": config.secret_threshold,
        "pgp_fingerprints": Value::Null,
        "backup": false,
        "verification_required": rekey.is_some_and(|rekey| rekey.verify),
    })
}

fn start_rekey(core: &Core, config: &SealConfig, data: &Map<String, Value>) -> ApiResult<Routed> {
    if config.is_auto() {
        return Err(ApiError::invalid(format!(
            "rekey applies to Shamir unseal keys; this server's {} seal keeps its unseal key",
            config.kind
        )));
    }
    let fields = Fields::new(data);
    fields.refuse_unless_empty(&["pgp_keys", "backup"])?;
    let shares = share_count(&fields, "secret_shares")?;
    let threshold = share_count(&fields, "secret_threshold")?;
    crate::shamir::validate(shares, threshold)
        .map_err(|error| ApiError::invalid(error.to_string()))?;
    {
        let mut attempts = core.lock_attempts();
        if attempts.rekey.is_some() {
            return Err(ApiError::invalid("rekey already in progress"));
        }
        attempts.rekey = Some(Rekey {
            nonce: new_nonce(),
            shares,
            threshold,
            verify: fields.bool("require_verification")?.unwrap_or(false),
            progress: Progress::default(),
            pending: None,
        });
    }
    tracing::warn!(shares, threshold, "a rekey was started");
    Ok(answer(rekey_status(core, config)))
}

async fn update_rekey(
    core: &Core,
    unsealed: &Unsealed,
    config: &SealConfig,
    data: &Map<String, Value>,
) -> ApiResult<Routed> {
    let (submitted, shares, threshold, verify, nonce) = {
        let mut attempts = core.lock_attempts();
        let rekey = attempts
            .rekey
            .as_mut()
            .ok_or_else(|| ApiError::invalid("no rekey in progress"))?;
        if rekey.pending.is_some() {
            return Err(ApiError::invalid(
                "the new keys wait for verification (sys/rekey/verify)",
            ));
        }
        let share = share_and_nonce(data, &rekey.nonce)?;
        let submitted = submit(&mut rekey.progress, config, share)?;
        (
            submitted,
            rekey.shares,
            rekey.threshold,
            rekey.verify,
            rekey.nonce.clone(),
        )
    };
    let Submitted::Complete(key) = submitted else {
        return Ok(answer(rekey_status(core, config)));
    };
    let rekeyed =
        seal::rekey(core.backend.as_ref(), &key, shares, threshold).map_err(
            |error| match error {
                seal::Error::InvalidKey => ApiError::invalid(
                    "the key shares do not open this server's root key; submit them again",
                ),
                other => ApiError::internal(&other),
            },
        )?;
    let keys: Vec<String> = rekeyed.shares.iter().map(hex::encode).collect();
    let keys_base64: Vec<String> = rekeyed
        .shares
        .iter()
        .map(|share| base64::engine::general_purpose::STANDARD.encode(share.as_slice()))
        .collect();
    let mut reply = json!({
        "complete": true,
        "nonce": nonce,
        "keys": keys,
        "keys_base64": keys_base64,
        "pgp_fingerprints": Value::Null,
        "backup": false,
        "verification_required": verify,
    });
    if verify {
        let verification_nonce = new_nonce();
        reply["verification_nonce"] = json!(verification_nonce);
        if let Some(rekey) = core.lock_attempts().rekey.as_mut() {
            rekey.pending = Some(Pending {
                rekeyed,
                nonce: verification_nonce,
                progress: Progress::default(),
            });
        }
    } else {
        commit(core, unsealed, rekeyed).await?;
    }
    Ok(answer(reply))
}

fn verify_status(core: &Core) -> Value {
    let attempts = core.lock_attempts();
    let rekey = attempts.rekey.as_ref();
    let pending = rekey.and_then(|rekey| rekey.pending.as_ref());
    json!({
        "started": pending.is_some(),
        "nonce": pending.map(|pending| pending.nonce.as_str()).unwrap_or(""),
        "t": rekey.map_or(0, |rekey| rekey.threshold),
        "n": rekey.map_or(0, |rekey| rekey.shares),
        "progress": pending.map_or(0, |pending| pending.progress.count()),
    })
}

async fn verify_rekey(
    core: &Core,
    unsealed: &Unsealed,
    data: &Map<String, Value>,
) -> ApiResult<Routed> {
    let (submitted, nonce) = {
        let mut attempts = core.lock_attempts();
        let pending = attempts
            .rekey
            .as_mut()
            .and_then(|rekey| rekey.pending.as_mut())
            .ok_or_else(|| ApiError::invalid("no rekey verification in progress"))?;
        let share = share_and_nonce(data, &pending.nonce)?;
        let submitted = submit(&mut pending.progress, &pending.rekeyed.config, share)?;
        (submitted, pending.nonce.clone())
    };
    let Submitted::Complete(key) = submitted else {
        return Ok(answer(verify_status(core)));
    };
    let rekeyed = {
        let mut attempts = core.lock_attempts();
        let Some(pending) = attempts
            .rekey
            .as_mut()
            .and_then(|rekey| rekey.pending.take())
        else {
            return Err(ApiError::invalid("no rekey verification in progress"));
        };
        if !crypto::constant_time_eq(&key, pending.rekeyed.unseal_key.as_ref()) {
            let retry = Pending {
                nonce: pending.nonce.clone(),
                progress: Progress::default(),
                rekeyed: pending.rekeyed,
            };
            if let Some(rekey) = attempts.rekey.as_mut() {
                rekey.pending = Some(retry);
            }
            return Err(ApiError::invalid(
                "the new key shares do not combine to the new unseal key; submit them again",
            ));
        }
        attempts.rekey = None;
        pending.rekeyed
    };
    commit(core, unsealed, rekeyed).await?;
    Ok(answer(json!({"complete": true, "nonce": nonce})))
}

/// Stores the new seal configuration and root key seal in one command.
async fn commit(core: &Core, unsealed: &Unsealed, rekeyed: Rekeyed) -> ApiResult<()> {
    let mut batch = unsealed.barrier.batch();
    for (path, value) in rekeyed.records {
        batch.put_raw(&path, value);
    }
    unsealed.barrier.commit(batch).await?;
    core.lock_attempts().rekey = None;
    core.set_seal_config(rekeyed.config);
    tracing::warn!("the unseal key was replaced: the old key shares no longer unseal");
    Ok(())
}
