//! `sys/storage/raft/`: joining (the new node's `join`, the leader's `bootstrap`
//! challenge and answer), the member list, removing a member, and operator
//! snapshots.

use coffer_protocols::{Operation, Request};
use serde_json::{Map, Value, json};

use super::super::{Core, Routed, Unsealed};
use super::system;
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::autoseal::UNSEAL_KEY_PATH;
use crate::barrier::KEYRING_PATH;
use crate::raft::tls::{self, ClusterCa, RawPublicKey};
use crate::raft::{NodeInfo, archive, join, network, node_id, snapshot};
use crate::seal::{self, ROOT_KEY_PATH};
use crate::storage::{Command, Op};

/// `PUT sys/storage/raft/join` on the new node: ask a member for a challenge.
/// Unauthenticated, as in Vault: a node that joins has no token yet; on a node
/// that is already a member it changes nothing.
pub(super) async fn join(core: &Core, data: &Map<String, Value>) -> ApiResult<Routed> {
    let fields = Fields::new(data);
    fields.refuse_unless_empty(&[
        "auto_join",
        "auto_join_scheme",
        "auto_join_port",
        "leader_client_cert",
        "leader_client_key",
    ])?;
    let address = fields
        .string("leader_api_addr")?
        .filter(|address| !address.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("leader_api_addr is required"))?;
    let ca_pem = fields
        .string("leader_ca_cert")?
        .filter(|pem| !pem.trim().is_empty());
    let non_voter = fields.bool("non_voter")?.unwrap_or(false);
    core.join(&address, ca_pem.as_deref().map(str::as_bytes), non_voter)
        .await?;
    Ok(super::raw(200, json!({ "joined": true })))
}

fn server_id(fields: &Fields<'_>) -> ApiResult<String> {
    let id = fields
        .string("server_id")?
        .ok_or_else(|| ApiError::invalid("server_id is required"))?;
    join::validate_server_id(&id).map_err(ApiError::invalid)?;
    Ok(id)
}

fn stored(core: &Core, path: &str) -> ApiResult<Vec<u8>> {
    core.backend
        .get(path)?
        .ok_or_else(|| ApiError::internal(&format!("{path} is missing from storage")))
}

/// `POST sys/storage/raft/bootstrap/challenge` on the leader: a challenge only a
/// holder of the cluster's key shares can open, and the sealed records needed to
/// open it.
pub(super) fn challenge(core: &Core, data: &Map<String, Value>) -> ApiResult<Routed> {
    let unsealed = core.unsealed()?;
    let server_id = server_id(&Fields::new(data))?;
    let nonce = core.challenges.issue(&server_id)?;
    let challenge = unsealed
        .barrier
        .encrypt_blob(join::CHALLENGE_LABEL, &nonce)?;
    let seal_config = seal::read_config(core.backend.as_ref())?
        .ok_or_else(|| ApiError::internal(&"the seal configuration is missing"))?;
    let sealed_unseal_key = match seal_config.is_auto() {
        true => Some(join::encode(&stored(core, UNSEAL_KEY_PATH)?)),
        false => None,
    };
    let answer = join::ChallengeResponse {
        challenge: join::encode(&challenge),
        seal_config,
        sealed_root_key: join::encode(&stored(core, ROOT_KEY_PATH)?),
        sealed_keyring: join::encode(&stored(core, KEYRING_PATH)?),
        sealed_unseal_key,
    };
    let value = serde_json::to_value(&answer).map_err(|error| ApiError::internal(&error))?;
    Ok(system(Reply::data(value)))
}

/// `POST sys/storage/raft/bootstrap/answer` on the leader: a correct answer gets
/// the node a certificate for its public key and a place in the cluster.
pub(super) async fn answer(core: &Core, data: &Map<String, Value>) -> ApiResult<Routed> {
    let unsealed = core.unsealed()?;
    let fields = Fields::new(data);
    let server_id = server_id(&fields)?;
    let required = |key: &str| -> ApiResult<String> {
        fields
            .string(key)?
            .filter(|value| !value.is_empty())
            .ok_or_else(|| ApiError::invalid(format!("{key} is required")))
    };
    let request = join::AnswerRequest {
        server_id,
        answer: required("answer")?,
        public_key: required("public_key")?,
        cluster_addr: required("cluster_addr")?,
        api_addr: fields.string("api_addr")?.unwrap_or_default(),
        non_voter: fields.bool("non_voter")?.unwrap_or(false),
    };
    let answer =
        join::decode(&request.answer).ok_or_else(|| ApiError::invalid("answer must be base64"))?;
    let public_key = join::decode(&request.public_key)
        .ok_or_else(|| ApiError::invalid("public_key must be base64"))
        .and_then(|bytes| {
            RawPublicKey::new(bytes).map_err(|error| ApiError::invalid(error.to_string()))
        })?;
    // Everything a wrong answer could cost is checked without I/O first; the
    // address is resolved (without blocking a worker) only for a right one.
    if !network::well_formed(&request.cluster_addr) {
        return Err(ApiError::invalid(format!(
            "cluster_addr {:?} is not a host:port",
            request.cluster_addr
        )));
    }
    let server_id = request.server_id.clone();
    let id = node_id(&server_id);
    if id == core.replica.id() {
        return Err(ApiError::invalid(format!(
            "server_id {server_id:?} is the leader's own"
        )));
    }
    if !core.challenges.verify(&request, &answer) {
        return Err(ApiError::invalid(format!(
            "the answer does not match a pending challenge for {server_id:?}; ask for a new challenge"
        )));
    }
    if network::resolve(&request.cluster_addr).await.is_none() {
        return Err(ApiError::invalid(format!(
            "cluster_addr {:?} is not a reachable host:port",
            request.cluster_addr
        )));
    }
    let ca: ClusterCa = unsealed
        .barrier
        .get_json(tls::CA_PATH)?
        .ok_or_else(|| ApiError::internal(&"the cluster CA is missing from storage"))?;
    let node_cert = ca
        .issue(id, &server_id, &public_key)
        .map_err(|error| ApiError::internal(&error))?;
    core.replica
        .add_member(
            id,
            NodeInfo {
                name: server_id.clone(),
                api_addr: request.api_addr,
                cluster_addr: request.cluster_addr,
                non_voter: request.non_voter,
            },
        )
        .await?;
    tracing::info!(node = %server_id, "admitted a new member");
    let admission = join::Admission {
        ca_cert: ca.cert_pem.clone(),
        node_cert,
        index: core.replica.applied_index(),
    };
    let value = serde_json::to_value(&admission).map_err(|error| ApiError::internal(&error))?;
    Ok(system(Reply::data(value)))
}

/// The authenticated `sys/storage/raft/` endpoints (all need `sudo`).
pub(super) async fn route(
    core: &Core,
    unsealed: &Unsealed,
    request: &Request,
    rest: &str,
) -> ApiResult<Routed> {
    let operation = request.operation;
    let data = &request.data;
    match (rest.strip_prefix("storage/raft/"), operation) {
        (Some("configuration"), Operation::Read) => Ok(system(configuration(core))),
        (Some("remove-peer"), Operation::Write) => {
            let server_id = server_id(&Fields::new(data))?;
            if !core
                .replica
                .members()
                .iter()
                .any(|member| member.node.name == server_id)
            {
                return Err(ApiError::invalid(format!("no member named {server_id:?}")));
            }
            core.replica.remove_member(node_id(&server_id)).await?;
            tracing::info!(node = %server_id, "removed a member");
            Ok(system(Reply::NoContent))
        }
        (Some("snapshot"), Operation::Read) => {
            let state = core.replica.export(Value::Null)?;
            let bytes = archive::pack(
                &state,
                core.replica.indexes().applied,
                crate::clock::now_seconds(),
                |sums| {
                    unsealed
                        .barrier
                        .encrypt_blob(archive::SEALED_SUMS_LABEL, sums)
                        .map_err(std::io::Error::other)
                },
            )
            .map_err(|error| ApiError::internal(&error))?;
            Ok(Routed {
                reply: Reply::Binary("application/octet-stream", bytes),
                mount_type: "system",
                flatten: false,
            })
        }
        (Some(kind @ ("snapshot" | "snapshot-force")), Operation::Write) => {
            restore(unsealed, request, kind == "snapshot-force").await
        }
        (
            Some(
                "configuration"
                | "remove-peer"
                | "snapshot"
                | "snapshot-force"
                | "join"
                | "bootstrap/challenge"
                | "bootstrap/answer",
            ),
            _,
        ) => Err(ApiError::unsupported(
            &format!("sys/{rest}"),
            operation.as_str(),
        )),
        _ => Err(ApiError::no_route(&format!("sys/{rest}"))),
    }
}

fn another_cluster() -> ApiError {
    ApiError::invalid(
        "the snapshot was taken on another cluster (this cluster's keys do not open it); \
         restore it with sys/storage/raft/snapshot-force, then unseal with that cluster's key shares",
    )
}

/// The members as Vault's `sys/storage/raft/configuration` lists them.
fn configuration(core: &Core) -> Reply {
    let mut members = core.replica.members();
    members.sort_by(|left, right| left.node.name.cmp(&right.node.name));
    let servers: Vec<Value> = members
        .into_iter()
        .map(|member| {
            let address = network::host_port(&member.node.cluster_addr);
            json!({
                "node_id": member.node.name,
                "address": address,
                "leader": member.leader,
                "voter": member.voter,
                "protocol_version": "3",
            })
        })
        .collect();
    Reply::data(json!({
        "config": {
            "index": core.replica.indexes().applied,
            "servers": servers,
        }
    }))
}

/// Replaces the whole store with an uploaded snapshot, through the Raft log, on
/// every member. The snapshot is checked first (checksums, and without `force`
/// that this cluster sealed its sums and its keys open it); a bad one changes
/// nothing. A bare coffer snapshot (saved by older versions) is taken too.
async fn restore(unsealed: &Unsealed, request: &Request, force: bool) -> ApiResult<Routed> {
    let body = request
        .raw_body
        .as_ref()
        .filter(|bytes| !bytes.is_empty())
        .ok_or_else(|| ApiError::invalid("the request body must be a snapshot file"))?;
    let bytes = if archive::is_archive(body) {
        // The state is ciphertext, so the archive is barely compressed: its
        // content cannot honestly be much larger than the upload.
        let limit = (body.len() as u64).saturating_mul(2) + (1 << 20);
        let unpacked = archive::unpack(body, limit)
            .map_err(|error| ApiError::invalid(format!("the snapshot was refused: {error}")))?;
        if !force {
            let sealed_here = unpacked.sealed_sums.as_ref().is_some_and(|sealed| {
                unsealed
                    .barrier
                    .decrypt_blob(archive::SEALED_SUMS_LABEL, sealed)
                    .is_ok_and(|sums| sums.as_slice() == unpacked.sums.as_slice())
            });
            if !sealed_here {
                return Err(another_cluster());
            }
        }
        unpacked.state
    } else {
        body.clone()
    };
    let decoded = snapshot::decode(&bytes)
        .map_err(|error| ApiError::invalid(format!("the snapshot was refused: {error}")))?;
    let keyring = decoded
        .pairs
        .iter()
        .find(|(key, _)| key.as_slice() == KEYRING_PATH.as_bytes())
        .map(|(_, value)| value)
        .ok_or_else(|| {
            ApiError::invalid(
                "the snapshot was refused: it holds no keyring (not an initialized store)",
            )
        })?;
    if !force && !unsealed.barrier.opens_keyring(keyring) {
        return Err(another_cluster());
    }
    let pairs = decoded.pairs.len();
    unsealed
        .barrier
        .commit_command(Command {
            ops: vec![Op::Restore { snapshot: bytes }],
            ..Default::default()
        })
        .await?;
    tracing::warn!(pairs, force, "restored a snapshot");
    Ok(system(Reply::NoContent))
}
