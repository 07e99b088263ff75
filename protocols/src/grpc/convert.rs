//! Conversions between the gRPC door's messages and the neutral types: JSON
//! and `google.protobuf.Struct`, responses and statuses, error codes.

use prost_types::value::Kind;
use serde_json::{Map, Number, Value};
use tonic::Status;
use tonic::metadata::MetadataValue;

use super::pb;
use crate::{Auth, ErrorCode, Response, ResponseBody};

/// The gRPC status of each stable error code.
pub fn code(code: ErrorCode) -> tonic::Code {
    match code {
        ErrorCode::InvalidRequest => tonic::Code::InvalidArgument,
        ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
        ErrorCode::NotFound => tonic::Code::NotFound,
        ErrorCode::UnsupportedOperation => tonic::Code::Unimplemented,
        ErrorCode::PayloadTooLarge | ErrorCode::RateLimited => tonic::Code::ResourceExhausted,
        ErrorCode::RequestTimeout => tonic::Code::DeadlineExceeded,
        ErrorCode::NotInitialized => tonic::Code::FailedPrecondition,
        ErrorCode::Sealed | ErrorCode::Unavailable | ErrorCode::Upstream => {
            tonic::Code::Unavailable
        }
        ErrorCode::Internal => tonic::Code::Internal,
    }
}

/// A failure as a status: the messages joined, the stable code in the
/// `x-coffer-error` metadata.
pub fn status(error: ErrorCode, messages: &[String]) -> Status {
    let message = if messages.is_empty() {
        error.as_str().replace('_', " ")
    } else {
        messages.join("; ")
    };
    let mut status = Status::new(code(error), message);
    status
        .metadata_mut()
        .insert("x-coffer-error", MetadataValue::from_static(error.as_str()));
    status
}

/// The stable code of an HTTP status that a raw document carried.
fn error_of_http(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::InvalidRequest,
        403 => ErrorCode::PermissionDenied,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::UnsupportedOperation,
        408 => ErrorCode::RequestTimeout,
        413 => ErrorCode::PayloadTooLarge,
        429 => ErrorCode::RateLimited,
        501 => ErrorCode::NotInitialized,
        502 => ErrorCode::Upstream,
        503 => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    }
}

/// A `Struct` as a JSON object. Numbers that are whole and exactly
/// representable become integers (`{"cas": 0}` stays an integer); NaN,
/// infinities and values without a kind are refused.
pub fn object(value: prost_types::Struct) -> Result<Map<String, Value>, Status> {
    value
        .fields
        .into_iter()
        .map(|(key, value)| Ok((key.clone(), json(value, &key)?)))
        .collect()
}

fn json(value: prost_types::Value, key: &str) -> Result<Value, Status> {
    let invalid = |what: &str| {
        status(
            ErrorCode::InvalidRequest,
            &[format!("invalid value for {key:?}: {what}")],
        )
    };
    Ok(match value.kind {
        None => return Err(invalid("a value with no kind set")),
        Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(flag)) => Value::Bool(flag),
        Some(Kind::StringValue(text)) => Value::String(text),
        Some(Kind::NumberValue(number)) => {
            if !number.is_finite() {
                return Err(invalid("numbers must be finite (no NaN or infinity)"));
            }
            // 2^53: beyond it a double no longer holds every integer.
            if number.fract() == 0.0 && number.abs() < 9_007_199_254_740_992.0 {
                #[allow(clippy::cast_possible_truncation)]
                Value::Number(Number::from(number as i64))
            } else {
                Number::from_f64(number)
                    .map(Value::Number)
                    .ok_or_else(|| invalid("not a JSON number"))?
            }
        }
        Some(Kind::StructValue(inner)) => Value::Object(object(inner)?),
        Some(Kind::ListValue(list)) => Value::Array(
            list.values
                .into_iter()
                .map(|item| json(item, key))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// A JSON object as a `Struct` (responses write theirs directly: `wire.rs`).
#[cfg(test)]
pub fn to_struct(map: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .iter()
            .map(|(key, value)| (key.clone(), to_value(value)))
            .collect(),
    }
}

#[cfg(test)]
fn to_value(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(flag) => Kind::BoolValue(*flag),
        Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or_default()),
        Value::String(text) => Kind::StringValue(text.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn seconds(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn auth(auth: Auth) -> pb::Auth {
    pb::Auth {
        client_token: auth.client_token,
        accessor: auth.accessor,
        policies: auth.policies,
        token_policies: auth.token_policies,
        metadata: auth
            .metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                (key, text)
            })
            .collect(),
        lease_duration: seconds(auth.lease_duration),
        renewable: auth.renewable,
        token_type: auth.token_type,
        orphan: auth.orphan,
        num_uses: seconds(auth.num_uses),
    }
}

/// A neutral response as the `Response` message, or the status of its failure.
/// `request_id` fills the envelope of answers that have none (204s).
pub fn response(response: Response, request_id: &str) -> Result<pb::Response, Status> {
    let empty = || pb::Response {
        request_id: request_id.to_owned(),
        ..pb::Response::default()
    };
    match response.body {
        ResponseBody::Logical(logical) => Ok(pb::Response {
            request_id: logical.request_id,
            lease_id: logical.lease_id,
            renewable: logical.renewable,
            lease_duration: seconds(logical.lease_duration),
            data: logical.data,
            warnings: logical.warnings.unwrap_or_default(),
            auth: logical.auth.map(auth),
            mount_type: logical.mount_type,
        }),
        ResponseBody::NoContent => Ok(empty()),
        ResponseBody::Raw { status: code, body } if code < 400 => Ok(pb::Response {
            data: match body {
                Value::Object(map) => Some(map),
                _ => None,
            },
            ..empty()
        }),
        ResponseBody::Raw { status: code, body } => {
            let messages: Vec<String> = body["errors"]
                .as_array()
                .map(|errors| {
                    errors
                        .iter()
                        .filter_map(|error| error.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            Err(status(error_of_http(code), &messages))
        }
        ResponseBody::Text { content_type, body } => {
            let mut data = Map::new();
            data.insert("content_type".into(), Value::String(content_type));
            data.insert("text".into(), Value::String(body));
            Ok(pb::Response {
                data: Some(data),
                ..empty()
            })
        }
        ResponseBody::Binary { .. } => Err(status(
            ErrorCode::UnsupportedOperation,
            &["this endpoint returns a file: use the HTTP API".to_owned()],
        )),
        ResponseBody::Redirect { location } => Err(status(
            ErrorCode::Unavailable,
            &[format!(
                "this node is a standby; the leader is at {location}"
            )],
        )),
        ResponseBody::Error {
            code: error,
            messages,
            ..
        } => {
            let mut failure = status(error, &messages);
            // `retry-after` of a rate limit, as on HTTP.
            for (name, value) in response.headers {
                if let (Ok(name), Ok(value)) = (
                    tonic::metadata::MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes()),
                    MetadataValue::try_from(value),
                ) {
                    failure.metadata_mut().insert(name, value);
                }
            }
            Err(failure)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn json_round_trips_through_struct_with_integers_kept() {
        let original = json!({
            "cas": 0,
            "n": -42,
            "ratio": 0.5,
            "ok": true,
            "none": null,
            "list": ["a", 1, {"deep": [false]}],
        });
        let map = original.as_object().unwrap();
        assert_eq!(Value::Object(object(to_struct(map)).unwrap()), original);
    }

    #[test]
    fn bad_struct_values_are_invalid_arguments() {
        for kind in [
            None,
            Some(Kind::NumberValue(f64::NAN)),
            Some(Kind::NumberValue(f64::INFINITY)),
        ] {
            let mut fields = std::collections::BTreeMap::new();
            fields.insert("x".to_owned(), prost_types::Value { kind });
            let error = object(prost_types::Struct { fields }).unwrap_err();
            assert_eq!(error.code(), tonic::Code::InvalidArgument);
            assert!(error.message().contains("\"x\""), "{}", error.message());
            assert_eq!(
                error.metadata().get("x-coffer-error").unwrap(),
                "invalid_request"
            );
        }
    }

    #[test]
    fn failures_keep_their_messages_and_codes() {
        let failure = Response::error(ErrorCode::Sealed, "Vault is sealed");
        let error = response(failure, "id").unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unavailable);
        assert_eq!(error.message(), "Vault is sealed");
        let raw = Response::new(
            None,
            ResponseBody::Raw {
                status: 400,
                body: json!({"errors": ["bad key share"]}),
            },
        );
        let error = response(raw, "id").unwrap_err();
        assert_eq!(
            (error.code(), error.message()),
            (tonic::Code::InvalidArgument, "bad key share")
        );
        let done = response(Response::new(None, ResponseBody::NoContent), "id-1").unwrap();
        assert_eq!(done.request_id, "id-1");
    }

    fn struct_value() -> impl proptest::strategy::Strategy<Value = prost_types::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(prost_types::Value { kind: None }),
            Just(prost_types::Value {
                kind: Some(Kind::NullValue(0))
            }),
            any::<bool>().prop_map(|flag| prost_types::Value {
                kind: Some(Kind::BoolValue(flag))
            }),
            any::<f64>().prop_map(|number| prost_types::Value {
                kind: Some(Kind::NumberValue(number))
            }),
            Just(prost_types::Value {
                kind: Some(Kind::NumberValue(f64::NAN))
            }),
            "\\PC{0,8}".prop_map(|text| prost_types::Value {
                kind: Some(Kind::StringValue(text))
            }),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(|values| {
                    prost_types::Value {
                        kind: Some(Kind::ListValue(prost_types::ListValue { values })),
                    }
                }),
                proptest::collection::btree_map("[a-z]{0,4}", inner, 0..4).prop_map(|fields| {
                    prost_types::Value {
                        kind: Some(Kind::StructValue(prost_types::Struct {
                            fields: fields.into_iter().collect(),
                        })),
                    }
                }),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever a client puts in a request's `Struct` becomes JSON that
        /// goes back to the same `Struct`, or an INVALID_ARGUMENT.
        #[test]
        fn any_struct_becomes_json_or_invalid_argument(
            fields in proptest::collection::btree_map("[a-z]{0,4}", struct_value(), 0..5),
        ) {
            let input = prost_types::Struct { fields: fields.into_iter().collect() };
            match object(input) {
                Ok(map) => {
                    let again = object(to_struct(&map)).unwrap();
                    proptest::prop_assert_eq!(again, map);
                }
                Err(status) => {
                    proptest::prop_assert_eq!(status.code(), tonic::Code::InvalidArgument);
                }
            }
        }
    }
}
