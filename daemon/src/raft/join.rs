//! Joining a cluster, the way Vault's Raft join works: a new node asks a member for
//! a challenge, the operator unseals the new node with the cluster's own key
//! shares, and the node proves it holds them by answering the challenge. Only then
//! does the leader issue the node's cluster certificate and add it as a member.
//!
//! The challenge comes with what the new node needs to check its key shares before
//! it has any replica: the seal configuration and the sealed root key and keyring.
//! Every replica stores exactly these records (ciphertext under the unseal key and
//! the root key), so handing them out reveals nothing that a copy of any member's
//! disk would not.
//!
//! The answer is not the challenge itself but an HMAC, keyed by the challenge, of
//! everything the node asks for (its name, addresses and public key). The
//! challenge never crosses the wire in the clear, so whoever watches or alters a
//! join over plain HTTP can neither replay an answer nor have the leader certify
//! another key or address.
//!
//! Both halves live here: [`Challenges`] on the leader, [`LeaderClient`] on the
//! joining node. The core's `sys/storage/raft/...` endpoints glue them to the seal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::crypto;
use crate::error_chain;
use crate::seal::SealConfig;

/// The label (associated data) the challenge is encrypted under.
pub const CHALLENGE_LABEL: &str = "core/raft/challenge";
const CHALLENGE_LEN: usize = 32;
/// How long a challenge waits for its answer: long enough for operators to gather
/// their key shares.
const CHALLENGE_LIFETIME: Duration = Duration::from_secs(3600);
/// At most this many joins may be pending; the oldest is dropped for a new one.
const MAX_PENDING: usize = 128;
const MAX_SERVER_ID_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("leader_api_addr {0:?} is not an http:// or https:// URL")]
    Address(String),
    #[error("cannot read the leader's CA certificate: {0}")]
    CaCertificate(String),
    #[error("cannot reach the leader at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("the leader at {address} refused: {message}")]
    Refused {
        address: String,
        status: u16,
        message: String,
    },
    #[error("the leader at {0} answered something that is not a coffer join answer")]
    Malformed(String),
}

/// A node name operators give (`node_id`): letters, digits, `.`, `_`, `-`.
pub fn validate_server_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_SERVER_ID_LEN {
        return Err(format!(
            "server_id must be 1 to {MAX_SERVER_ID_LEN} characters"
        ));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("server_id may hold only letters, digits, '.', '_' and '-'".into());
    }
    Ok(())
}

struct Pending {
    nonce: Zeroizing<Vec<u8>>,
    issued: Instant,
}

/// The leader's pending challenges, by server id, in memory only: a leader change
/// loses them and the joining node asks again.
#[derive(Default)]
pub struct Challenges {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Challenges {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh random challenge for `server_id`, replacing any earlier one.
    pub fn issue(&self, server_id: &str) -> Result<Zeroizing<Vec<u8>>, crypto::RandomError> {
        let nonce = crypto::random_key::<CHALLENGE_LEN>()?;
        let nonce = Zeroizing::new(nonce.to_vec());
        let mut pending = self.lock();
        pending.retain(|_, entry| entry.issued.elapsed() < CHALLENGE_LIFETIME);
        if pending.len() >= MAX_PENDING && !pending.contains_key(server_id) {
            let oldest = pending
                .iter()
                .min_by_key(|(_, entry)| entry.issued)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                pending.remove(&oldest);
            }
        }
        pending.insert(
            server_id.to_owned(),
            Pending {
                nonce: nonce.clone(),
                issued: Instant::now(),
            },
        );
        Ok(nonce)
    }

    /// Whether `answer` is [`AnswerRequest::proof`] of `request` under the pending
    /// challenge of its server id. A right answer uses the challenge up; a
    /// wrong one leaves it for the node it was issued to (anyone may send an
    /// answer, and guessing a 32-byte HMAC is hopeless).
    pub fn verify(&self, request: &AnswerRequest, answer: &[u8]) -> bool {
        let mut pending = self.lock();
        let right = pending.get(&request.server_id).is_some_and(|entry| {
            entry.issued.elapsed() < CHALLENGE_LIFETIME
                && crypto::constant_time_eq(&request.proof(&entry.nonce), answer)
        });
        if right {
            pending.remove(&request.server_id);
        }
        right
    }
}

/// What a member answers to `sys/storage/raft/bootstrap/challenge`.
#[derive(Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// The random challenge, encrypted by the cluster's keyring (base64).
    pub challenge: String,
    pub seal_config: SealConfig,
    /// The root key sealed by the unseal key, as stored (base64).
    pub sealed_root_key: String,
    /// The keyring sealed by the root key, as stored (base64).
    pub sealed_keyring: String,
    /// Under an auto seal: the unseal key as the seal wrapped it (base64); a
    /// joining node with access to the same KMS key unseals with no operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_unseal_key: Option<String>,
}

/// What the joining node sends to `sys/storage/raft/bootstrap/answer`.
#[derive(Serialize, Deserialize)]
pub struct AnswerRequest {
    pub server_id: String,
    /// [`AnswerRequest::proof`] under the decrypted challenge (base64).
    pub answer: String,
    /// The node's P-256 public key as an uncompressed point (base64).
    pub public_key: String,
    /// Where the node's cluster listener is reachable (`https://host:port`).
    pub cluster_addr: String,
    /// The node's client API address, for redirects.
    pub api_addr: String,
    /// Join as a non-voting member (it replicates but never counts for quorum).
    #[serde(default)]
    pub non_voter: bool,
}

impl AnswerRequest {
    /// HMAC-SHA256, keyed by the challenge, of every field the leader acts on.
    pub fn proof(&self, challenge: &[u8]) -> Vec<u8> {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, challenge);
        let mut context = aws_lc_rs::hmac::Context::with_key(&key);
        for field in [
            "coffer-join-v1",
            &self.server_id,
            &self.public_key,
            &self.cluster_addr,
            &self.api_addr,
            if self.non_voter { "non-voter" } else { "voter" },
        ] {
            // Length-prefixed, so no two field lists give the same bytes.
            context.update(&(field.len() as u64).to_be_bytes());
            context.update(field.as_bytes());
        }
        context.sign().as_ref().to_vec()
    }
}

/// The leader's answer to a correct challenge answer.
#[derive(Serialize, Deserialize)]
pub struct Admission {
    /// The cluster CA (PEM), the only root the node's cluster TLS trusts.
    pub ca_cert: String,
    /// The node's certificate for the public key it sent (PEM).
    pub node_cert: String,
    /// The leader's applied index when it admitted the node: the node's replica
    /// holds the cluster's state once it has applied this far.
    pub index: u64,
}

pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text.trim()).ok()
}

/// The joining node's client for a member's API.
/// The most a member's answer to a join may hold: a challenge with the sealed
/// keyring is a few KiB.
const MAX_BODY: usize = 1 << 20;

pub struct LeaderClient {
    http: reqwest::Client,
    address: String,
}

impl LeaderClient {
    /// A client for `address` (`http(s)://host:port`), trusting `ca_pem` (if any)
    /// besides the system's roots.
    pub fn new(address: &str, ca_pem: Option<&[u8]>) -> Result<LeaderClient, Error> {
        let address = address.trim().trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&address).map_err(|_| Error::Address(address.clone()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(Error::Address(address));
        }
        // A join runs before any authentication, at an address a caller
        // chose: no redirects, short timeouts, and bodies read up to a cap.
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10));
        if let Some(pem) = ca_pem {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject as _;
            // reqwest checks a PEM only when the client is built; say what is wrong.
            CertificateDer::from_pem_slice(pem)
                .map_err(|_| Error::CaCertificate("not a PEM certificate".into()))?;
            let certificate = reqwest::Certificate::from_pem(pem)
                .map_err(|error| Error::CaCertificate(error.to_string()))?;
            builder = builder.add_root_certificate(certificate);
        }
        let http = builder.build().map_err(|error| Error::Unreachable {
            address: address.clone(),
            reason: error.to_string(),
        })?;
        Ok(LeaderClient { http, address })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Error> {
        let url = format!("{}/v1/{path}", self.address);
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|error| Error::Unreachable {
                address: self.address.clone(),
                reason: error_chain::describe(&error),
            })?;
        let status = response.status();
        let document = self.read_capped(response).await?;
        if !status.is_success() {
            let message = document["errors"]
                .as_array()
                .map(|errors| {
                    errors
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .filter(|message| !message.is_empty())
                .unwrap_or_else(|| format!("status {status}"));
            return Err(Error::Refused {
                address: self.address.clone(),
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_value(document["data"].clone())
            .map_err(|_| Error::Malformed(self.address.clone()))
    }

    /// A JSON body of at most [`MAX_BODY`] bytes.
    async fn read_capped(&self, mut response: reqwest::Response) -> Result<Value, Error> {
        let malformed = || Error::Malformed(self.address.clone());
        if response
            .content_length()
            .is_some_and(|length| length > MAX_BODY as u64)
        {
            return Err(malformed());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|_| malformed())? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(malformed());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| malformed())
    }

    pub async fn challenge(&self, server_id: &str) -> Result<ChallengeResponse, Error> {
        self.post(
            "sys/storage/raft/bootstrap/challenge",
            &serde_json::json!({ "server_id": server_id }),
        )
        .await
    }

    pub async fn answer(&self, request: &AnswerRequest) -> Result<Admission, Error> {
        self.post("sys/storage/raft/bootstrap/answer", request)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(server_id: &str) -> AnswerRequest {
        AnswerRequest {
            server_id: server_id.into(),
            answer: String::new(),
            public_key: "BAAA".into(),
            cluster_addr: "https://127.0.0.2:8201".into(),
            api_addr: "http://127.0.0.2:8200".into(),
            non_voter: false,
        }
    }

    #[test]
    fn a_challenge_is_good_for_one_right_answer() {
        let challenges = Challenges::default();
        let nonce = challenges.issue("n2").unwrap();
        let n2 = request("n2");
        assert!(
            !challenges.verify(&request("n3"), &request("n3").proof(&nonce)),
            "another node's challenge"
        );
        assert!(challenges.verify(&n2, &n2.proof(&nonce)));
        assert!(
            !challenges.verify(&n2, &n2.proof(&nonce)),
            "a challenge is used once"
        );

        // Anyone may send an answer: a wrong one leaves the challenge to the
        // node it was issued to.
        let nonce = challenges.issue("n2").unwrap();
        assert!(!challenges.verify(&n2, b"wrong"));
        assert!(!challenges.verify(&n2, &request("n2").proof(b"guess")));
        assert!(
            challenges.verify(&n2, &n2.proof(&nonce)),
            "a wrong answer does not spend it"
        );
    }

    #[test]
    fn the_answer_binds_the_key_and_addresses() {
        let challenges = Challenges::default();
        let nonce = challenges.issue("n2").unwrap();
        let honest = request("n2");
        let proof = honest.proof(&nonce);
        assert_ne!(
            proof,
            nonce.to_vec(),
            "the challenge never travels in clear"
        );
        for tampered in [
            AnswerRequest {
                public_key: "BBBB".into(),
                ..request("n2")
            },
            AnswerRequest {
                cluster_addr: "https://10.9.9.9:8201".into(),
                ..request("n2")
            },
            AnswerRequest {
                non_voter: true,
                ..request("n2")
            },
        ] {
            assert_ne!(tampered.proof(&nonce), proof);
        }
        let swapped = AnswerRequest {
            public_key: "BBBB".into(),
            ..request("n2")
        };
        assert!(
            !challenges.verify(&swapped, &proof),
            "a proof for one key does not admit another"
        );
    }

    #[test]
    fn pending_challenges_are_bounded() {
        let challenges = Challenges::default();
        let first = challenges.issue("first").unwrap();
        for index in 0..MAX_PENDING {
            challenges.issue(&format!("n{index}")).unwrap();
        }
        assert_eq!(challenges.lock().len(), MAX_PENDING);
        let request = request("first");
        assert!(
            !challenges.verify(&request, &request.proof(&first)),
            "the oldest was dropped"
        );
    }

    #[test]
    fn server_ids() {
        for good in ["n1", "node-2.example_a", &"a".repeat(128)] {
            assert!(validate_server_id(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "n1;drop", "ü", &"a".repeat(129)] {
            assert!(validate_server_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn leader_addresses_must_be_urls() {
        assert!(LeaderClient::new("http://127.0.0.1:8200/", None).is_ok());
        assert!(matches!(
            LeaderClient::new("127.0.0.1:8200", None),
            Err(Error::Address(_))
        ));
        assert!(matches!(
            LeaderClient::new("ftp://host", None),
            Err(Error::Address(_))
        ));
        assert!(matches!(
            LeaderClient::new("https://host", Some(b"not pem")),
            Err(Error::CaCertificate(_))
        ));
    }
}
