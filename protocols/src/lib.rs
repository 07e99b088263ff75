//! coffer's neutral request/response types, the handler trait and the HTTP adapter.
//!
//! Every door (HTTP on TCP or a Unix socket, FUSE, and later gRPC) converts its wire
//! format into [`Request`], calls [`Handler::handle`] and converts the [`Response`]
//! back. This crate never sees the core's internals: the core implements [`Handler`].

pub mod connection;
pub mod error;
pub mod grpc;
pub mod handler;
pub mod http;
pub mod listener;
pub mod peer;
pub mod request;
pub mod response;
pub mod unix_socket;

pub use error::ErrorCode;
pub use handler::{Handler, Observation, WatchEvent, WatchStream};
pub use request::{ClientToken, LocalPeer, Operation, Request, Transport};
pub use response::{Auth, LogicalResponse, Response, ResponseBody};
