//! The HTTP door: Vault's `/v1` API. Converts HTTP requests into neutral
//! [`Request`]s in one place ([`to_neutral`]) and renders [`Response`]s back
//! ([`render`]). Every path goes to the one handler; nothing is routed here.

use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use crate::connection::token_of;
pub use crate::connection::{BodyDeadline, Caller, MAX_BODY_BYTES};

use crate::request::new_request_id;
use crate::{ClientToken, ErrorCode, Handler, Observation, Operation, Request, Response};
use crate::{ResponseBody, Transport};

/// A snapshot upload may be larger; it is held in memory while it is checked,
/// and travels base64-encoded in one Raft entry, which must stay under the
/// cluster transport's 512 MiB body limit.
pub const MAX_SNAPSHOT_BYTES: usize = 256 * 1024 * 1024;

/// Endpoints whose body is a file, not a JSON object.
fn takes_raw_body(path: &str) -> bool {
    matches!(
        path,
        "sys/storage/raft/snapshot" | "sys/storage/raft/snapshot-force"
    )
}

/// Answers one HTTP request: every path goes to `handler`, so no router sits
/// in between (axum's cost about 2% of a KV read's CPU for nothing).
pub(crate) async fn dispatch<H: Handler>(
    handler: &H,
    request: axum::extract::Request,
) -> axum::response::Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let transport = match request.extensions().get::<Caller>() {
        Some(Caller::Local(_)) => Transport::Unix,
        _ => Transport::Http,
    };
    let response = match to_neutral(handler, request).await {
        Ok(neutral) => handler.handle(neutral).await,
        Err(refusal) => refusal,
    };
    handler.observe(Observation {
        transport,
        route: response.route.as_deref().unwrap_or("unmatched"),
        method: &method,
        status: response.http_status(),
        elapsed: started.elapsed(),
    });
    render(response)
}

/// Builds the neutral request, or the error response that refuses it. A body
/// larger than JSON requests may send (a snapshot upload) is read only once
/// `handler` has admitted its caller ([`Handler::admit`]).
pub async fn to_neutral<H: Handler>(
    handler: &H,
    request: axum::extract::Request,
) -> Result<Request, Response> {
    let (parts, body) = request.into_parts();
    let Some(encoded_path) = parts.uri.path().strip_prefix("/v1/") else {
        return Err(Response::error(
            ErrorCode::NotFound,
            "unsupported path: the API is served under /v1/",
        ));
    };
    let path = percent_decode_str(encoded_path)
        .decode_utf8()
        .map_err(|_| Response::error(ErrorCode::InvalidRequest, "path is not valid UTF-8"))?
        .into_owned();

    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|query| {
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    // `?list=` takes Go's boolean spellings, as Vault does.
    let list_requested = query.iter().any(|(key, value)| {
        key == "list" && matches!(value.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True")
    });

    let operation = match parts.method.as_str() {
        "GET" if list_requested => Operation::List,
        "GET" | "HEAD" => Operation::Read,
        "POST" | "PUT" => Operation::Write,
        "DELETE" => Operation::Delete,
        "PATCH" => Operation::Patch,
        "LIST" => Operation::List,
        other => {
            return Err(Response::error(
                ErrorCode::UnsupportedOperation,
                format!("unsupported HTTP method {other}"),
            ));
        }
    };

    let deadline = parts
        .extensions
        .get::<BodyDeadline>()
        .copied()
        .unwrap_or(BodyDeadline::DEFAULT);
    let raw = takes_raw_body(&path) && operation == Operation::Write;
    let (transport, remote_address, peer) = match parts.extensions.get::<Caller>() {
        Some(Caller::Local(peer)) => (Transport::Unix, None, Some(peer.clone())),
        Some(Caller::Remote(address)) => (Transport::Http, Some(address.clone()), None),
        None => (Transport::Http, None, None),
    };
    let mut neutral = Request {
        id: new_request_id(),
        operation,
        path,
        data: Map::new(),
        token: client_token(&parts.headers)?,
        transport,
        remote_address,
        wrap_ttl: None,
        no_forward: parts
            .headers
            .get("x-vault-no-request-forwarding")
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"true")),
        raw_body: None,
        forwarded: false,
        peer,
    };
    let limit = if raw {
        handler.admit(&neutral).await?;
        MAX_SNAPSHOT_BYTES
    } else {
        MAX_BODY_BYTES
    };
    let body = match tokio::time::timeout(deadline.0, read_body(&parts.headers, body, limit)).await
    {
        Ok(body) => body?,
        Err(_) => {
            return Err(Response::error(
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {} s",
                    deadline.0.as_secs_f32()
                ),
            ));
        }
    };
    neutral.data = if raw {
        Map::new()
    } else if body.iter().all(u8::is_ascii_whitespace) {
        match operation {
            Operation::Read | Operation::List | Operation::Delete => query
                .into_iter()
                .filter(|(key, _)| key != "list")
                .map(|(key, value)| (key, Value::String(value)))
                .collect(),
            Operation::Write | Operation::Patch => Map::new(),
        }
    } else {
        parse_object(&body)?
    };
    if raw {
        neutral.raw_body = Some(body.to_vec());
    }
    if let Some(wrap_ttl) = parts.headers.get("x-vault-wrap-ttl") {
        neutral.wrap_ttl = Some(String::from_utf8_lossy(wrap_ttl.as_bytes()).into_owned());
    }
    Ok(neutral)
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Response> {
    let too_large = || {
        Response::error(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than the {limit}-byte limit"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(Response::error(
            ErrorCode::InvalidRequest,
            "failed to read the request body",
        )),
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        // The vault CLI's `write -f` sends `null`: Vault reads it as no data.
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(Response::error(
            ErrorCode::InvalidRequest,
            "the request body must be a JSON object",
        )),
        Err(error) => Err(Response::error(
            ErrorCode::InvalidRequest,
            format!(
                "failed to parse JSON input: {} at line {} column {}",
                json_error_kind(&error),
                error.line(),
                error.column()
            ),
        )),
    }
}

/// serde_json's message can quote input; describe the error by its class only, so
/// no part of a (possibly secret) body is echoed back or logged.
fn json_error_kind(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "invalid data",
        serde_json::error::Category::Eof => "unexpected end of input",
    }
}

fn client_token(headers: &HeaderMap) -> Result<Option<ClientToken>, Response> {
    token_of(
        headers.get("x-vault-token").map(HeaderValue::as_bytes),
        headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    )
    .map_err(|()| Response::error(ErrorCode::InvalidRequest, "malformed token header"))
}

/// Renders a neutral response as HTTP.
pub fn render(response: Response) -> axum::response::Response {
    let mut rendered = render_body(response.body);
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::try_from(name),
            HeaderValue::try_from(value),
        ) {
            rendered.headers_mut().append(name, value);
        }
    }
    rendered
}

fn render_body(body: ResponseBody) -> axum::response::Response {
    match body {
        ResponseBody::Logical(logical) => json_bytes(StatusCode::OK, logical.to_json_bytes()),
        ResponseBody::NoContent => {
            with_common_headers(axum::response::Response::builder().status(StatusCode::NO_CONTENT))
                .body(Body::empty())
                .unwrap_or_default()
        }
        ResponseBody::Raw { status, body } => json(status_code(status), &body),
        ResponseBody::Text { content_type, body } => with_common_headers(
            axum::response::Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, content_type),
        )
        .body(Body::from(body))
        .unwrap_or_default(),
        ResponseBody::Binary { content_type, body } => with_common_headers(
            axum::response::Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, content_type),
        )
        .body(Body::from(body))
        .unwrap_or_default(),
        ResponseBody::Redirect { location } => with_common_headers(
            axum::response::Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(header::LOCATION, location),
        )
        .body(Body::empty())
        .unwrap_or_default(),
        ResponseBody::Error {
            code,
            messages,
            data,
        } => {
            let mut document = match data {
                Some(logical) => logical.to_json(),
                None => Value::Object(Map::new()),
            };
            if let Value::Object(object) = &mut document {
                object.insert(
                    "errors".to_owned(),
                    Value::Array(messages.into_iter().map(Value::String).collect()),
                );
            }
            json(status_code(code.http_status()), &document)
        }
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn json(status: StatusCode, document: &Value) -> axum::response::Response {
    json_bytes(status, serde_json::to_vec(document).unwrap_or_default())
}

fn json_bytes(status: StatusCode, body: Vec<u8>) -> axum::response::Response {
    with_common_headers(
        axum::response::Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json"),
    )
    .body(Body::from(body))
    .unwrap_or_default()
}

fn with_common_headers(builder: http::response::Builder) -> http::response::Builder {
    // Secrets must not be cached by proxies or clients.
    builder.header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{parse_object, token_of};

    #[test]
    fn a_null_body_is_no_data_and_other_non_objects_are_refused() {
        assert!(parse_object(b"null").unwrap().is_empty());
        assert_eq!(parse_object(br#"{"a":1}"#).unwrap()["a"], 1);
        assert!(parse_object(b"[1,2]").is_err());
        assert!(parse_object(b"\"text\"").is_err());
    }

    #[test]
    fn tokens_come_from_x_vault_token_first_then_bearer() {
        let token = |x: Option<&[u8]>, authorization: Option<&[u8]>| {
            token_of(x, authorization).map(|token| token.map(|t| t.expose().to_owned()))
        };
        assert_eq!(token(Some(b" a "), Some(b"Bearer b")), Ok(Some("a".into())));
        assert_eq!(token(None, Some(b"bearer b")), Ok(Some("b".into())));
        assert_eq!(token(None, Some(b"Basic b")), Ok(None));
        assert_eq!(token(Some(b""), None), Ok(None));
        assert_eq!(token(None, None), Ok(None));
        assert_eq!(token(Some("t\u{e9}".as_bytes()), None), Err(()));
        assert_eq!(token(None, Some(b"Bearer \x01")), Err(()));
    }
}
