//! What every route speaks, whatever serves it: the error a client sees
//! ([`error`]), typed access to request fields ([`fields`]) and a route's
//! answer before the envelope ([`reply`]). The core and the engines both
//! depend on this module; it depends on neither.

pub mod error;
pub mod fields;
pub mod reply;
