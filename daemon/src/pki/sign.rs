//! Leaf certificates (`issue/<role>` with a key coffer makes, `sign/<role>`
//! and `sign-verbatim` from a CSR) and intermediate CAs
//! (`intermediate/generate`, `root/sign-intermediate`,
//! `intermediate/set-signed`).

use std::net::IpAddr;

use rcgen::{CertificateSigningRequestParams, DnType, DnValue, PublicKeyData, SanType};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::{Map, Value, json};

use super::certs;
use super::keys::{self, KeySpec, StoredKey};
use super::revoke::pem_block;
use super::roles::{self, Role};
use super::{
    DEFAULT_ISSUER, ISSUERS, Issuer, IssuerConfig, KEYS, PkiEngine, Store, ca_constraints,
    envelope, sans, subject, validity,
};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::engine::{Mount, Requester};
use crate::leases::Lease;

/// What a leaf certificate will say, decided from the request, the role and
/// (when signing) the CSR.
struct Leaf {
    common_name: String,
    names: Vec<String>,
    ips: Vec<IpAddr>,
    uris: Vec<String>,
    ttl: u64,
    format: String,
    warnings: Vec<String>,
}

/// The text of a subject attribute.
fn dn_text(value: &DnValue) -> String {
    match value {
        DnValue::Utf8String(text) => text.clone(),
        DnValue::PrintableString(text) => text.as_str().to_owned(),
        DnValue::Ia5String(text) => text.as_str().to_owned(),
        DnValue::TeletexString(text) => text.as_str().to_owned(),
        // BMP and universal strings (rare in CSRs) rcgen keeps as raw bytes.
        _ => String::new(),
    }
}

/// A CSR in PEM, parsed and its signature checked.
fn parse_csr(fields: &Fields<'_>) -> ApiResult<CertificateSigningRequestParams> {
    let text = fields.string("csr")?.unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ApiError::invalid("csr contains no data"));
    }
    CertificateSigningRequestParams::from_pem(text.trim()).map_err(|_| {
        ApiError::invalid("csr contains no data or is not a valid certificate request")
    })
}

/// The key type of a CSR's public key.
fn csr_key_type(public_key: &impl PublicKeyData) -> &'static str {
    let algorithm = public_key.algorithm();
    if algorithm == &rcgen::PKCS_ED25519 {
        "ed25519"
    } else if algorithm == &rcgen::PKCS_RSA_SHA256
        || algorithm == &rcgen::PKCS_RSA_SHA384
        || algorithm == &rcgen::PKCS_RSA_SHA512
    {
        "rsa"
    } else {
        "ec"
    }
}

impl Leaf {
    /// The names and validity of a leaf under `role`; `csr` when signing.
    /// `verbatim` skips the role's name checks (`sign-verbatim`).
    fn decide(
        role: &Role,
        fields: &Fields<'_>,
        mount: &Mount<'_>,
        csr: Option<&rcgen::CertificateParams>,
        verbatim: bool,
    ) -> ApiResult<Leaf> {
        let mut warnings = Vec::new();
        let requested_cn = fields.string("common_name")?.unwrap_or_default();
        let requested_names = fields.string_list("alt_names")?.unwrap_or_default();
        let (common_name, mut names, mut ips, uris) = match csr {
            Some(csr) if role.use_csr_common_name || role.use_csr_sans => {
                let csr_cn = csr
                    .distinguished_name
                    .get(&DnType::CommonName)
                    .map(dn_text)
                    .unwrap_or_default();
                let common_name = if role.use_csr_common_name {
                    if !requested_cn.is_empty() {
                        warnings.push("the common_name field was provided but the role is set with \"use_csr_common_name\" set to true".to_owned());
                    }
                    csr_cn
                } else {
                    requested_cn
                };
                let (mut names, mut ips, mut uris) = (Vec::new(), Vec::new(), Vec::new());
                if role.use_csr_sans {
                    if !requested_names.is_empty() {
                        warnings.push("the alt_names field was provided but the role is set with \"use_csr_sans\" set to true".to_owned());
                    }
                    for san in &csr.subject_alt_names {
                        match san {
                            SanType::DnsName(name) => names.push(name.as_str().to_owned()),
                            SanType::Rfc822Name(name) => names.push(name.as_str().to_owned()),
                            SanType::IpAddress(address) => ips.push(*address),
                            SanType::URI(uri) => uris.push(uri.as_str().to_owned()),
                            _ => {}
                        }
                    }
                } else {
                    names = requested_names;
                    for text in fields.string_list("ip_sans")?.unwrap_or_default() {
                        ips.push(role.check_ip(&text)?);
                    }
                    uris = fields.string_list("uri_sans")?.unwrap_or_default();
                }
                (common_name, names, ips, uris)
            }
            _ => {
                let mut ips = Vec::new();
                for text in fields.string_list("ip_sans")?.unwrap_or_default() {
                    ips.push(role.check_ip(&text)?);
                }
                (
                    requested_cn,
                    requested_names,
                    ips,
                    fields.string_list("uri_sans")?.unwrap_or_default(),
                )
            }
        };
        if common_name.is_empty() && role.require_cn && !verbatim {
            return Err(ApiError::invalid(
                "the common_name field is required, or must be provided in a CSR with \"use_csr_common_name\" set to true, unless \"require_cn\" is set to false",
            ));
        }
        if !verbatim {
            if !common_name.is_empty() {
                role.check_name(&common_name, "common name")?;
            }
            for name in &names {
                role.check_name(name, "subject alternate name")?;
            }
            if !role.allow_ip_sans && !ips.is_empty() {
                return Err(ApiError::invalid(format!(
                    "IP Subject Alternative Names are not allowed in this role, but was provided {}",
                    ips[0]
                )));
            }
            if !uris.is_empty() && role.allowed_uri_sans.is_empty() {
                return Err(ApiError::invalid(
                    "URI Subject Alternative Names are not allowed in this role, but were provided via the API",
                ));
            }
        }
        if !common_name.is_empty()
            && !fields.bool("exclude_cn_from_sans")?.unwrap_or(false)
            && !names.contains(&common_name)
        {
            names.insert(0, common_name.clone());
        }
        ips.dedup();
        let format = fields.string("format")?.unwrap_or_else(|| "pem".into());
        if !matches!(format.as_str(), "pem" | "der" | "pem_bundle") {
            return Err(ApiError::invalid(format!(
                "unsupported format {:?}: pem, der or pem_bundle",
                format.chars().take(32).collect::<String>()
            )));
        }
        let ttl = validity(
            fields.duration("ttl")?,
            role.ttl,
            role.max_ttl,
            mount,
            &mut warnings,
        );
        Ok(Leaf {
            common_name,
            names,
            ips,
            uris,
            ttl,
            format,
            warnings,
        })
    }
}

/// The certificate fields of an answer in the requested format.
fn formatted(
    format: &str,
    pem: &str,
    issuer: &Issuer,
    chain: &[String],
) -> ApiResult<(String, String, Vec<String>)> {
    Ok(match format {
        "der" => (
            certs::pem_to_der_base64(pem)?,
            certs::pem_to_der_base64(&issuer.certificate)?,
            chain
                .iter()
                .map(|pem| certs::pem_to_der_base64(pem))
                .collect::<ApiResult<Vec<_>>>()?,
        ),
        "pem_bundle" => (
            format!("{}\n{}", pem.trim_end(), issuer.certificate.trim_end()),
            issuer.certificate.trim_end().to_owned(),
            chain.iter().map(|pem| pem.trim_end().to_owned()).collect(),
        ),
        _ => (
            pem.trim_end().to_owned(),
            issuer.certificate.trim_end().to_owned(),
            chain.iter().map(|pem| pem.trim_end().to_owned()).collect(),
        ),
    })
}

impl PkiEngine {
    /// `issue/<role>`: a key and a certificate for it.
    pub(super) async fn issue(
        &self,
        store: &Store<'_>,
        mount: &Mount<'_>,
        role_name: &str,
        data: &Map<String, Value>,
        requester: &Requester<'_>,
    ) -> ApiResult<Reply> {
        let role = load_role(store, role_name)?;
        let fields = Fields::new(data);
        let spec = role.key_spec()?;
        let leaf = Leaf::decide(&role, &fields, mount, None, false)?;
        let format = leaf.format.clone();
        let pkcs8 = fields.string("private_key_format")?.as_deref() == Some("pkcs8");
        let key = spec.generate()?;
        let (mut data, warnings) = self.sign_leaf(store, &role, leaf, &key, None).await?;
        let private_key = keys::private_key_text(&key, spec, format == "der", pkcs8)?;
        if format == "pem_bundle" {
            // As Vault: the key first, then the certificate and its issuer.
            let bundle = format!(
                "{}\n{}",
                private_key.as_str(),
                data["certificate"].as_str().unwrap_or_default()
            );
            data.insert("certificate".into(), json!(bundle));
        }
        data.insert("private_key".into(), json!(private_key.as_str()));
        data.insert("private_key_type".into(), json!(spec.type_name()));
        self.answer(
            mount,
            &format!("issue/{role_name}"),
            &role,
            data,
            warnings,
            requester,
        )
        .await
    }

    /// `sign/<role>` (or `sign-verbatim` with no role): a certificate for
    /// a CSR's key.
    pub(super) async fn sign(
        &self,
        store: &Store<'_>,
        mount: &Mount<'_>,
        role_name: Option<&str>,
        data: &Map<String, Value>,
        requester: &Requester<'_>,
    ) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        let verbatim = role_name.is_none();
        let role = match role_name {
            Some(name) => load_role(store, name)?,
            None => Role::parse(&Map::new())?,
        };
        let csr = parse_csr(&fields)?;
        let key_type = csr_key_type(&csr.public_key);
        if !verbatim && role.key_type != "any" && role.key_type != key_type {
            return Err(ApiError::invalid(format!(
                "role requires keys of type {}",
                role.key_type
            )));
        }
        let leaf = Leaf::decide(&role, &fields, mount, Some(&csr.params), verbatim)?;
        let subject = verbatim.then(|| csr.params.distinguished_name.clone());
        let (data, warnings) = self
            .sign_leaf(store, &role, leaf, &csr.public_key, subject)
            .await?;
        let path = match role_name {
            Some(name) => format!("sign/{name}"),
            None => "sign-verbatim".to_owned(),
        };
        self.answer(mount, &path, &role, data, warnings, requester)
            .await
    }

    /// The answer to an issue or a sign: under a `generate_lease` role, with
    /// a lease (not renewable) whose end revokes the certificate.
    async fn answer(
        &self,
        mount: &Mount<'_>,
        path: &str,
        role: &Role,
        data: Map<String, Value>,
        warnings: Vec<String>,
        requester: &Requester<'_>,
    ) -> ApiResult<Reply> {
        if !role.generate_lease {
            return Ok(envelope(Value::Object(data), warnings));
        }
        let now = crate::clock::now_seconds();
        let ttl = data["expiration"]
            .as_u64()
            .unwrap_or(now)
            .saturating_sub(now);
        // The certificate (public) lets the revocation find it even when
        // the role did not store it.
        let certificate = data["certificate"].as_str().unwrap_or_default();
        let first = if certificate.starts_with("-----BEGIN") {
            certificate
                .split_inclusive("-----END CERTIFICATE-----")
                .next()
                .unwrap_or_default()
                .to_owned()
        } else {
            // `format=der`: base64 DER.
            use base64::Engine as _;
            let der = base64::engine::general_purpose::STANDARD
                .decode(certificate)
                .map_err(|error| ApiError::internal(&error))?;
            pem_block("CERTIFICATE", &der)
        };
        let mut lease = Lease::new(
            &mount.logical(path),
            &mount.entry.path,
            now,
            ttl,
            ttl,
            requester.token_hash.map(str::to_owned),
            json!({"serial_number": data["serial_number"], "certificate": first.trim()}),
        )
        .map_err(|error| ApiError::internal(&error))?;
        lease.renewable = false;
        self.leases
            .register(&lease)
            .await
            .map_err(|error| match error {
                crate::leases::Error::Barrier(barrier) => barrier.into(),
                other => ApiError::internal(&other),
            })?;
        let Reply::Envelope(mut envelope) = envelope(Value::Object(data), warnings) else {
            return Err(ApiError::internal(&"a PKI answer is an envelope"));
        };
        envelope.lease_id = lease.id;
        envelope.lease_duration = ttl;
        envelope.renewable = false;
        Ok(Reply::Envelope(envelope))
    }

    /// Signs a leaf for `public_key` under `role`'s issuer and stores it
    /// unless the role says `no_store`. `verbatim` is a CSR's own subject.
    async fn sign_leaf(
        &self,
        store: &Store<'_>,
        role: &Role,
        leaf: Leaf,
        public_key: &impl PublicKeyData,
        verbatim: Option<rcgen::DistinguishedName>,
    ) -> ApiResult<(Map<String, Value>, Vec<String>)> {
        let signing = store.signing_issuer(&role.issuer_ref)?;
        let issuer = &signing.issuer;
        let now = crate::clock::now_seconds();
        let mut not_after = now + leaf.ttl;
        if not_after > issuer.not_after {
            match issuer.leaf_not_after_behavior {
                super::LeafNotAfter::Err => {
                    return Err(ApiError::invalid(format!(
                        "cannot satisfy request, as TTL would result in notAfter of {} that is beyond the expiration of the CA certificate at {}",
                        crate::tokens::rfc3339(not_after),
                        crate::tokens::rfc3339(issuer.not_after)
                    )));
                }
                super::LeafNotAfter::Truncate => not_after = issuer.not_after,
                super::LeafNotAfter::Permit => {}
            }
        }
        let mut params = rcgen::CertificateParams::default();
        match verbatim {
            Some(name) => params.distinguished_name = name,
            None => subject(
                &mut params,
                &leaf.common_name,
                &[
                    (DnType::CountryName, &role.country),
                    (DnType::StateOrProvinceName, &role.province),
                    (DnType::LocalityName, &role.locality),
                    (DnType::OrganizationName, &role.organization),
                    (DnType::OrganizationalUnitName, &role.ou),
                ],
            ),
        }
        params.subject_alt_names = sans(&leaf.names, &leaf.ips, &leaf.uris)?;
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = role
            .key_usage
            .iter()
            .map(|usage| roles::key_usage(usage))
            .collect::<ApiResult<_>>()?;
        let mut extended = Vec::new();
        for (on, usage) in [
            (role.server_flag, rcgen::ExtendedKeyUsagePurpose::ServerAuth),
            (role.client_flag, rcgen::ExtendedKeyUsagePurpose::ClientAuth),
            (
                role.code_signing_flag,
                rcgen::ExtendedKeyUsagePurpose::CodeSigning,
            ),
            (
                role.email_protection_flag,
                rcgen::ExtendedKeyUsagePurpose::EmailProtection,
            ),
        ] {
            if on {
                extended.push(usage);
            }
        }
        for usage in &role.ext_key_usage {
            extended.push(roles::ext_key_usage(usage)?);
        }
        params.extended_key_usages = extended;
        params.use_authority_key_identifier_extension = true;
        let not_before = now.saturating_sub(role.not_before_duration);
        params.not_before = certs::at(not_before)?;
        params.not_after = certs::at(not_after)?;
        let (serial, serial_text) = certs::new_serial()?;
        params.serial_number = Some(serial);
        if issuer.urls.is_empty() {
            store.urls()?.apply(&mut params);
        } else {
            issuer.urls.apply(&mut params);
        }
        let pem = params
            .signed_by(public_key, &signing.signer)
            .map_err(|error| ApiError::internal(&error))?
            .pem();
        if !role.no_store {
            store
                .put_cert(&serial_text, &pem, &issuer.id, not_after)
                .await?;
        }
        let (certificate, issuing_ca, ca_chain) =
            formatted(&leaf.format, &pem, issuer, &issuer.ca_chain())?;
        let data = json!({
            "certificate": certificate,
            "issuing_ca": issuing_ca,
            "ca_chain": ca_chain,
            "serial_number": serial_text,
            "expiration": not_after,
            "not_before": not_before,
        });
        Ok((data.as_object().cloned().unwrap_or_default(), leaf.warnings))
    }

    /// `intermediate/generate/{internal,exported}`: a key and a CSR for it;
    /// the key waits in the mount for its signed certificate.
    pub(super) async fn generate_intermediate(
        &self,
        store: &Store<'_>,
        kind: &str,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        let exported = super::exported(kind)?;
        let fields = Fields::new(data);
        let spec = KeySpec::parse(
            &fields.string("key_type")?.unwrap_or_else(|| "rsa".into()),
            fields.u64("key_bits")?.unwrap_or(0),
        )?;
        let common_name = fields.string("common_name")?.unwrap_or_default();
        let list = |key: &str| -> ApiResult<Vec<String>> {
            Ok(fields.string_list(key)?.unwrap_or_default())
        };
        let mut params = rcgen::CertificateParams::default();
        subject(
            &mut params,
            &common_name,
            &[
                (DnType::CountryName, &list("country")?),
                (DnType::StateOrProvinceName, &list("province")?),
                (DnType::LocalityName, &list("locality")?),
                (DnType::OrganizationName, &list("organization")?),
                (DnType::OrganizationalUnitName, &list("ou")?),
            ],
        );
        let key = spec.generate()?;
        let csr = params
            .serialize_request(&key)
            .and_then(|request| request.pem())
            .map_err(|error| ApiError::internal(&error))?;
        let key_id = uuid::Uuid::new_v4().to_string();
        let key_name = fields.string("key_name")?.unwrap_or_default();
        store
            .put(
                &format!("{KEYS}{key_id}"),
                &StoredKey::new(key_id.clone(), key_name, spec, &key),
            )
            .await?;
        let mut data = json!({"csr": csr.trim_end(), "key_id": key_id});
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
        Ok(envelope(data, Vec::new()))
    }

    /// `root/sign-intermediate`: a CA certificate for a CSR, signed by the
    /// default issuer.
    pub(super) async fn sign_intermediate(
        &self,
        store: &Store<'_>,
        mount: &Mount<'_>,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        let csr = parse_csr(&fields)?;
        let signing = store.signing_issuer(
            &fields
                .string("issuer_ref")?
                .unwrap_or_else(|| "default".into()),
        )?;
        let issuer = &signing.issuer;
        let mut warnings = Vec::new();
        let ttl = validity(fields.duration("ttl")?, 0, 0, mount, &mut warnings);
        let now = crate::clock::now_seconds();
        let not_after = (now + ttl).min(issuer.not_after);
        let common_name = fields
            .string("common_name")?
            .filter(|name| !name.is_empty())
            .or_else(|| {
                csr.params
                    .distinguished_name
                    .get(&DnType::CommonName)
                    .map(dn_text)
            })
            .unwrap_or_default();
        let mut params = rcgen::CertificateParams::default();
        let organization = fields.string_list("organization")?.unwrap_or_default();
        let ou = fields.string_list("ou")?.unwrap_or_default();
        subject(
            &mut params,
            &common_name,
            &[
                (DnType::OrganizationName, &organization),
                (DnType::OrganizationalUnitName, &ou),
            ],
        );
        ca_constraints(&mut params, &fields);
        params.use_authority_key_identifier_extension = true;
        params.not_before = certs::at(now.saturating_sub(30))?;
        params.not_after = certs::at(not_after)?;
        let (serial, serial_text) = certs::new_serial()?;
        params.serial_number = Some(serial);
        store.urls()?.apply(&mut params);
        let pem = params
            .signed_by(&csr.public_key, &signing.signer)
            .map_err(|error| ApiError::internal(&error))?
            .pem();
        store
            .put_cert(&serial_text, &pem, &issuer.id, not_after)
            .await?;
        let chain: Vec<String> = std::iter::once(pem.clone())
            .chain(issuer.ca_chain())
            .collect();
        let format = fields.string("format")?.unwrap_or_else(|| "pem".into());
        let (certificate, issuing_ca, ca_chain) = formatted(&format, &pem, issuer, &chain)?;
        Ok(envelope(
            json!({
                "certificate": certificate,
                "issuing_ca": issuing_ca,
                "ca_chain": ca_chain,
                "serial_number": serial_text,
                "expiration": not_after,
            }),
            warnings,
        ))
    }

    /// `intermediate/set-signed`: the signed certificate of a key this
    /// mount generated (and, after it in the PEM, its issuers) becomes an
    /// issuer.
    pub(super) async fn set_signed(
        &self,
        store: &Store<'_>,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        let text = Fields::new(data).string("certificate")?.unwrap_or_default();
        let blocks: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|_| ApiError::invalid("the certificate is not valid PEM"))?;
        let Some(first) = blocks.first() else {
            return Err(ApiError::invalid("no certificate was provided"));
        };
        let (_, parsed) = x509_parser::parse_x509_certificate(first)
            .map_err(|_| ApiError::invalid("the certificate could not be parsed"))?;
        let public_key = parsed.public_key().subject_public_key.data.to_vec();
        let not_after = u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0);
        let serial_number = certs::colon_hex(parsed.raw_serial());
        let mut matching = None;
        for key in store.keys()? {
            if key.load()?.public_key_raw() == public_key.as_slice() {
                matching = Some(key);
                break;
            }
        }
        let key = matching.ok_or_else(|| {
            ApiError::invalid("the certificate's public key matches no key in this mount")
        })?;
        let to_pem = |der: &CertificateDer<'_>| pem_block("CERTIFICATE", der.as_ref());
        let certificate = to_pem(first);
        for existing in store.issuers()? {
            if existing.certificate.trim() == certificate.trim() {
                return Ok(envelope(
                    json!({
                        "imported_issuers": Value::Null,
                        "imported_keys": Value::Null,
                        "existing_issuers": [existing.id],
                        "existing_keys": [key.id],
                        "mapping": {existing.id.clone(): key.id},
                    }),
                    Vec::new(),
                ));
            }
        }
        let issuer = Issuer {
            id: uuid::Uuid::new_v4().to_string(),
            name: String::new(),
            certificate,
            key_id: key.id.clone(),
            serial_number,
            not_after,
            parents: blocks[1..].iter().map(to_pem).collect(),
            ..Issuer::default()
        };
        let mut batch = store.barrier.batch();
        batch.put_json(&store.key(&format!("{ISSUERS}{}", issuer.id)), &issuer)?;
        super::revoke::first_crl(store, &mut batch, &issuer, &key.load()?)?;
        let config: IssuerConfig = store.get(DEFAULT_ISSUER)?.unwrap_or_default();
        if config.default.is_empty() {
            batch.put_json(
                &store.key(DEFAULT_ISSUER),
                &IssuerConfig {
                    default: issuer.id.clone(),
                },
            )?;
        }
        store.barrier.commit(batch).await?;
        Ok(envelope(
            json!({
                "imported_issuers": [issuer.id],
                "imported_keys": Value::Null,
                "existing_issuers": Value::Null,
                "existing_keys": [key.id],
                "mapping": {issuer.id.clone(): key.id},
            }),
            Vec::new(),
        ))
    }
}

/// A role by name, or Vault's 400.
fn load_role(store: &Store<'_>, name: &str) -> ApiResult<Role> {
    store.role(name)?.ok_or_else(|| {
        ApiError::invalid(format!(
            "unknown role: {}",
            name.chars().take(128).collect::<String>()
        ))
    })
}

impl PkiEngine {
    /// `config/ca` and `issuers/import/bundle`: keys (PKCS#8 PEM) and
    /// certificates; each certificate becomes an issuer (with its key when
    /// the bundle or the mount holds it), the ones after it its parents.
    /// Importing again changes nothing.
    pub(super) async fn import_bundle(
        &self,
        store: &Store<'_>,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        let text = fields
            .string("pem_bundle")?
            .or(fields.string("pem")?)
            .unwrap_or_default();
        let mut keys = Vec::new();
        let mut certificates = Vec::new();
        for item in rustls::pki_types::pem::PemObject::pem_slice_iter(text.as_bytes())
            .map(|item: Result<(rustls::pki_types::pem::SectionKind, Vec<u8>), _>| item)
        {
            let (kind, der) =
                item.map_err(|_| ApiError::invalid("the PEM bundle could not be parsed"))?;
            match kind {
                rustls::pki_types::pem::SectionKind::Certificate => certificates.push(der),
                rustls::pki_types::pem::SectionKind::PrivateKey
                | rustls::pki_types::pem::SectionKind::EcPrivateKey
                | rustls::pki_types::pem::SectionKind::RsaPrivateKey => {
                    keys.push(keys::to_pkcs8(&der)?);
                }
                _ => {}
            }
        }
        if keys.is_empty() && certificates.is_empty() {
            return Err(ApiError::invalid(
                "provided data for import was too short; perhaps it was not PEM-encoded?",
            ));
        }
        let (mut imported_keys, mut existing_keys) = (Vec::new(), Vec::new());
        let mut stored = store.keys()?;
        let mut batch = store.barrier.batch();
        for key in &keys {
            let spec = KeySpec::of(key).ok_or_else(|| {
                ApiError::invalid("the bundle's key is of a type coffer does not sign with")
            })?;
            let mut known = None;
            for candidate in &stored {
                if candidate.load()?.public_key_raw() == key.public_key_raw() {
                    known = Some(candidate.id.clone());
                }
            }
            match known {
                Some(id) => existing_keys.push(id),
                None => {
                    let id = uuid::Uuid::new_v4().to_string();
                    let record = StoredKey::new(id.clone(), String::new(), spec, key);
                    batch.put_json(&store.key(&format!("{KEYS}{id}")), &record)?;
                    stored.push(record);
                    imported_keys.push(id);
                }
            }
        }
        let existing_issuers_stored = store.issuers()?;
        let pems: Vec<String> = certificates
            .iter()
            .map(|der| pem_block("CERTIFICATE", der))
            .collect();
        let (mut imported_issuers, mut existing_issuers) = (Vec::new(), Vec::new());
        let mut mapping = Map::new();
        let mut first_new = None;
        for (index, der) in certificates.iter().enumerate() {
            let (_, parsed) = x509_parser::parse_x509_certificate(der).map_err(|_| {
                ApiError::invalid("a certificate of the bundle could not be parsed")
            })?;
            if !parsed.is_ca() {
                return Err(ApiError::invalid(
                    "the bundle holds a certificate that is not a CA",
                ));
            }
            let public_key = parsed.public_key().subject_public_key.data.to_vec();
            let mut key_id = String::new();
            for candidate in &stored {
                if candidate.load()?.public_key_raw() == public_key.as_slice() {
                    key_id = candidate.id.clone();
                }
            }
            if let Some(existing) = existing_issuers_stored
                .iter()
                .find(|issuer| issuer.certificate.trim() == pems[index].trim())
            {
                existing_issuers.push(existing.id.clone());
                mapping.insert(existing.id.clone(), json!(existing.key_id));
                continue;
            }
            let issuer = Issuer {
                id: uuid::Uuid::new_v4().to_string(),
                name: String::new(),
                certificate: pems[index].clone(),
                key_id: key_id.clone(),
                serial_number: certs::colon_hex(parsed.raw_serial()),
                not_after: u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0),
                parents: pems[index + 1..].to_vec(),
                ..Issuer::default()
            };
            batch.put_json(&store.key(&format!("{ISSUERS}{}", issuer.id)), &issuer)?;
            if let Some(key) = stored.iter().find(|key| key.id == key_id) {
                super::revoke::first_crl(store, &mut batch, &issuer, &key.load()?)?;
                if first_new.is_none() {
                    first_new = Some(issuer.id.clone());
                }
            }
            mapping.insert(issuer.id.clone(), json!(key_id));
            imported_issuers.push(issuer.id);
        }
        let config: IssuerConfig = store.get(DEFAULT_ISSUER)?.unwrap_or_default();
        if config.default.is_empty()
            && let Some(default) = first_new
        {
            batch.put_json(&store.key(DEFAULT_ISSUER), &IssuerConfig { default })?;
        }
        store.barrier.commit(batch).await?;
        let or_null = |ids: Vec<String>| {
            if ids.is_empty() {
                Value::Null
            } else {
                json!(ids)
            }
        };
        Ok(envelope(
            json!({
                "imported_issuers": or_null(imported_issuers),
                "imported_keys": or_null(imported_keys),
                "existing_issuers": or_null(existing_issuers),
                "existing_keys": or_null(existing_keys),
                "mapping": mapping,
            }),
            Vec::new(),
        ))
    }
}
