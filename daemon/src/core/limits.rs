//! Where the pipeline meets the quotas (`crate::quotas`): the rate limit
//! every request passes first, and the lease count a lease-issuing read
//! passes before its engine runs.

use std::time::Duration;

use coffer_protocols::{ErrorCode, Request, Response, ResponseBody};

use super::audited::{entry, mount_of};
use super::{Core, Unsealed};
use crate::api::error::{ApiError, ApiResult};
use crate::quotas::{Client, Decision, Reservation, Verdict};

/// The longest a refusal is held (see [`Core::refuse_over_rate`]).
const MAX_HOLD: Duration = Duration::from_secs(1);

/// The route label of a request refused by a rate limit (its route was not
/// looked up: refusing it costs nothing more).
const RATE_LIMITED_ROUTE: &str = "rate-limited";

impl Core {
    /// The rate limit's verdict on `request`, if one covers it. Requests
    /// forwarded by a standby were counted there.
    pub(super) fn rate_limit(&self, request: &Request) -> Option<Verdict> {
        if request.forwarded {
            return None;
        }
        self.quotas.rate_limit(&request.path, client_of(request)?)
    }

    /// The answer to a request over its rate limit: 429 with `Retry-After`,
    /// audited if the quota config asks for it.
    ///
    /// The answer leaves when the client could next succeed, at most
    /// [`MAX_HOLD`] later. A client that ignores `Retry-After` and retries at
    /// once is then slowed to its quota instead of spinning on 429s that cost
    /// every other client CPU (measured: the others kept 0.78x of their rate
    /// beside 4 such connections, without the hold). A held refusal keeps
    /// only its connection, which admission bounds, and a timer.
    pub(super) async fn refuse_over_rate(&self, request: &Request, verdict: &Verdict) -> Response {
        let message = format!("request path {:?}: rate limit quota exceeded", request.path);
        if verdict.audit
            && let Ok(unsealed) = self.unsealed()
            && let Some(scope) = unsealed.audit.scope(None)
        {
            let mount = mount_of(&unsealed, &request.path);
            let record = entry(
                "request",
                request,
                &request.path,
                &mount,
                None,
                None,
                Some(&message),
            );
            self.audit(&scope, &record).await;
        }
        tracing::debug!(quota = %verdict.quota, "refused a request over its rate limit");
        tokio::time::sleep(verdict.decision.wait.min(MAX_HOLD)).await;
        let mut response = Response::new(
            Some(RATE_LIMITED_ROUTE.to_owned()),
            ResponseBody::Error {
                code: ErrorCode::RateLimited,
                messages: vec![message],
                data: None,
            },
        );
        response.headers.push((
            "Retry-After".to_owned(),
            verdict.decision.retry_after.to_string(),
        ));
        if verdict.headers {
            response.headers.extend(rate_headers(&verdict.decision));
        }
        response
    }

    /// Admits a read that issues a lease under the lease count covering
    /// `path`, if one does; 429 when the count is reached. The reservation
    /// is held until the read is done.
    pub(super) fn reserve_lease(
        &self,
        unsealed: &Unsealed,
        path: &str,
    ) -> ApiResult<Option<Reservation>> {
        let Some(counter) = self.quotas.lease_count(path) else {
            return Ok(None);
        };
        let reservation = counter
            .reserve(|prefix| unsealed.leases.count_under(prefix))
            .map_err(|error| ApiError::internal(&error))?;
        match reservation {
            Some(reservation) => Ok(Some(reservation)),
            None => {
                tracing::debug!(quota = %counter.name(), "refused a lease over its lease count");
                Err(ApiError::new(
                    ErrorCode::RateLimited,
                    format!("request path {path:?}: lease count quota exceeded"),
                ))
            }
        }
    }
}

/// `X-Ratelimit-*`, when `sys/quotas/config` turns them on.
pub(super) fn rate_headers(decision: &Decision) -> [(String, String); 3] {
    [
        ("X-Ratelimit-Limit".to_owned(), decision.limit.to_string()),
        (
            "X-Ratelimit-Remaining".to_owned(),
            decision.remaining.to_string(),
        ),
        ("X-Ratelimit-Reset".to_owned(), decision.reset.to_string()),
    ]
}

/// Who a rate limit counts: a caller on this host by its uid, a remote one
/// by its address. A request with neither (the dev server's own set-up) is
/// not counted.
fn client_of(request: &Request) -> Option<Client> {
    if let Some(peer) = &request.peer {
        return Some(Client::Uid(peer.uid));
    }
    crate::auth::token_fields::ip_of(request.remote_address.as_deref()?).map(Client::Address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_protocols::{LocalPeer, Operation, Transport};

    #[test]
    fn clients_are_their_address_or_their_uid() {
        let mut request = Request::new(Operation::Read, "secret/x", Transport::Http);
        assert_eq!(client_of(&request), None);
        request.remote_address = Some("127.0.0.2:40000".into());
        assert_eq!(
            client_of(&request),
            Some(Client::Address("127.0.0.2".parse().unwrap()))
        );
        request.remote_address = Some("[::1]:8200".into());
        assert_eq!(
            client_of(&request),
            Some(Client::Address("::1".parse().unwrap()))
        );
        request.peer = Some(LocalPeer::from_kernel(1000, 1000, 42));
        assert_eq!(client_of(&request), Some(Client::Uid(1000)));
    }
}
