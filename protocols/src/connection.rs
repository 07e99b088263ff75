//! What the accept loop tells each request about its connection, and what
//! the HTTP and gRPC doors share about reading one: who the caller is, how
//! long its body may take, how large it may be, and where its token is.

use crate::{ClientToken, LocalPeer};

/// Request bodies up to this many bytes are accepted, as in Vault.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Who is at the other end of a connection, put into each request's extensions
/// by the serve loop.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A TCP peer: its address, for audit.
    Remote(String),
    /// A Unix-socket peer as the kernel named it: authenticated by `auth/local`
    /// roles when it sends no token.
    Local(LocalPeer),
}

/// How long the request body may take to arrive, put into each request's
/// extensions by the serve loop (a listener's `http_read_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub std::time::Duration);

impl BodyDeadline {
    /// A listener's default `http_read_timeout`.
    pub const DEFAULT: BodyDeadline = BodyDeadline(std::time::Duration::from_secs(30));
}

/// The token of `X-Vault-Token`, or else of `Authorization: Bearer <token>`
/// (HTTP headers, gRPC metadata); `Err` when a value is not visible ASCII.
pub(crate) fn token_of(
    x_vault_token: Option<&[u8]>,
    authorization: Option<&[u8]>,
) -> Result<Option<ClientToken>, ()> {
    let text = |bytes: &[u8]| {
        bytes
            .iter()
            .all(|byte| byte.is_ascii_graphic() || *byte == b' ' || *byte == b'\t')
            // The copy is wiped when dropped, like the token it becomes.
            .then(|| zeroize::Zeroizing::new(String::from_utf8_lossy(bytes).into_owned()))
            .ok_or(())
    };
    let found = |token: &str| {
        let token = token.trim();
        (!token.is_empty()).then(|| ClientToken::new(token.to_owned()))
    };
    if let Some(value) = x_vault_token {
        return Ok(found(&text(value)?));
    }
    if let Some(value) = authorization {
        let value = text(value)?;
        if let Some((scheme, token)) = value.split_once(' ')
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return Ok(found(token));
        }
    }
    Ok(None)
}
