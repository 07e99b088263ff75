//! `approle`: machines with a role ID and a secret ID. Role IDs and secret
//! IDs never appear in storage keys: both are found by their HMAC under the
//! cluster's token salt. A login that spends a use of a secret ID is a
//! replicated write on the leader (logins are writes), serialized per node,
//! so `secret_id_num_uses` is exact.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use coffer_protocols::Operation;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::token_fields::{TokenFields, parse_cidr};
use super::{AuthMethod, BoxFuture, Environment, Login, LoginRequest, Mount, data_prefix};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::barrier::Barrier;
use crate::crypto::HmacKey;

const ROLES: &str = "role/";
/// `role-id/<hmac>` -> the role's name.
const ROLE_IDS: &str = "role-id/";
/// `secret-id/<role>/<hmac>` -> a [`SecretId`].
const SECRET_IDS: &str = "secret-id/";
/// `accessor/<role>/<accessor>` -> the secret ID's hmac.
const ACCESSORS: &str = "accessor/";

/// The one answer for every bad credential.
const INVALID: &str = "invalid role or secret ID";

pub struct AppRoleMethod {
    barrier: Arc<Barrier>,
    salt: OnceLock<HmacKey>,
    /// Logins and secret-ID changes of this node, one at a time: a use is
    /// read, spent and written back without another login between.
    uses: tokio::sync::Mutex<()>,
}

/// The registry's factory.
pub fn method(environment: &Environment) -> Arc<dyn AuthMethod> {
    Arc::new(AppRoleMethod {
        barrier: environment.barrier.clone(),
        salt: OnceLock::new(),
        uses: tokio::sync::Mutex::new(()),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Role {
    role_id: String,
    bind_secret_id: bool,
    secret_id_num_uses: u64,
    secret_id_ttl: u64,
    secret_id_bound_cidrs: Vec<String>,
    #[serde(default)]
    token: TokenFields,
}

impl Default for Role {
    fn default() -> Self {
        Role {
            role_id: String::new(),
            bind_secret_id: true,
            secret_id_num_uses: 0,
            secret_id_ttl: 0,
            secret_id_bound_cidrs: Vec::new(),
            token: TokenFields::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SecretId {
    accessor: String,
    metadata: BTreeMap<String, String>,
    cidr_list: Vec<String>,
    token_bound_cidrs: Vec<String>,
    creation_time: u64,
    last_updated_time: u64,
    /// Unix seconds; 0: never.
    expiration_time: u64,
    /// Uses left; 0: unlimited.
    num_uses: u64,
    /// The TTL it was made with (seconds), as lookups show it.
    ttl: u64,
}

fn valid_name(name: &str) -> ApiResult<()> {
    if crate::policy::is_name(name, "-_.@") {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "invalid role name {:?}",
            name.chars().take(64).collect::<String>()
        )))
    }
}

fn cidrs(fields: &Fields<'_>, key: &str) -> ApiResult<Option<Vec<String>>> {
    fields
        .string_list(key)?
        .map(|blocks| blocks.iter().map(|block| parse_cidr(block)).collect())
        .transpose()
}

fn rfc3339(seconds: u64) -> Value {
    if seconds == 0 {
        Value::Null
    } else {
        json!(crate::tokens::rfc3339(seconds))
    }
}

impl AppRoleMethod {
    fn salt(&self) -> ApiResult<&HmacKey> {
        if let Some(salt) = self.salt.get() {
            return Ok(salt);
        }
        let salt = self
            .barrier
            .get(crate::tokens::SALT_PATH)?
            .ok_or_else(|| ApiError::internal(&"the token salt is missing"))?;
        Ok(self.salt.get_or_init(|| HmacKey::new(&salt)))
    }

    fn hmac(&self, kind: &str, value: &str) -> ApiResult<String> {
        Ok(self
            .salt()?
            .sign_hex(format!("approle-{kind}:{value}").as_bytes()))
    }

    fn key(mount: &Mount<'_>, rest: &str) -> String {
        format!("{}{rest}", data_prefix(mount))
    }

    fn role(&self, mount: &Mount<'_>, name: &str) -> ApiResult<Option<Role>> {
        valid_name(name)?;
        Ok(self
            .barrier
            .get_json(&Self::key(mount, &format!("{ROLES}{name}")))?)
    }

    fn role_or_404(&self, mount: &Mount<'_>, name: &str) -> ApiResult<Role> {
        self.role(mount, name)?.ok_or_else(|| {
            ApiError::new(
                coffer_protocols::ErrorCode::NotFound,
                format!(
                    "role {:?} does not exist",
                    name.chars().take(64).collect::<String>()
                ),
            )
        })
    }

    async fn write_role(
        &self,
        mount: &Mount<'_>,
        name: &str,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        let _serialized = self.uses.lock().await;
        let existing = self.role(mount, name)?;
        let mut role = existing.clone().unwrap_or_default();
        if let Some(flag) = fields.bool("bind_secret_id")? {
            role.bind_secret_id = flag;
        }
        if let Some(uses) = fields.u64("secret_id_num_uses")? {
            role.secret_id_num_uses = uses;
        }
        if let Some(ttl) = fields.duration("secret_id_ttl")? {
            role.secret_id_ttl = ttl;
        }
        if let Some(blocks) = cidrs(&fields, "secret_id_bound_cidrs")? {
            role.secret_id_bound_cidrs = blocks;
        }
        role.token.update(&fields)?;
        if !role.bind_secret_id
            && role.secret_id_bound_cidrs.is_empty()
            && role.token.bound_cidrs.is_empty()
        {
            return Err(ApiError::invalid(
                "at least one constraint should be enabled on the role",
            ));
        }
        let mut batch = self.barrier.batch();
        let given_id = fields.string("role_id")?.filter(|id| !id.is_empty());
        let role_id = match (&existing, given_id) {
            (_, Some(id)) => id,
            (Some(existing), None) => existing.role_id.clone(),
            (None, None) => uuid::Uuid::new_v4().to_string(),
        };
        if role_id != role.role_id {
            self.index_role_id(mount, &mut batch, name, &role.role_id, &role_id)?;
            role.role_id = role_id;
        }
        batch.put_json(&Self::key(mount, &format!("{ROLES}{name}")), &role)?;
        self.barrier.commit(batch).await?;
        Ok(Reply::NoContent)
    }

    /// Moves the role-ID index of `name` from `old` to `new` in `batch`;
    /// a role ID another role has is refused.
    fn index_role_id(
        &self,
        mount: &Mount<'_>,
        batch: &mut crate::barrier::Batch,
        name: &str,
        old: &str,
        new: &str,
    ) -> ApiResult<()> {
        let new_key = Self::key(mount, &format!("{ROLE_IDS}{}", self.hmac("role-id", new)?));
        if let Some(owner) = self.barrier.get_json::<String>(&new_key)?
            && owner != name
        {
            return Err(ApiError::invalid("role_id already in use"));
        }
        if !old.is_empty() {
            batch.delete(&Self::key(
                mount,
                &format!("{ROLE_IDS}{}", self.hmac("role-id", old)?),
            ));
        }
        batch.put_json(&new_key, &name)?;
        Ok(())
    }

    fn describe(role: &Role) -> Value {
        let mut data = Map::new();
        role.token.describe(&mut data);
        data.insert("bind_secret_id".into(), json!(role.bind_secret_id));
        data.insert("secret_id_num_uses".into(), json!(role.secret_id_num_uses));
        data.insert("secret_id_ttl".into(), json!(role.secret_id_ttl));
        data.insert(
            "secret_id_bound_cidrs".into(),
            if role.secret_id_bound_cidrs.is_empty() {
                Value::Null
            } else {
                json!(role.secret_id_bound_cidrs)
            },
        );
        data.insert("local_secret_ids".into(), json!(false));
        Value::Object(data)
    }

    /// `secret-id` and `custom-secret-id`: a new secret ID for `name`.
    async fn new_secret_id(
        &self,
        mount: &Mount<'_>,
        name: &str,
        data: &Map<String, Value>,
        custom: bool,
    ) -> ApiResult<Reply> {
        let role = self.role_or_404(mount, name)?;
        let fields = Fields::new(data);
        let secret = if custom {
            fields
                .string("secret_id")?
                .filter(|id| !id.is_empty())
                .ok_or_else(|| ApiError::invalid("missing secret_id"))?
        } else {
            uuid::Uuid::new_v4().to_string()
        };
        let metadata = match fields.raw("metadata") {
            None => BTreeMap::new(),
            Some(Value::String(text)) if text.trim().is_empty() => BTreeMap::new(),
            Some(Value::String(text)) => serde_json::from_str(text).map_err(|_| {
                ApiError::invalid("failed to parse metadata: a JSON object of strings")
            })?,
            Some(Value::Object(_)) => fields.string_map("metadata")?.unwrap_or_default(),
            Some(_) => return Err(ApiError::invalid("metadata must be a JSON object")),
        };
        let cidr_list = cidrs(&fields, "cidr_list")?.unwrap_or_default();
        let token_bound_cidrs = cidrs(&fields, "token_bound_cidrs")?.unwrap_or_default();
        let ttl = fields.duration("ttl")?.map_or(role.secret_id_ttl, |ttl| {
            if role.secret_id_ttl > 0 {
                ttl.min(role.secret_id_ttl)
            } else {
                ttl
            }
        });
        let num_uses = fields
            .u64("num_uses")?
            .map_or(role.secret_id_num_uses, |uses| {
                if role.secret_id_num_uses > 0 && (uses == 0 || uses > role.secret_id_num_uses) {
                    role.secret_id_num_uses
                } else {
                    uses
                }
            });
        let now = crate::clock::now_seconds();
        let record = SecretId {
            accessor: uuid::Uuid::new_v4().to_string(),
            metadata,
            cidr_list,
            token_bound_cidrs,
            creation_time: now,
            last_updated_time: now,
            expiration_time: if ttl > 0 { now + ttl } else { 0 },
            num_uses,
            ttl,
        };
        let hmac = self.hmac("secret-id", &secret)?;
        let _serialized = self.uses.lock().await;
        let key = Self::key(mount, &format!("{SECRET_IDS}{name}/{hmac}"));
        if self.barrier.get(&key)?.is_some() {
            return Err(ApiError::invalid("SecretID is already registered"));
        }
        let mut batch = self.barrier.batch();
        batch.put_json(&key, &record)?;
        batch.put_json(
            &Self::key(mount, &format!("{ACCESSORS}{name}/{}", record.accessor)),
            &hmac,
        )?;
        self.barrier.commit(batch).await?;
        Ok(Reply::data(json!({
            "secret_id": secret,
            "secret_id_accessor": record.accessor,
            "secret_id_num_uses": record.num_uses,
            "secret_id_ttl": record.ttl,
        })))
    }

    /// The hmac of the secret ID `data` names, by `secret_id` or, when
    /// `by_accessor`, by `secret_id_accessor`.
    fn secret_hmac(
        &self,
        mount: &Mount<'_>,
        name: &str,
        data: &Map<String, Value>,
        by_accessor: bool,
    ) -> ApiResult<Option<String>> {
        let fields = Fields::new(data);
        if by_accessor {
            let accessor = fields
                .string("secret_id_accessor")?
                .filter(|text| !text.is_empty())
                .ok_or_else(|| ApiError::invalid("missing secret_id_accessor"))?;
            if !crate::policy::is_name(&accessor, "-") {
                return Ok(None);
            }
            Ok(self
                .barrier
                .get_json(&Self::key(mount, &format!("{ACCESSORS}{name}/{accessor}")))?)
        } else {
            let secret = fields
                .string("secret_id")?
                .filter(|text| !text.is_empty())
                .ok_or_else(|| ApiError::invalid("missing secret_id"))?;
            Ok(Some(self.hmac("secret-id", &secret)?))
        }
    }

    fn secret_record(
        &self,
        mount: &Mount<'_>,
        name: &str,
        hmac: &str,
    ) -> ApiResult<Option<SecretId>> {
        Ok(self
            .barrier
            .get_json(&Self::key(mount, &format!("{SECRET_IDS}{name}/{hmac}")))?)
    }

    fn delete_secret(
        batch: &mut crate::barrier::Batch,
        mount: &Mount<'_>,
        name: &str,
        hmac: &str,
        record: &SecretId,
    ) {
        batch.delete(&Self::key(mount, &format!("{SECRET_IDS}{name}/{hmac}")));
        batch.delete(&Self::key(
            mount,
            &format!("{ACCESSORS}{name}/{}", record.accessor),
        ));
    }

    async fn secret_action(
        &self,
        mount: &Mount<'_>,
        name: &str,
        action: &str,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        self.role_or_404(mount, name)?;
        let by_accessor = action.starts_with("secret-id-accessor/");
        let Some(hmac) = self.secret_hmac(mount, name, data, by_accessor)? else {
            return Ok(Reply::NoContent);
        };
        let _serialized = self.uses.lock().await;
        let Some(record) = self.secret_record(mount, name, &hmac)? else {
            return Ok(Reply::NoContent);
        };
        if action.ends_with("/destroy") {
            let mut batch = self.barrier.batch();
            Self::delete_secret(&mut batch, mount, name, &hmac, &record);
            self.barrier.commit(batch).await?;
            return Ok(Reply::NoContent);
        }
        Ok(Reply::data(json!({
            "secret_id_accessor": record.accessor,
            "metadata": record.metadata,
            "cidr_list": record.cidr_list,
            "token_bound_cidrs": record.token_bound_cidrs,
            "creation_time": crate::tokens::rfc3339(record.creation_time),
            "last_updated_time": crate::tokens::rfc3339(record.last_updated_time),
            "expiration_time": rfc3339(record.expiration_time),
            "secret_id_num_uses": record.num_uses,
            "secret_id_ttl": record.ttl,
        })))
    }

    async fn delete_role(&self, mount: &Mount<'_>, name: &str) -> ApiResult<Reply> {
        let _serialized = self.uses.lock().await;
        let Some(role) = self.role(mount, name)? else {
            return Ok(Reply::NoContent);
        };
        let mut batch = self.barrier.batch();
        batch.delete(&Self::key(mount, &format!("{ROLES}{name}")));
        batch.delete(&Self::key(
            mount,
            &format!("{ROLE_IDS}{}", self.hmac("role-id", &role.role_id)?),
        ));
        batch.delete_prefix(&Self::key(mount, &format!("{SECRET_IDS}{name}/")));
        batch.delete_prefix(&Self::key(mount, &format!("{ACCESSORS}{name}/")));
        self.barrier.commit(batch).await?;
        Ok(Reply::NoContent)
    }

    async fn check_login(&self, request: &LoginRequest<'_>) -> ApiResult<Login> {
        let fields = Fields::new(request.data);
        // OpenBao answers 500 here; a missing field is the client's mistake.
        let role_id = fields
            .string("role_id")?
            .filter(|text| !text.is_empty())
            .ok_or_else(|| ApiError::invalid("missing role_id"))?;
        let mount = request.mount;
        let name: String = self
            .barrier
            .get_json(&Self::key(
                mount,
                &format!("{ROLE_IDS}{}", self.hmac("role-id", &role_id)?),
            ))?
            .ok_or_else(|| ApiError::invalid(INVALID))?;
        let role = self
            .role(mount, &name)?
            .ok_or_else(|| ApiError::invalid(INVALID))?;
        let address = request.remote_address.and_then(super::token_fields::ip_of);
        let refused_address = || {
            ApiError::invalid(format!(
                "source address {:?} unauthorized by CIDR restrictions on the role",
                address.map(|ip| ip.to_string()).unwrap_or_default()
            ))
        };
        let within = |blocks: &[String]| {
            blocks.is_empty()
                || address.is_some_and(|ip| {
                    blocks
                        .iter()
                        .any(|block| super::token_fields::cidr_contains(block, ip))
                })
        };
        if !within(&role.secret_id_bound_cidrs) {
            return Err(refused_address());
        }
        let mut metadata = BTreeMap::new();
        let mut bound_cidrs = role.token.bound_cidrs.clone();
        if role.bind_secret_id {
            let secret = fields
                .string("secret_id")?
                .filter(|text| !text.is_empty())
                .ok_or_else(|| ApiError::invalid("missing secret_id"))?;
            let hmac = self.hmac("secret-id", &secret)?;
            let _serialized = self.uses.lock().await;
            let record = self
                .secret_record(mount, &name, &hmac)?
                .ok_or_else(|| ApiError::invalid(INVALID))?;
            let now = crate::clock::now_seconds();
            let mut batch = self.barrier.batch();
            if record.expiration_time > 0 && record.expiration_time <= now {
                Self::delete_secret(&mut batch, mount, &name, &hmac, &record);
                self.barrier.commit(batch).await?;
                return Err(ApiError::invalid(INVALID));
            }
            if !within(&record.cidr_list) {
                return Err(refused_address());
            }
            match record.num_uses {
                0 => {}
                1 => Self::delete_secret(&mut batch, mount, &name, &hmac, &record),
                left => batch.put_json(
                    &Self::key(mount, &format!("{SECRET_IDS}{name}/{hmac}")),
                    &SecretId {
                        num_uses: left - 1,
                        last_updated_time: now,
                        ..record.clone()
                    },
                )?,
            }
            if !batch.is_empty() {
                self.barrier.commit(batch).await?;
            }
            metadata.extend(record.metadata.clone());
            if !record.token_bound_cidrs.is_empty() {
                bound_cidrs = record.token_bound_cidrs.clone();
            }
        }
        let mut login = role.token.login(name.clone());
        login.bound_cidrs = bound_cidrs;
        login.metadata = metadata;
        login.metadata.insert("role_name".to_owned(), name);
        Ok(login)
    }
}

impl AuthMethod for AppRoleMethod {
    fn type_name(&self) -> &'static str {
        "approle"
    }

    fn description(&self) -> &'static str {
        "machines, by role ID and secret ID"
    }

    fn is_login(&self, path: &str) -> bool {
        path == "login"
    }

    fn login<'a>(&'a self, request: &'a LoginRequest<'a>) -> BoxFuture<'a, ApiResult<Login>> {
        Box::pin(self.check_login(request))
    }

    /// By role ID, for logins that try a secret ID (a role without one is
    /// bound by CIDR instead).
    fn lockout_user(&self, request: &LoginRequest<'_>) -> Option<String> {
        let fields = Fields::new(request.data);
        let given = |key: &str| {
            fields
                .string(key)
                .ok()
                .flatten()
                .filter(|value| !value.is_empty())
        };
        given("secret_id")?;
        given("role_id")
    }

    fn exists(&self, mount: &Mount<'_>, path: &str) -> ApiResult<bool> {
        match path.strip_prefix("role/") {
            Some(name) if !name.contains('/') => Ok(self.role(mount, name)?.is_some()),
            _ => Ok(true),
        }
    }

    fn handle<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        operation: Operation,
        path: &'a str,
        data: &'a Map<String, Value>,
    ) -> BoxFuture<'a, ApiResult<Reply>> {
        Box::pin(async move {
            let unsupported = || ApiError::unsupported(path, operation.as_str());
            let path = path.trim_end_matches('/');
            if path == "role" {
                return match operation {
                    Operation::List => {
                        Ok(Reply::List(self.barrier.list(&Self::key(mount, ROLES))?))
                    }
                    _ => Err(unsupported()),
                };
            }
            let Some(rest) = path.strip_prefix("role/") else {
                return Err(ApiError::no_route(path));
            };
            let (name, action) = rest.split_once('/').unwrap_or((rest, ""));
            valid_name(name)?;
            match (action, operation) {
                ("", Operation::Read) => Ok(Reply::data(Self::describe(
                    &self.role(mount, name)?.ok_or_else(ApiError::not_found)?,
                ))),
                ("", Operation::Write) => self.write_role(mount, name, data).await,
                ("", Operation::Delete) => self.delete_role(mount, name).await,
                ("role-id", Operation::Read) => {
                    let role = self.role(mount, name)?.ok_or_else(ApiError::not_found)?;
                    Ok(Reply::data(json!({"role_id": role.role_id})))
                }
                ("role-id", Operation::Write) => {
                    self.role_or_404(mount, name)?;
                    let id = Fields::new(data)
                        .string("role_id")?
                        .filter(|id| !id.is_empty())
                        .ok_or_else(|| ApiError::invalid("missing role_id"))?;
                    let mut only = Map::new();
                    only.insert("role_id".into(), json!(id));
                    self.write_role(mount, name, &only).await
                }
                ("secret-id", Operation::Write) => {
                    self.new_secret_id(mount, name, data, false).await
                }
                ("custom-secret-id", Operation::Write) => {
                    self.new_secret_id(mount, name, data, true).await
                }
                ("secret-id", Operation::List) => {
                    self.role_or_404(mount, name)?;
                    Ok(Reply::List(
                        self.barrier
                            .list(&Self::key(mount, &format!("{ACCESSORS}{name}/")))?,
                    ))
                }
                (
                    "secret-id/lookup"
                    | "secret-id/destroy"
                    | "secret-id-accessor/lookup"
                    | "secret-id-accessor/destroy",
                    Operation::Write,
                )
                | ("secret-id/destroy" | "secret-id-accessor/destroy", Operation::Delete) => {
                    self.secret_action(mount, name, action, data).await
                }
                _ => Err(unsupported()),
            }
        })
    }
}
