//! `userpass`: people with a name and a password. The password is kept as an
//! argon2id hash (or a bcrypt `password_hash` brought from Vault); a login
//! with a wrong password and one with an unknown name get the same 400 after
//! the same work (an unknown name is checked against a dummy hash).
//! Hashing runs off the async threads, a few at a time: work before
//! authentication is bounded.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use coffer_protocols::Operation;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::token_fields::TokenFields;
use super::{AuthMethod, BoxFuture, Environment, Login, LoginRequest, Mount, data_prefix};
use crate::api::error::{ApiError, ApiResult};
use crate::api::fields::Fields;
use crate::api::reply::Reply;
use crate::barrier::Barrier;

/// Password checks running at once; more wait (each holds ~19 MiB).
const CONCURRENT_HASHES: usize = 4;

const USERS: &str = "user/";

pub struct UserpassMethod {
    barrier: Arc<Barrier>,
    hashing: tokio::sync::Semaphore,
}

/// The registry's factory.
pub fn method(environment: &Environment) -> Arc<dyn AuthMethod> {
    Arc::new(UserpassMethod {
        barrier: environment.barrier.clone(),
        hashing: tokio::sync::Semaphore::new(CONCURRENT_HASHES),
    })
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct User {
    /// PHC (`$argon2id$...`) or bcrypt (`$2b$...`).
    password_hash: String,
    #[serde(default)]
    token: TokenFields,
}

/// A user name as stored: Vault's are case-insensitive.
fn user_key(name: &str) -> ApiResult<String> {
    let name = name.to_ascii_lowercase();
    if !crate::policy::is_name(&name, "-_.@") {
        return Err(ApiError::invalid(format!(
            "invalid username {:?}: letters, digits, '-', '_', '.' and '@'",
            name.chars().take(64).collect::<String>()
        )));
    }
    Ok(name)
}

/// An argon2id hash of `password` with a fresh salt.
fn hash(password: &[u8]) -> ApiResult<String> {
    argon2::Argon2::default()
        .hash_password(password)
        .map(|hash| hash.to_string())
        .map_err(|error| ApiError::internal(&error))
}

/// Whether `password` matches `stored`; false for anything unreadable.
fn verify(password: &[u8], stored: &str) -> bool {
    if stored.starts_with("$2") {
        return std::str::from_utf8(password)
            .ok()
            .is_some_and(|text| bcrypt::verify(text, stored).unwrap_or(false));
    }
    argon2::password_hash::phc::PasswordHash::new(stored).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password, &parsed)
            .is_ok()
    })
}

/// A hash no password matches, checked for unknown names so they cost the
/// same as known ones.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut random = [0u8; 32];
        let _ = crate::crypto::fill_random(&mut random);
        hash(&random).unwrap_or_default()
    })
}

/// A `password_hash` as given: bcrypt (Vault's) or argon2 PHC.
fn given_hash(text: &str) -> ApiResult<String> {
    let bcrypt_ok = text.starts_with("$2") && text.parse::<bcrypt::HashParts>().is_ok();
    let argon_ok =
        text.starts_with("$argon2") && argon2::password_hash::phc::PasswordHash::new(text).is_ok();
    if bcrypt_ok || argon_ok {
        Ok(text.to_owned())
    } else {
        Err(ApiError::invalid(
            "password_hash must be a bcrypt ($2b$...) or argon2 ($argon2id$...) hash",
        ))
    }
}

impl UserpassMethod {
    fn user(&self, mount: &Mount<'_>, name: &str) -> ApiResult<Option<User>> {
        Ok(self
            .barrier
            .get_json(&format!("{}{USERS}{}", data_prefix(mount), user_key(name)?))?)
    }

    async fn put(&self, mount: &Mount<'_>, name: &str, user: &User) -> ApiResult<()> {
        self.barrier
            .put_json(
                &format!("{}{USERS}{}", data_prefix(mount), user_key(name)?),
                user,
            )
            .await?;
        Ok(())
    }

    /// Hashes or checks off the async threads, a few at a time.
    async fn hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|error| ApiError::internal(&error))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|error| ApiError::internal(&error))
    }

    async fn write_user(
        &self,
        mount: &Mount<'_>,
        name: &str,
        data: &Map<String, Value>,
    ) -> ApiResult<Reply> {
        let fields = Fields::new(data);
        let mut user = self.user(mount, name)?;
        let created = user.is_none();
        let mut updated = user.take().unwrap_or_default();
        updated.token.update(&fields)?;
        if let Some(password) = fields.string("password")?.filter(|text| !text.is_empty()) {
            let password = Zeroizing::new(password);
            updated.password_hash = self.hashing(move || hash(password.as_bytes())).await??;
        } else if let Some(given) = fields
            .string("password_hash")?
            .filter(|text| !text.is_empty())
        {
            updated.password_hash = given_hash(&given)?;
        } else if created {
            return Err(ApiError::invalid(
                "must provide either password or password_hash",
            ));
        }
        self.put(mount, name, &updated).await?;
        Ok(Reply::NoContent)
    }
}

impl AuthMethod for UserpassMethod {
    fn type_name(&self) -> &'static str {
        "userpass"
    }

    fn description(&self) -> &'static str {
        "people, by name and password"
    }

    fn is_login(&self, path: &str) -> bool {
        path.starts_with("login/")
    }

    fn login<'a>(&'a self, request: &'a LoginRequest<'a>) -> BoxFuture<'a, ApiResult<Login>> {
        Box::pin(async move {
            let name = request
                .path
                .trim_start_matches("login/")
                .to_ascii_lowercase();
            let fields = Fields::new(request.data);
            // OpenBao answers 500 here; a missing field is the client's mistake.
            let password = Zeroizing::new(
                fields
                    .string("password")?
                    .filter(|text| !text.is_empty())
                    .ok_or_else(|| ApiError::invalid("missing password"))?,
            );
            let user = match user_key(&name) {
                Ok(_) => self.user(request.mount, &name)?,
                Err(_) => None,
            };
            let stored = user.as_ref().map_or_else(
                || dummy_hash().to_owned(),
                |user| user.password_hash.clone(),
            );
            let matched = self
                .hashing(move || verify(password.as_bytes(), &stored))
                .await?;
            let user = match user {
                Some(user) if matched => user,
                _ => return Err(ApiError::invalid("invalid username or password")),
            };
            let mut login = user.token.login(name.clone());
            login.metadata.insert("username".to_owned(), name);
            Ok(login)
        })
    }

    /// A login without a password tries no password: it does not count.
    fn lockout_user(&self, request: &LoginRequest<'_>) -> Option<String> {
        let tries = Fields::new(request.data)
            .string("password")
            .ok()
            .flatten()
            .is_some_and(|password| !password.is_empty());
        tries.then(|| {
            request
                .path
                .trim_start_matches("login/")
                .to_ascii_lowercase()
        })
    }

    fn exists(&self, mount: &Mount<'_>, path: &str) -> ApiResult<bool> {
        match path.strip_prefix("users/") {
            Some(name) if !name.contains('/') => Ok(self.user(mount, name)?.is_some()),
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
            if path == "users" {
                return match operation {
                    Operation::List => {
                        let prefix = format!("{}{USERS}", data_prefix(mount));
                        Ok(Reply::List(self.barrier.list(&prefix)?))
                    }
                    _ => Err(unsupported()),
                };
            }
            let Some(rest) = path.strip_prefix("users/") else {
                return Err(ApiError::no_route(path));
            };
            let (name, action) = rest.split_once('/').unwrap_or((rest, ""));
            match (action, operation) {
                ("", Operation::Read) => {
                    let user = self.user(mount, name)?.ok_or_else(ApiError::not_found)?;
                    let mut data = Map::new();
                    user.token.describe(&mut data);
                    Ok(Reply::Data(data))
                }
                ("", Operation::Write) => self.write_user(mount, name, data).await,
                ("", Operation::Delete) => {
                    self.barrier
                        .delete(&format!("{}{USERS}{}", data_prefix(mount), user_key(name)?))
                        .await?;
                    Ok(Reply::NoContent)
                }
                ("password", Operation::Write) => {
                    let mut user = self.user(mount, name)?.ok_or_else(|| {
                        ApiError::invalid(format!(
                            "username does not exist: {}",
                            name.chars().take(64).collect::<String>()
                        ))
                    })?;
                    let password = Zeroizing::new(
                        Fields::new(data)
                            .string("password")?
                            .filter(|text| !text.is_empty())
                            .ok_or_else(|| ApiError::invalid("missing password"))?,
                    );
                    user.password_hash = self.hashing(move || hash(password.as_bytes())).await??;
                    self.put(mount, name, &user).await?;
                    Ok(Reply::NoContent)
                }
                ("policies", Operation::Write) => {
                    let mut user = self.user(mount, name)?.ok_or_else(|| {
                        ApiError::invalid(format!(
                            "username does not exist: {}",
                            name.chars().take(64).collect::<String>()
                        ))
                    })?;
                    let fields = Fields::new(data);
                    let mut policies = Map::new();
                    for key in ["token_policies", "policies"] {
                        if let Some(value) = fields.raw(key) {
                            policies.insert(key.to_owned(), value.clone());
                        }
                    }
                    user.token.update(&Fields::new(&policies))?;
                    self.put(mount, name, &user).await?;
                    Ok(Reply::NoContent)
                }
                _ => Err(unsupported()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_refuse() {
        let stored = hash(b"s3cret").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify(b"s3cret", &stored));
        assert!(!verify(b"s3cre", &stored));
        assert!(!verify(b"s3cret", dummy_hash()));
        assert!(!verify(b"s3cret", "garbage"));
        // A bcrypt hash as Vault's password_hash brings it.
        let vaults = bcrypt::hash("s3cret", 4).unwrap();
        assert!(given_hash(&vaults).is_ok());
        assert!(verify(b"s3cret", &vaults));
        assert!(!verify(b"other", &vaults));
        assert!(given_hash("plain text").is_err());
        assert!(given_hash(&stored).is_ok());
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(user_key("ALICE").unwrap(), "alice");
        assert!(user_key("a/b").is_err());
    }
}
