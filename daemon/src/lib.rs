//! coffer core: the seal, the barrier, tokens, policies, mounts and secret engines
//! behind one request pipeline ([`core::Core`], which implements the doors'
//! `Handler`).

pub mod api;
pub mod audit;
pub mod auth;
pub mod autoseal;
pub mod barrier;
pub mod build_info;
pub mod cache;
pub mod changes;
pub mod clock;
pub mod config;
pub mod core;
pub mod crypto;
pub mod database;
pub mod duration;
pub mod engine;
pub mod error_chain;
pub mod hcl;
pub mod kv;
pub mod leases;
pub mod local_auth;
pub mod locks;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod mounts;
pub mod password_policy;
pub mod pki;
pub mod policy;
pub mod policy_store;
pub mod quotas;
pub mod raft;
pub mod replica;
pub mod seal;
pub mod server;
pub mod service;
pub mod shamir;
pub mod storage;
pub mod token_roles;
pub mod tokens;
