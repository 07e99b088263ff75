//! Property tests of the doors' conversions of outside input: any HTTP request
//! line, headers and body become a neutral request or a 4xx refusal (never a
//! panic or a 5xx), and any protobuf `Struct` a gRPC client sends becomes JSON
//! or an INVALID_ARGUMENT. `scripts/fuzz` runs them with many more cases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_protocols::http::to_neutral;
use coffer_protocols::{Handler, Observation, Request, Response};
use proptest::prelude::*;

/// Admits every large upload, so the body reading is exercised too.
struct Admitting;

impl Handler for Admitting {
    async fn handle(&self, _request: Request) -> Response {
        Response::error(coffer_protocols::ErrorCode::Internal, "not called")
    }

    fn observe(&self, _observation: Observation<'_>) {}

    async fn admit(&self, _request: &Request) -> Result<(), Response> {
        Ok(())
    }
}

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("GET"),
        Just("PUT"),
        Just("POST"),
        Just("DELETE"),
        Just("PATCH"),
        Just("LIST"),
        Just("HEAD"),
        Just("OPTIONS"),
        Just("BREW"),
    ]
}

fn uri_path() -> impl Strategy<Value = String> {
    prop_oneof![
        "/v1/[ -~&&[^ #?]]{0,40}",
        "/v1/(%[0-9A-Fa-f]{2}|[a-z/]){0,20}",
        "/[a-z0-9/%]{0,20}",
        Just("/v1/sys/storage/raft/snapshot".to_owned()),
        Just("/v1/sys/storage/raft/snapshot-force".to_owned()),
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("?list=true".to_owned()),
        "\\?[a-z=&%0-9]{0,20}",
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        "\\PC{0,64}".prop_map(String::into_bytes),
        Just(b"{\"data\": {\"a\": 1}}".to_vec()),
        Just(b"[1, 2]".to_vec()),
        Just(b"{\"a\": 1e400}".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #[test]
    fn any_http_request_becomes_a_request_or_a_4xx(
        method in method(),
        path in uri_path(),
        query in query(),
        token in prop_oneof![Just(None), Just(Some("hvs.x".to_owned())), "[ -~]{0,8}".prop_map(Some)],
        bearer in any::<bool>(),
        body in body(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut builder = http::Request::builder().method(method).uri(format!("{path}{query}"));
        if let Some(token) = &token {
            builder = if bearer {
                builder.header("authorization", format!("Bearer {token}"))
            } else {
                builder.header("x-vault-token", token.as_str())
            };
        }
        let Ok(request) = builder.body(axum::body::Body::from(body)) else {
            return Ok(()); // not a request hyper would have parsed
        };
        match runtime.block_on(to_neutral(&Admitting, request)) {
            Ok(neutral) => {
                prop_assert!(!neutral.path.starts_with("v1/"));
            }
            Err(refusal) => {
                let status = refusal.http_status();
                prop_assert!((400..500).contains(&status), "{status}: {:?}", refusal.body);
            }
        }
    }
}
