//! The `pki` secrets engine: Vault's certificate authority on rcgen.
//!
//! A mount holds issuers (a CA certificate and the id of its key), the keys
//! (PKCS#8, behind the barrier like every value, never returned after an
//! `exported` generate), roles, the URLs written into certificates, and the
//! certificates it issued (`certs/<serial>`), all under the mount's own data
//! prefix. Shapes, defaults and error texts follow OpenBao 2.7.2
//! (`shared/reference/pki.md`).
//!
//! Served so far: `root/generate/{internal,exported}`,
//! `intermediate/generate/{internal,exported}`, `root/sign-intermediate`,
//! `intermediate/set-signed`, `config/ca` and `issuers/import/bundle`,
//! `roles/<name>`, `issue/<role>`, `sign/<role>`,
//! `sign-verbatim`, `revoke`, `crl/rotate`, `tidy`, `tidy-status`,
//! `cert/<serial>`, `LIST certs`,
//! `LIST certs/revoked`, `config/urls`,
//! `config/issuers`, `LIST issuers`, `issuer/<ref>` (read, update, delete),
//! `DELETE root`, and the unauthenticated
//! `ca`, `ca/pem`, `ca_chain`, `crl`, `crl/pem`,
//! `issuer/<ref>/{pem,der,json,crl,crl/pem}`.

mod certs;
mod files;
mod issuers;
mod keys;
mod revoke;
mod roles;
mod sign;
mod tidy;

pub use revoke::seed_revocations;

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_protocols::{LogicalResponse, Operation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::barrier::Barrier;
use crate::duration;
use crate::engine::{BoxFuture, Environment, Mount, Requester, SecretEngine};
use certs::{CertRecord, Urls};
use keys::{KeySpec, StoredKey};
use roles::Role;

const ROLES: &str = "role/";
const ISSUERS: &str = "issuer/";
const KEYS: &str = "key/";
const CERTS: &str = "certs/";
const URLS: &str = "config/urls";
const DEFAULT_ISSUER: &str = "config/issuers";

/// Serves every `pki` mount of an unsealed node.
pub struct PkiEngine {
    barrier: Arc<Barrier>,
    /// Where the certificates of `generate_lease` roles get their leases.
    leases: Arc<crate::leases::Manager>,
    /// Revocations and CRL rebuilds of this node, one at a time: each CRL
    /// is built from the revocations stored before it.
    revocations: tokio::sync::Mutex<()>,
    /// Issuers parsed with their keys, by data prefix and issuer id, so a
    /// request does not parse the CA certificate and key again.
    signers: Signers,
    /// Records every issue reads (roles, URLs, the default issuer and the
    /// issuers), parsed, until a replicated write touches them. None is
    /// secret; keys are not among them.
    cached: Cached,
}

/// The parsed records of every mount, by storage key.
#[derive(Default)]
struct Cached {
    roles: crate::cache::Parsed<Role>,
    urls: crate::cache::Parsed<Urls>,
    config: crate::cache::Parsed<IssuerConfig>,
    issuers: crate::cache::Parsed<Issuer>,
}

impl Cached {
    fn forget(&self, key: &str) {
        self.roles.forget(key);
        self.urls.forget(key);
        self.config.forget(key);
        self.issuers.forget(key);
    }

    fn clear(&self) {
        self.roles.clear();
        self.urls.clear();
        self.config.clear();
        self.issuers.clear();
    }
}

type Signers = std::sync::Mutex<std::collections::HashMap<String, Arc<Signer>>>;

/// An issuer ready to sign: its record, and rcgen's issuer holding its key.
struct Signer {
    issuer: Issuer,
    signer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// The registry's factory.
pub fn engine(environment: &Environment) -> Arc<dyn SecretEngine> {
    Arc::new(PkiEngine {
        barrier: environment.barrier.clone(),
        leases: environment.leases.clone(),
        revocations: tokio::sync::Mutex::new(()),
        signers: Signers::default(),
        cached: Cached::default(),
    })
}

/// A CA certificate this mount issues with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Issuer {
    id: String,
    #[serde(default)]
    name: String,
    /// PEM.
    certificate: String,
    key_id: String,
    serial_number: String,
    not_after: u64,
    /// The PEMs above this issuer, nearest first (empty for a root).
    #[serde(default)]
    parents: Vec<String>,
    /// What a leaf asking to outlive this issuer gets.
    #[serde(default)]
    leaf_not_after_behavior: LeafNotAfter,
    /// This issuer's own AIA and CRL URLs; empty: the mount's `config/urls`.
    #[serde(default)]
    urls: Urls,
}

/// Vault's `leaf_not_after_behavior`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LeafNotAfter {
    /// Refuse the request.
    #[default]
    Err,
    /// Cut the leaf's validity at the issuer's.
    Truncate,
    /// Issue it as asked.
    Permit,
}

impl Issuer {
    /// This issuer's chain: itself, then its parents.
    fn ca_chain(&self) -> Vec<String> {
        std::iter::once(self.certificate.clone())
            .chain(self.parents.iter().cloned())
            .collect()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IssuerConfig {
    default: String,
}

/// One mount's data.
struct Store<'a> {
    barrier: &'a Barrier,
    prefix: String,
    signers: &'a Signers,
    cached: &'a Cached,
}

impl Store<'_> {
    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn get<T: serde::de::DeserializeOwned>(&self, rest: &str) -> ApiResult<Option<T>> {
        Ok(self.barrier.get_json(&self.key(rest))?)
    }

    async fn put<T: Serialize>(&self, rest: &str, value: &T) -> ApiResult<()> {
        self.barrier.put_json(&self.key(rest), value).await?;
        Ok(())
    }

    fn list(&self, rest: &str) -> ApiResult<Vec<String>> {
        Ok(self.barrier.list(&self.key(rest))?)
    }

    /// Every issuer of the mount.
    fn issuers(&self) -> ApiResult<Vec<Issuer>> {
        let mut issuers = Vec::new();
        for id in self.list(ISSUERS)? {
            issuers.extend(self.get::<Issuer>(&format!("{ISSUERS}{id}"))?);
        }
        Ok(issuers)
    }

    /// Every key of the mount.
    fn keys(&self) -> ApiResult<Vec<StoredKey>> {
        let mut keys = Vec::new();
        for id in self.list(KEYS)? {
            keys.extend(self.get::<StoredKey>(&format!("{KEYS}{id}"))?);
        }
        Ok(keys)
    }

    /// Keeps an issued certificate under `certs/<serial>`.
    async fn put_cert(
        &self,
        serial: &str,
        pem: &str,
        issuer_id: &str,
        not_after: u64,
    ) -> ApiResult<()> {
        self.put(
            &format!("{CERTS}{}", serial.replace(':', "-")),
            &CertRecord {
                certificate: pem.to_owned(),
                issuer_id: issuer_id.to_owned(),
                revocation_time: 0,
                not_after,
            },
        )
        .await
    }

    fn role(&self, name: &str) -> ApiResult<Option<Role>> {
        if !crate::policy::is_name(name, "-_.@") {
            return Ok(None);
        }
        let rest = format!("{ROLES}{name}");
        Ok(self
            .cached
            .roles
            .get_or_load(&self.key(&rest), || self.get(&rest))?
            .map(|role| (*role).clone()))
    }

    fn urls(&self) -> ApiResult<Urls> {
        Ok(self
            .cached
            .urls
            .get_or_load(&self.key(URLS), || self.get(URLS))?
            .map(|urls| (*urls).clone())
            .unwrap_or_default())
    }

    /// The issuer with id `id`.
    fn issuer_by_id(&self, id: &str) -> ApiResult<Option<Issuer>> {
        let rest = format!("{ISSUERS}{id}");
        Ok(self
            .cached
            .issuers
            .get_or_load(&self.key(&rest), || self.get(&rest))?
            .map(|issuer| (*issuer).clone()))
    }

    /// The issuer `reference` names: `default`, an id or a name.
    fn issuer(&self, reference: &str) -> ApiResult<Option<Issuer>> {
        let reference = reference.trim();
        if reference.is_empty() || reference == "default" {
            let Some(config) = self
                .cached
                .config
                .get_or_load(&self.key(DEFAULT_ISSUER), || self.get(DEFAULT_ISSUER))?
            else {
                return Ok(None);
            };
            if config.default.is_empty() {
                return Ok(None);
            }
            return self.issuer_by_id(&config.default);
        }
        if uuid::Uuid::parse_str(reference).is_ok()
            && let Some(issuer) = self.issuer_by_id(reference)?
        {
            return Ok(Some(issuer));
        }
        Ok(self
            .issuers()?
            .into_iter()
            .find(|issuer| !issuer.name.is_empty() && issuer.name == reference))
    }

    /// The issuer a request signs with, or a clear 400 when there is none.
    /// Parsed once: a cached signer serves while its record is still the
    /// stored one.
    fn signing_issuer(&self, reference: &str) -> ApiResult<Arc<Signer>> {
        let issuer = self.issuer(reference)?.ok_or_else(|| {
            if reference == "default" {
                ApiError::invalid(
                    "no default issuer currently configured: generate or import a CA first (root/generate/internal)",
                )
            } else {
                ApiError::invalid(format!("unable to find PKI issuer for reference: {reference}"))
            }
        })?;
        let cache_key = format!("{}{}", self.prefix, issuer.id);
        let mut signers = self
            .signers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cached) = signers.get(&cache_key)
            && cached.issuer == issuer
        {
            return Ok(cached.clone());
        }
        let key: StoredKey = self
            .get(&format!("{KEYS}{}", issuer.key_id))?
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "the issuer {} has no private key in this mount",
                    issuer.id
                ))
            })?;
        let signer = rcgen::Issuer::from_ca_cert_pem(&issuer.certificate, key.load()?)
            .map_err(|error| ApiError::internal(&error))?;
        let ready = Arc::new(Signer { issuer, signer });
        signers.insert(cache_key, ready.clone());
        Ok(ready)
    }
}

/// The validity a request gets: its TTL (or the role's, or the mount's),
/// clamped to the maximum with Vault's warning.
fn validity(
    requested: Option<u64>,
    role_ttl: u64,
    max: u64,
    mount: &Mount<'_>,
    warnings: &mut Vec<String>,
) -> u64 {
    let ttl = requested
        .filter(|ttl| *ttl > 0)
        .or((role_ttl > 0).then_some(role_ttl))
        .unwrap_or(mount.default_ttl);
    let max = if max > 0 { max } else { mount.max_ttl };
    if ttl > max {
        warnings.push(format!(
            "TTL {:?} is longer than permitted maxTTL {:?}, so maxTTL is being used",
            duration::format_go(ttl),
            duration::format_go(max)
        ));
        return max;
    }
    ttl
}

/// The subject fields a role (or a root request) sets.
fn subject(
    params: &mut rcgen::CertificateParams,
    common_name: &str,
    fields: &[(rcgen::DnType, &[String])],
) {
    let mut name = rcgen::DistinguishedName::new();
    for (kind, values) in fields {
        for value in *values {
            name.push(kind.clone(), value.as_str());
        }
    }
    if !common_name.is_empty() {
        name.push(rcgen::DnType::CommonName, common_name);
    }
    params.distinguished_name = name;
}

fn sans(
    names: &[String],
    ips: &[std::net::IpAddr],
    uris: &[String],
) -> ApiResult<Vec<rcgen::SanType>> {
    let invalid =
        |what: &str| ApiError::invalid(format!("invalid {what} in the subject alternative names"));
    let mut sans = Vec::new();
    for name in names {
        sans.push(if name.contains('@') {
            rcgen::SanType::Rfc822Name(name.clone().try_into().map_err(|_| invalid("email"))?)
        } else {
            rcgen::SanType::DnsName(name.clone().try_into().map_err(|_| invalid("DNS name"))?)
        });
    }
    sans.extend(ips.iter().copied().map(rcgen::SanType::IpAddress));
    for uri in uris {
        sans.push(rcgen::SanType::URI(
            uri.clone().try_into().map_err(|_| invalid("URI"))?,
        ));
    }
    Ok(sans)
}

impl PkiEngine {
    fn store(&self, mount: &Mount<'_>) -> Store<'_> {
        Store {
            barrier: &self.barrier,
            prefix: mount.entry.data_prefix(),
            signers: &self.signers,
            cached: &self.cached,
        }
    }

    async fn generate_root(
        &self,
        store: &Store<'_>,
        mount: &Mount<'_>,
        kind: &str,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        let exported = exported(kind)?;
        let fields = Fields::new(data);
        let spec = KeySpec::parse(
            &fields.string("key_type")?.unwrap_or_else(|| "rsa".into()),
            fields.u64("key_bits")?.unwrap_or(0),
        )?;
        let common_name = fields.string("common_name")?.unwrap_or_default();
        let mut warnings = Vec::new();
        if common_name.is_empty() {
            warnings.push(
                "no common_name was given: the CA certificate has an empty subject name".to_owned(),
            );
        }
        let ttl = validity(fields.duration("ttl")?, 0, 0, mount, &mut warnings);
        let now = crate::clock::now_seconds();
        let key = spec.generate()?;
        let mut params = rcgen::CertificateParams::default();
        let list = |key: &str| -> ApiResult<Vec<String>> {
            Ok(fields.string_list(key)?.unwrap_or_default())
        };
        let (organization, ou, country, locality, province) = (
            list("organization")?,
            list("ou")?,
            list("country")?,
            list("locality")?,
            list("province")?,
        );
        subject(
            &mut params,
            &common_name,
            &[
                (rcgen::DnType::CountryName, &country),
                (rcgen::DnType::StateOrProvinceName, &province),
                (rcgen::DnType::LocalityName, &locality),
                (rcgen::DnType::OrganizationName, &organization),
                (rcgen::DnType::OrganizationalUnitName, &ou),
            ],
        );
        let mut names = list("alt_names")?;
        if !common_name.is_empty()
            && !fields.bool("exclude_cn_from_sans")?.unwrap_or(false)
            && !names.contains(&common_name)
        {
            names.insert(0, common_name.clone());
        }
        let mut ips = Vec::new();
        for text in list("ip_sans")? {
            ips.push(text.parse().map_err(|_| {
                ApiError::invalid(format!(
                    "the value {:?} is not a valid IP address",
                    text.chars().take(64).collect::<String>()
                ))
            })?);
        }
        params.subject_alt_names = sans(&names, &ips, &list("uri_sans")?)?;
        ca_constraints(&mut params, &fields);
        let not_before = now.saturating_sub(fields.duration("not_before_duration")?.unwrap_or(30));
        params.not_before = certs::at(not_before)?;
        params.not_after = certs::at(now + ttl)?;
        let (serial, serial_text) = certs::new_serial()?;
        params.serial_number = Some(serial);
        let urls = store.urls()?;
        if urls.is_empty() {
            warnings.push("This mount hasn't configured any authority information access (AIA) fields; this may make it harder for systems to find missing certificates in the chain or to validate revocation status of certificates. Consider updating /config/urls or the newly generated issuer with this information.".to_owned());
        }
        urls.apply(&mut params);
        let certificate = params
            .self_signed(&key)
            .map_err(|error| ApiError::internal(&error))?;
        let pem = certificate.pem();

        let key_id = uuid::Uuid::new_v4().to_string();
        let issuer_id = uuid::Uuid::new_v4().to_string();
        let issuer_name = fields.string("issuer_name")?.unwrap_or_default();
        let key_name = fields.string("key_name")?.unwrap_or_default();
        for name in [&issuer_name, &key_name] {
            if !name.is_empty() && (name == "default" || !crate::policy::is_name(name, "-_.")) {
                return Err(ApiError::invalid(format!(
                    "invalid name {name:?}: letters, digits, '-', '_' and '.', and not \"default\""
                )));
            }
        }
        if !issuer_name.is_empty() && store.issuer(&issuer_name)?.is_some() {
            return Err(ApiError::invalid(format!(
                "issuer name already in use: {issuer_name}"
            )));
        }
        let issuer = Issuer {
            id: issuer_id.clone(),
            name: issuer_name.clone(),
            certificate: pem.clone(),
            key_id: key_id.clone(),
            serial_number: serial_text.clone(),
            not_after: now + ttl,
            parents: Vec::new(),
            ..Issuer::default()
        };
        let mut batch = store.barrier.batch();
        batch.put_json(
            &store.key(&format!("{KEYS}{key_id}")),
            &StoredKey::new(key_id.clone(), key_name.clone(), spec, &key),
        )?;
        batch.put_json(&store.key(&format!("{ISSUERS}{issuer_id}")), &issuer)?;
        revoke::first_crl(store, &mut batch, &issuer, &key)?;
        let config: IssuerConfig = store.get(DEFAULT_ISSUER)?.unwrap_or_default();
        if config.default.is_empty() {
            batch.put_json(
                &store.key(DEFAULT_ISSUER),
                &IssuerConfig {
                    default: issuer_id.clone(),
                },
            )?;
        }
        batch.put_json(
            &store.key(&format!("{CERTS}{}", serial_text.replace(':', "-"))),
            &CertRecord {
                certificate: pem.clone(),
                issuer_id: issuer_id.clone(),
                revocation_time: 0,
                not_after: now + ttl,
            },
        )?;
        store.barrier.commit(batch).await?;

        let mut data = json!({
            "certificate": pem,
            "issuing_ca": pem,
            "serial_number": serial_text,
            "expiration": now + ttl,
            "issuer_id": issuer_id,
            "issuer_name": issuer_name,
            "key_id": key_id,
            "key_name": key_name,
        });
        if exported {
            data["private_key"] = json!(
                keys::private_key_text(
                    &key,
                    spec,
                    false,
                    fields.string("private_key_format")?.as_deref() == Some("pkcs8"),
                )?
                .as_str()
            );
            data["private_key_type"] = json!(spec.type_name());
        }
        Ok(envelope(data, warnings))
    }

    fn read(&self, store: &Store<'_>, path: &str) -> ApiResult<Reply> {
        match path {
            "ca" | "ca/pem" | "ca_chain" | "cert/ca" | "cert/ca_chain" => {
                let Some(issuer) = store.issuer("default")? else {
                    // As OpenBao: no issuer, an empty 204.
                    return Ok(Reply::NoContent);
                };
                Ok(match path {
                    "ca" => Reply::Binary(
                        "application/pkix-cert",
                        certs::pem_to_der(&issuer.certificate)?,
                    ),
                    "ca/pem" => Reply::Text(
                        "application/pem-certificate-chain",
                        issuer.certificate.trim_end().to_owned(),
                    ),
                    "ca_chain" => Reply::Text("application/pkix-cert", issuer.ca_chain().concat()),
                    "cert/ca_chain" => Reply::data(
                        json!({"certificate": issuer.ca_chain().concat(), "revocation_time": 0, "revocation_time_rfc3339": ""}),
                    ),
                    _ => Reply::data(
                        json!({"certificate": issuer.certificate, "revocation_time": 0, "revocation_time_rfc3339": ""}),
                    ),
                })
            }
            "tidy-status" => self.tidy_status(store),
            "crl" => self.read_crl(store, "default", "der"),
            "crl/pem" => self.read_crl(store, "default", "pem"),
            "cert/crl" => self.read_crl(store, "default", "json"),
            "config/urls" => {
                let urls = store.urls()?;
                Ok(Reply::data(json!({
                    "issuing_certificates": urls.issuing_certificates,
                    "crl_distribution_points": urls.crl_distribution_points,
                    "delta_crl_distribution_points": [],
                    "ocsp_servers": urls.ocsp_servers,
                    "enable_templating": false,
                })))
            }
            "config/issuers" => {
                let config: IssuerConfig = store.get(DEFAULT_ISSUER)?.unwrap_or_default();
                Ok(Reply::data(
                    json!({"default": config.default, "default_follows_latest_issuer": false}),
                ))
            }
            _ => {
                if let Some(serial) = path.strip_prefix("cert/") {
                    let key = certs::serial_key(serial).ok_or_else(ApiError::not_found)?;
                    let record: CertRecord = store
                        .get(&format!("{CERTS}{key}"))?
                        .ok_or_else(ApiError::not_found)?;
                    let mut data = json!({
                        "certificate": record.certificate,
                        "revocation_time": record.revocation_time,
                        "revocation_time_rfc3339": if record.revocation_time == 0 { String::new() } else { crate::tokens::rfc3339(record.revocation_time) },
                    });
                    if record.revocation_time > 0 {
                        data["issuer_id"] = json!(record.issuer_id);
                    }
                    return Ok(Reply::data(data));
                }
                if let Some(name) = path.strip_prefix("roles/") {
                    let role = store.role(name)?.ok_or_else(ApiError::not_found)?;
                    return Ok(Reply::data(role.describe()));
                }
                if let Some(rest) = path.strip_prefix("issuer/") {
                    let (reference, view) = rest.split_once('/').unwrap_or((rest, ""));
                    if view == "crl" || view == "crl/pem" {
                        let format = if view == "crl" { "der" } else { "pem" };
                        return self.read_crl(store, reference, format);
                    }
                    let issuer = store.issuer(reference)?.ok_or_else(ApiError::not_found)?;
                    return Ok(match view {
                        "pem" => Reply::Text(
                            "application/pem-certificate-chain",
                            issuer.certificate.trim_end().to_owned(),
                        ),
                        "der" => Reply::Binary(
                            "application/pkix-cert",
                            certs::pem_to_der(&issuer.certificate)?,
                        ),
                        "" | "json" => Reply::data(issuers::describe(&issuer)),
                        _ => return Err(ApiError::no_route(path)),
                    });
                }
                Err(ApiError::no_route(path))
            }
        }
    }

    fn list(&self, store: &Store<'_>, path: &str) -> ApiResult<Reply> {
        match path.trim_end_matches('/') {
            "roles" => Ok(Reply::List(store.list(ROLES)?)),
            "certs/revoked" => self.list_revoked(store),
            "certs" => Ok(Reply::List(
                store
                    .list(CERTS)?
                    .into_iter()
                    .map(|key| key.replace('-', ":"))
                    .collect(),
            )),
            "issuers" => {
                let config: IssuerConfig = store.get(DEFAULT_ISSUER)?.unwrap_or_default();
                let mut keys = Vec::new();
                let mut info = Map::new();
                for issuer in store.issuers()? {
                    info.insert(
                        issuer.id.clone(),
                        json!({
                            "is_default": issuer.id == config.default,
                            "issuer_name": issuer.name,
                            "key_id": issuer.key_id,
                            "serial_number": issuer.serial_number,
                        }),
                    );
                    keys.push(issuer.id);
                }
                if keys.is_empty() {
                    return Err(ApiError::not_found());
                }
                Ok(Reply::data(json!({"keys": keys, "key_info": info})))
            }
            _ => Err(ApiError::unsupported(path, "list")),
        }
    }

    async fn write(
        &self,
        store: &Store<'_>,
        mount: &Mount<'_>,
        path: &str,
        data: &Map<String, Value>,
        requester: &Requester<'_>,
    ) -> ApiResult<Reply> {
        if let Some(kind) = path.strip_prefix("root/generate/") {
            return self.generate_root(store, mount, kind, data).await;
        }
        if let Some(role) = path.strip_prefix("issue/") {
            return self.issue(store, mount, role, data, requester).await;
        }
        if let Some(role) = path.strip_prefix("sign/") {
            return self.sign(store, mount, Some(role), data, requester).await;
        }
        if path == "sign-verbatim" || path.starts_with("sign-verbatim/") {
            return self.sign(store, mount, None, data, requester).await;
        }
        if let Some(kind) = path.strip_prefix("intermediate/generate/") {
            return self.generate_intermediate(store, kind, data).await;
        }
        if path == "tidy" {
            return self.tidy(store, data).await;
        }
        if let Some(reference) = path.strip_prefix("issuer/")
            && !reference.contains('/')
        {
            return self.update_issuer(store, reference, data).await;
        }
        if path == "root/sign-intermediate" {
            return self.sign_intermediate(store, mount, data).await;
        }
        if path == "config/ca" || path == "issuers/import/bundle" {
            return self.import_bundle(store, data).await;
        }
        if path == "intermediate/set-signed" {
            return self.set_signed(store, data).await;
        }
        if let Some(name) = path.strip_prefix("roles/") {
            if !crate::policy::is_name(name, "-_.@") {
                return Err(ApiError::invalid(format!(
                    "invalid role name {:?}",
                    name.chars().take(64).collect::<String>()
                )));
            }
            let role = Role::parse(data)?;
            store.put(&format!("{ROLES}{name}"), &role).await?;
            return Ok(Reply::data(role.describe()));
        }
        match path {
            "revoke" => self.revoke(store, data).await,
            "config/urls" => {
                let fields = Fields::new(data);
                let current = store.urls()?;
                let given = |key: &str, current: Vec<String>| -> ApiResult<Vec<String>> {
                    match fields.string_list(key)? {
                        Some(urls) => certs::checked_urls(key, urls),
                        None => Ok(current),
                    }
                };
                let urls = Urls {
                    issuing_certificates: given(
                        "issuing_certificates",
                        current.issuing_certificates,
                    )?,
                    crl_distribution_points: given(
                        "crl_distribution_points",
                        current.crl_distribution_points,
                    )?,
                    ocsp_servers: given("ocsp_servers", current.ocsp_servers)?,
                };
                store.put(URLS, &urls).await?;
                self.read(store, "config/urls")
            }
            "config/issuers" => {
                let reference = Fields::new(data).string("default")?.unwrap_or_default();
                let issuer = store
                    .issuer(&reference)?
                    .filter(|_| reference != "default")
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "unable to find PKI issuer for reference: {}",
                            reference.chars().take(64).collect::<String>()
                        ))
                    })?;
                store
                    .put(
                        DEFAULT_ISSUER,
                        &IssuerConfig {
                            default: issuer.id.clone(),
                        },
                    )
                    .await?;
                Ok(Reply::data(
                    json!({"default": issuer.id, "default_follows_latest_issuer": false}),
                ))
            }
            _ => Err(ApiError::no_route(path)),
        }
    }
}

/// A CA certificate's basic constraints (`max_path_length`, -1 for none)
/// and key usages.
fn ca_constraints(params: &mut rcgen::CertificateParams, fields: &Fields<'_>) {
    let path_length = fields
        .raw("max_path_length")
        .and_then(|value| match value {
            Value::Number(number) => number.as_i64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        })
        .unwrap_or(-1);
    params.is_ca = rcgen::IsCa::Ca(match u8::try_from(path_length) {
        Ok(length) => rcgen::BasicConstraints::Constrained(length),
        Err(_) => rcgen::BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
}

/// Whether a generate's `internal|exported` path word returns the key.
fn exported(kind: &str) -> ApiResult<bool> {
    match kind {
        "internal" => Ok(false),
        "exported" => Ok(true),
        _ => Err(ApiError::invalid(
            "the \"exported\" path parameter must be \"internal\", \"existing\", exported\" or \"kms\"",
        )),
    }
}

/// 200 with `data` and warnings, as Vault answers PKI writes.
fn envelope(data: Value, warnings: Vec<String>) -> Reply {
    let mut envelope = LogicalResponse::with_data(match data {
        Value::Object(map) => map,
        _ => Map::new(),
    });
    if !warnings.is_empty() {
        envelope.warnings = Some(warnings);
    }
    Reply::Envelope(Box::new(envelope))
}

impl SecretEngine for PkiEngine {
    fn type_name(&self) -> &'static str {
        "pki"
    }

    fn configure(
        &self,
        requested: &str,
        options: BTreeMap<String, String>,
    ) -> Option<ApiResult<BTreeMap<String, String>>> {
        (requested == "pki").then_some(Ok(options))
    }

    fn exists(&self, mount: &Mount<'_>, path: &str) -> ApiResult<bool> {
        match path.strip_prefix("roles/") {
            Some(name) => Ok(self.store(mount).role(name)?.is_some()),
            // As in Vault, PKI's other writes need `update`.
            None => Ok(true),
        }
    }

    fn public(&self, path: &str) -> bool {
        matches!(path, "ca" | "ca/pem" | "ca_chain" | "crl" | "crl/pem")
            || path.starts_with("cert/")
            || path
                .strip_prefix("issuer/")
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(_, view)| matches!(view, "pem" | "der" | "json" | "crl" | "crl/pem"))
    }

    /// A `generate_lease` certificate's lease ended: the certificate is
    /// revoked (idempotently: it may have been revoked by hand already).
    fn revoke<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        lease: &'a crate::leases::Lease,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let certificate = lease.internal["certificate"].as_str().unwrap_or_default();
            let mut data = Map::new();
            data.insert("certificate".into(), json!(certificate));
            match self.revoke(&self.store(mount), &data).await {
                Ok(_) => Ok(()),
                Err(error) => Err(error.messages.join("; ")),
            }
        })
    }

    fn files(&self) -> Option<&dyn crate::engine::Files> {
        Some(self)
    }

    fn observe(&self, key: &str) {
        if key.starts_with(crate::mounts::SECRETS.data_prefix) {
            self.cached.forget(key);
        }
    }

    /// The data was replaced (a snapshot): parsed issuers may be stale.
    fn forget_all(&self) {
        self.cached.clear();
        self.signers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    fn handle<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        operation: Operation,
        path: &'a str,
        data: &'a Map<String, Value>,
        requester: &'a Requester<'a>,
    ) -> BoxFuture<'a, ApiResult<Reply>> {
        Box::pin(async move {
            let store = self.store(mount);
            match operation {
                Operation::Read if path == "crl/rotate" => self.rotate_crls(&store).await,
                Operation::Read => self.read(&store, path),
                Operation::List => self.list(&store, path),
                Operation::Write => self.write(&store, mount, path, data, requester).await,
                Operation::Delete => {
                    if path == "root" {
                        return self.delete_root(&store).await;
                    }
                    if let Some(reference) = path.strip_prefix("issuer/")
                        && !reference.contains('/')
                    {
                        return self.delete_issuer(&store, reference).await;
                    }
                    match path.strip_prefix("roles/") {
                        Some(name) if crate::policy::is_name(name, "-_.@") => {
                            store
                                .barrier
                                .delete(&store.key(&format!("{ROLES}{name}")))
                                .await?;
                            Ok(Reply::NoContent)
                        }
                        _ => Err(ApiError::unsupported(path, "delete")),
                    }
                }
                Operation::Patch => Err(ApiError::unsupported(path, "patch")),
            }
        })
    }
}
