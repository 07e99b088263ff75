//! Vault's response envelope around a route's reply: request id, mount type,
//! `sys/` flattening, an empty LIST as 404.

use coffer_protocols::{ErrorCode, LogicalResponse, Request, ResponseBody};
use serde_json::{Map, Value};

use super::{Core, Routed};
use crate::api::reply::Reply;

impl Core {
    pub(super) fn envelope(request: &Request, routed: Routed) -> ResponseBody {
        let logical = |mut response: LogicalResponse| {
            response.request_id = request.id.clone();
            response.mount_type = routed.mount_type.to_owned();
            response.flatten_data = routed.flatten;
            ResponseBody::Logical(Box::new(response))
        };
        match routed.reply {
            Reply::Data(data) => logical(LogicalResponse::with_data(data)),
            Reply::Envelope(envelope) => logical(*envelope),
            Reply::List(keys) if keys.is_empty() => ResponseBody::Error {
                code: ErrorCode::NotFound,
                messages: Vec::new(),
                data: None,
            },
            Reply::List(keys) => {
                let mut data = Map::new();
                data.insert("keys".into(), Value::from(keys));
                logical(LogicalResponse::with_data(data))
            }
            Reply::NoContent => ResponseBody::NoContent,
            Reply::Raw(status, body) => ResponseBody::Raw { status, body },
            Reply::Text(content_type, body) => ResponseBody::Text {
                content_type: content_type.to_owned(),
                body,
            },
            Reply::Binary(content_type, body) => ResponseBody::Binary {
                content_type: content_type.to_owned(),
                body,
            },
        }
    }
}
