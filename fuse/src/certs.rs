//! Certificates behind `/secrets/<pki mount>/issue/<role>/<name>/`: one
//! issuance per (caller uid and gid, directory), shared by the directory's
//! files, so `cert.pem` and `key.pem` read by two `cat`s are one key pair.
//!
//! A held certificate is served until 2/3 of its validity has passed, then
//! the next open issues a new one. One with a lease (a `generate_lease`
//! role) is checked with the core at every open, so a certificate whose
//! lease an operator revoked (which revokes the certificate) is replaced at
//! once. Expired ones are forgotten by the renewal round.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use coffer_protocols::{Handler, LocalPeer, Operation};
use fuser::Errno;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::client::{Client, Who};
use crate::leases::fs_path;
use crate::lock;

/// One issuance: the PEMs it answered with. The private key is wiped when
/// it is dropped.
pub struct Issued {
    pub certificate: String,
    pub private_key: Zeroizing<String>,
    /// The issuing CA and its parents, nearest first.
    pub ca_chain: Vec<String>,
    /// Empty when the role gives no lease.
    lease_id: String,
    /// Unix seconds.
    issued: u64,
    /// Unix seconds: the certificate's notAfter.
    expiration: u64,
}

impl Issued {
    /// 2/3 of the validity has passed: the next open issues anew.
    fn replace_due(&self, now: u64) -> bool {
        let validity = self.expiration.saturating_sub(self.issued);
        now >= self.issued + validity * 2 / 3
    }

    /// PEM blocks ending in exactly one newline each, concatenated.
    fn blocks<'a>(blocks: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
        let mut bytes = Vec::new();
        for block in blocks {
            let block = block.trim();
            if !block.is_empty() {
                bytes.extend_from_slice(block.as_bytes());
                bytes.push(b'\n');
            }
        }
        bytes
    }

    /// `cert.pem`: the certificate alone.
    pub fn cert_pem(&self) -> Vec<u8> {
        Self::blocks([self.certificate.as_str()])
    }

    /// `key.pem`: its private key.
    pub fn key_pem(&self) -> Vec<u8> {
        Self::blocks([self.private_key.as_str()])
    }

    /// `chain.pem`: the issuing CA and its parents.
    pub fn chain_pem(&self) -> Vec<u8> {
        Self::blocks(self.ca_chain.iter().map(String::as_str))
    }

    /// `bundle.pem`: key, certificate and chain in one file, as Vault's
    /// `pem_bundle` (what HAProxy and similar servers load).
    pub fn bundle_pem(&self) -> Vec<u8> {
        Self::blocks(
            [self.private_key.as_str(), self.certificate.as_str()]
                .into_iter()
                .chain(self.ca_chain.iter().map(String::as_str)),
        )
    }
}

type Key = (u32, u32, String);
type Slot = Arc<Mutex<Option<Issued>>>;

/// The held certificates, one slot per (uid, gid, certificate directory).
#[derive(Default)]
pub struct Certificates {
    slots: Mutex<HashMap<Key, Slot>>,
}

impl Certificates {
    fn slot(&self, who: Who, directory: &str) -> Slot {
        lock(&self.slots)
            .entry((who.uid, who.gid, directory.to_owned()))
            .or_default()
            .clone()
    }

    /// The certificate `who` reads at `directory` (the filesystem path of
    /// `<mount>/issue/<role>/<name>`), writing `issue_path` with
    /// `common_name` for a new one when none is held, the held one is past
    /// 2/3 of its validity, or its lease is gone. Calls `snapshot` with it
    /// while it is locked.
    pub fn open<H: Handler, T>(
        &self,
        client: &Client<H>,
        who: Who,
        directory: &str,
        issue_path: &str,
        common_name: &str,
        snapshot: impl FnOnce(&Issued) -> T,
    ) -> Result<T, Errno> {
        let slot = self.slot(who, directory);
        let mut held = lock(&slot);
        let now = crate::leases::now_seconds();
        if held
            .as_ref()
            .is_some_and(|current| current.replace_due(now))
        {
            *held = None;
        }
        if let Some(current) = held.as_ref().filter(|current| !current.lease_id.is_empty()) {
            let mut data = Map::new();
            data.insert("lease_id".into(), json!(current.lease_id));
            match client.call(who, Operation::Read, fs_path(directory), data) {
                Ok(_) => {}
                // Revoked or expired meanwhile: issue anew.
                Err(error) if error == Errno::ENOENT => *held = None,
                Err(error) => return Err(error),
            }
        }
        if held.is_none() {
            let mut owner = LocalPeer::from_kernel(who.uid, who.gid, who.pid);
            owner.describe();
            let mut data = Map::new();
            data.insert("common_name".into(), json!(common_name));
            let response = client.block_on(client.call_as(
                owner,
                Operation::Write,
                issue_path.to_owned(),
                data,
            ))?;
            let data = response.data.as_ref().ok_or(Errno::EIO)?;
            let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
            let (Some(certificate), Some(private_key)) = (text("certificate"), text("private_key"))
            else {
                return Err(Errno::EIO);
            };
            let ca_chain = match data.get("ca_chain").and_then(Value::as_array) {
                Some(chain) => chain
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                None => text("issuing_ca").into_iter().collect(),
            };
            *held = Some(Issued {
                certificate,
                private_key: Zeroizing::new(private_key),
                ca_chain,
                lease_id: response.lease_id.clone(),
                issued: now,
                expiration: data
                    .get("expiration")
                    .and_then(Value::as_u64)
                    .unwrap_or(now),
            });
        }
        let current = held.as_ref().ok_or(Errno::EIO)?;
        Ok(snapshot(current))
    }

    /// Forgets the certificates that have expired.
    pub fn forget_expired(&self) {
        let now = crate::leases::now_seconds();
        lock(&self.slots).retain(|_, slot| {
            Arc::strong_count(slot) > 1
                || slot.try_lock().map_or(true, |held| {
                    held.as_ref().is_some_and(|issued| issued.expiration > now)
                })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(issued: u64, expiration: u64) -> Issued {
        Issued {
            certificate: "-----BEGIN CERTIFICATE-----\nleaf\n-----END CERTIFICATE-----\n".into(),
            private_key: Zeroizing::new(
                "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----".into(),
            ),
            ca_chain: vec![
                "-----BEGIN CERTIFICATE-----\nint\n-----END CERTIFICATE-----".into(),
                "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n\n".into(),
            ],
            lease_id: String::new(),
            issued,
            expiration,
        }
    }

    #[test]
    fn replaced_at_two_thirds_of_the_validity() {
        let cert = issued(1_000, 1_300);
        assert!(!cert.replace_due(1_000));
        assert!(!cert.replace_due(1_199));
        assert!(cert.replace_due(1_200));
        assert!(cert.replace_due(2_000));
    }

    #[test]
    fn files_are_pem_blocks_one_newline_each() {
        let cert = issued(0, 1);
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
        assert_eq!(
            text(cert.chain_pem()),
            "-----BEGIN CERTIFICATE-----\nint\n-----END CERTIFICATE-----\n\
             -----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"
        );
        let bundle = text(cert.bundle_pem());
        assert!(bundle.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(bundle.matches("BEGIN").count(), 4);
        assert!(text(cert.cert_pem()).ends_with("-----END CERTIFICATE-----\n"));
        assert!(text(cert.key_pem()).ends_with("-----END PRIVATE KEY-----\n"));
    }
}
