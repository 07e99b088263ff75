//! `coffer.v1.Coffer`: each RPC becomes one neutral request to the handler,
//! exactly as the HTTP door would build it for the same path.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::{Map, Value};
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use super::convert::{self, object, status};
use super::pb::{self, coffer_server::Coffer};
use crate::connection::Caller;
use crate::{
    ClientToken, ErrorCode, Handler, Observation, Operation, Request, Response, ResponseBody,
    Transport, WatchEvent,
};

/// The service over `handler`.
pub struct CofferService<H> {
    handler: Arc<H>,
}

impl<H: Handler> CofferService<H> {
    pub fn new(handler: Arc<H>) -> Self {
        CofferService { handler }
    }

    /// The neutral request for an RPC: token from the metadata, the caller
    /// from the connection.
    fn neutral<T>(
        &self,
        rpc: &tonic::Request<T>,
        operation: Operation,
        path: &str,
        data: Map<String, Value>,
    ) -> Result<Request, Status> {
        let mut request = Request::new(operation, path, Transport::Grpc);
        request.data = data;
        request.token = token(rpc.metadata())?;
        match rpc.extensions().get::<Caller>() {
            Some(Caller::Local(peer)) => request.peer = Some(peer.clone()),
            Some(Caller::Remote(address)) => request.remote_address = Some(address.clone()),
            None => {}
        }
        Ok(request)
    }

    /// Hands `request` to the core and records the call.
    async fn call(&self, method: &'static str, request: Request) -> Response {
        let started = Instant::now();
        let response = self.handler.handle(request).await;
        self.handler.observe(Observation {
            transport: Transport::Grpc,
            route: response.route.as_deref().unwrap_or("unmatched"),
            method,
            status: response.http_status(),
            elapsed: started.elapsed(),
        });
        response
    }

    async fn enveloped<T>(
        &self,
        method: &'static str,
        rpc: &tonic::Request<T>,
        operation: Operation,
        path: &str,
        data: Map<String, Value>,
    ) -> Result<tonic::Response<pb::Response>, Status> {
        let request = self.neutral(rpc, operation, path, data)?;
        let id = request.id.clone();
        let response = self.call(method, request).await;
        convert::response(response, &id).map(tonic::Response::new)
    }

    /// A raw document (`sys/health`, `sys/seal-status`) whatever its status.
    async fn document<T>(
        &self,
        method: &'static str,
        rpc: &tonic::Request<T>,
        path: &str,
    ) -> Result<Map<String, Value>, Status> {
        let request = self.neutral(rpc, Operation::Read, path, Map::new())?;
        match self.call(method, request).await.body {
            ResponseBody::Raw {
                body: Value::Object(document),
                ..
            } => Ok(document),
            ResponseBody::Error { code, messages, .. } => Err(status(code, &messages)),
            _ => Err(status(
                ErrorCode::Internal,
                &[format!("{path} gave an unexpected answer")],
            )),
        }
    }
}

/// `x-vault-token`, or `authorization: Bearer <token>`, as on HTTP.
fn token(metadata: &tonic::metadata::MetadataMap) -> Result<Option<ClientToken>, Status> {
    crate::connection::token_of(
        metadata.get("x-vault-token").map(|value| value.as_bytes()),
        metadata.get("authorization").map(|value| value.as_bytes()),
    )
    .map_err(|()| {
        status(
            ErrorCode::InvalidRequest,
            &["malformed token metadata".to_owned()],
        )
    })
}

fn params(params: std::collections::HashMap<String, String>) -> Map<String, Value> {
    params
        .into_iter()
        .map(|(key, value)| (key, Value::String(value)))
        .collect()
}

fn body(data: Option<prost_types::Struct>) -> Result<Map<String, Value>, Status> {
    data.map(object).transpose().map(Option::unwrap_or_default)
}

fn lease(lease_id: String) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("lease_id".into(), Value::String(lease_id));
    data
}

fn text(document: &Map<String, Value>, key: &str) -> String {
    document
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn flag(document: &Map<String, Value>, key: &str) -> bool {
    document.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn number(document: &Map<String, Value>, key: &str) -> i64 {
    document.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn rfc3339(millis: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(millis)).to_string()
}

fn event(event: WatchEvent) -> pb::WatchEvent {
    use pb::watch_event::Event;
    let inner = match event {
        WatchEvent::Change {
            path,
            operation,
            version,
            time_ms,
            index,
        } => Event::Change(pb::Change {
            path,
            operation,
            version: i64::try_from(version).unwrap_or(i64::MAX),
            time: rfc3339(time_ms),
            index,
        }),
        WatchEvent::LeaseExpiring {
            lease_id,
            expire_time,
            ttl,
            renewable,
        } => Event::LeaseExpiring(pb::LeaseExpiring {
            lease_id,
            expire_time: rfc3339(expire_time.saturating_mul(1000)),
            ttl_seconds: i64::try_from(ttl).unwrap_or(i64::MAX),
            renewable,
        }),
        WatchEvent::Lagged { missed } => Event::Lagged(pb::Lagged { missed }),
    };
    pb::WatchEvent { event: Some(inner) }
}

type Events = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl<H: Handler> Coffer for CofferService<H> {
    async fn read(
        &self,
        rpc: tonic::Request<pb::ReadRequest>,
    ) -> Result<tonic::Response<pb::Response>, Status> {
        let path = rpc.get_ref().path.clone();
        let data = params(rpc.get_ref().params.clone());
        self.enveloped("Read", &rpc, Operation::Read, &path, data)
            .await
    }

    async fn write(
        &self,
        rpc: tonic::Request<pb::WriteRequest>,
    ) -> Result<tonic::Response<pb::Response>, Status> {
        let path = rpc.get_ref().path.clone();
        let data = body(rpc.get_ref().data.clone())?;
        self.enveloped("Write", &rpc, Operation::Write, &path, data)
            .await
    }

    async fn list(
        &self,
        rpc: tonic::Request<pb::ListRequest>,
    ) -> Result<tonic::Response<pb::Response>, Status> {
        let path = rpc.get_ref().path.clone();
        self.enveloped("List", &rpc, Operation::List, &path, Map::new())
            .await
    }

    async fn delete(
        &self,
        rpc: tonic::Request<pb::DeleteRequest>,
    ) -> Result<tonic::Response<pb::Response>, Status> {
        let path = rpc.get_ref().path.clone();
        let data = params(rpc.get_ref().params.clone());
        self.enveloped("Delete", &rpc, Operation::Delete, &path, data)
            .await
    }

    async fn login(
        &self,
        rpc: tonic::Request<pb::LoginRequest>,
    ) -> Result<tonic::Response<pb::Response>, Status> {
        let path = rpc.get_ref().path.clone();
        if !path.starts_with("auth/") {
            return Err(status(
                ErrorCode::InvalidRequest,
                &[format!(
                    "a login path starts with auth/ (e.g. auth/userpass/login/NAME), not {path:?}"
                )],
            ));
        }
        let data = body(rpc.get_ref().data.clone())?;
        self.enveloped("Login", &rpc, Operation::Write, &path, data)
            .await
    }

    async fn lookup_self(
        &self,
        rpc: tonic::Request<pb::LookupSelfRequest>,
    ) -> Result<tonic::Response<pb::Response>, Status> {
        self.enveloped(
            "LookupSelf",
            &rpc,
            Operation::Read,
            "auth/token/lookup-self",
            Map::new(),
        )
        .await
    }

    async fn renew(
        &self,
        rpc: tonic::Request<pb::RenewRequest>,
    ) -> Result<tonic::Response<pb::Response>, Status> {
        let mut data = lease(rpc.get_ref().lease_id.clone());
        let increment = rpc.get_ref().increment_seconds;
        if increment < 0 {
            return Err(status(
                ErrorCode::InvalidRequest,
                &["increment_seconds must not be negative".to_owned()],
            ));
        }
        if increment > 0 {
            data.insert("increment".into(), Value::from(increment));
        }
        self.enveloped("Renew", &rpc, Operation::Write, "sys/leases/renew", data)
            .await
    }

    async fn revoke(
        &self,
        rpc: tonic::Request<pb::RevokeRequest>,
    ) -> Result<tonic::Response<pb::RevokeResponse>, Status> {
        let data = lease(rpc.get_ref().lease_id.clone());
        let answer = self
            .enveloped("Revoke", &rpc, Operation::Write, "sys/leases/revoke", data)
            .await?;
        Ok(tonic::Response::new(pb::RevokeResponse {
            request_id: answer.into_inner().request_id,
        }))
    }

    async fn lookup(
        &self,
        rpc: tonic::Request<pb::LookupRequest>,
    ) -> Result<tonic::Response<pb::Response>, Status> {
        let data = lease(rpc.get_ref().lease_id.clone());
        self.enveloped("Lookup", &rpc, Operation::Write, "sys/leases/lookup", data)
            .await
    }

    async fn health(
        &self,
        rpc: tonic::Request<pb::HealthRequest>,
    ) -> Result<tonic::Response<pb::HealthResponse>, Status> {
        let document = self.document("Health", &rpc, "sys/health").await?;
        Ok(tonic::Response::new(pb::HealthResponse {
            initialized: flag(&document, "initialized"),
            sealed: flag(&document, "sealed"),
            standby: flag(&document, "standby"),
            version: text(&document, "version"),
            cluster_name: text(&document, "cluster_name"),
            cluster_id: text(&document, "cluster_id"),
            server_time_utc: number(&document, "server_time_utc"),
        }))
    }

    async fn seal_status(
        &self,
        rpc: tonic::Request<pb::SealStatusRequest>,
    ) -> Result<tonic::Response<pb::SealStatusResponse>, Status> {
        let document = self.document("SealStatus", &rpc, "sys/seal-status").await?;
        Ok(tonic::Response::new(pb::SealStatusResponse {
            r#type: text(&document, "type"),
            initialized: flag(&document, "initialized"),
            sealed: flag(&document, "sealed"),
            threshold: number(&document, "t"),
            shares: number(&document, "n"),
            progress: number(&document, "progress"),
            version: text(&document, "version"),
            cluster_name: text(&document, "cluster_name"),
            cluster_id: text(&document, "cluster_id"),
        }))
    }

    type WatchStream = Events;

    async fn watch(
        &self,
        rpc: tonic::Request<pb::WatchRequest>,
    ) -> Result<tonic::Response<Events>, Status> {
        let prefix = rpc.get_ref().prefix.clone();
        let warning = rpc.get_ref().lease_warning_seconds;
        if warning < 0 {
            return Err(status(
                ErrorCode::InvalidRequest,
                &["lease_warning_seconds must not be negative".to_owned()],
            ));
        }
        let mut data = Map::new();
        data.insert("lease_warning_seconds".into(), Value::from(warning));
        let request = self.neutral(&rpc, Operation::Read, &prefix, data)?;
        let started = Instant::now();
        let outcome = self.handler.watch(request).await;
        let status_code = match &outcome {
            Ok(_) => 200,
            Err(response) => response.http_status(),
        };
        self.handler.observe(Observation {
            transport: Transport::Grpc,
            route: "watch",
            method: "Watch",
            status: status_code,
            elapsed: started.elapsed(),
        });
        let receiver = match outcome {
            Ok(receiver) => receiver,
            Err(response) => {
                return Err(convert::response(response, "").err().unwrap_or_else(|| {
                    status(ErrorCode::Internal, &["the watch did not start".to_owned()])
                }));
            }
        };
        let events = tokio_stream::wrappers::ReceiverStream::new(receiver).map(|item| {
            item.map(event).map_err(|ending| {
                convert::response(ending, "")
                    .err()
                    .unwrap_or_else(|| status(ErrorCode::Internal, &["the watch ended".to_owned()]))
            })
        });
        Ok(tonic::Response::new(Box::pin(events)))
    }
}
