//! Property test of the request pipeline: random requests (operation, path,
//! body, with or without a token, from any door) through the core's one entry
//! point, in-process on a real Raft store. Whatever a client sends is answered
//! without a panic and without a 500, and a refused request changes nothing.
//! `scripts/fuzz` runs it with many more cases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};

use coffer_daemon::core::{Core, Settings};
use coffer_daemon::raft::cluster::{self, Cluster};
use coffer_protocols::{Handler, LocalPeer, Operation, Request, Response, ResponseBody, Transport};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

struct Node {
    core: Arc<Core>,
    runtime: tokio::runtime::Runtime,
    _directory: tempfile::TempDir,
}

/// One node for every case: cases run one after another on it.
fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let directory = tempfile::tempdir().unwrap();
        let core = runtime.block_on(async {
            let settings = cluster::Settings {
                name: "fuzz".into(),
                api_addr: String::new(),
                cluster_addr: String::new(),
            };
            let cluster = Cluster::open(directory.path(), settings, None).unwrap();
            let core = Arc::new(Core::new(cluster, Settings::default()).unwrap());
            let output = core.initialize(1, 1, Some("root".into())).await.unwrap();
            core.submit_unseal_share(output.shares[0].clone(), false)
                .await
                .unwrap();
            for (path, body) in [
                (
                    "sys/mounts/secret",
                    json!({"type": "kv", "options": {"version": "2"}}),
                ),
                ("sys/mounts/kv1", json!({"type": "kv"})),
                ("sys/mounts/database", json!({"type": "database"})),
                ("secret/data/app/db", json!({"data": {"password": "p"}})),
                (
                    "sys/policies/acl/reader",
                    json!({"policy": "path \"secret/*\" { capabilities = [\"read\"] }"}),
                ),
                (
                    "auth/local/role/fuzz",
                    json!({"bound_uids": [4242], "policies": ["reader"]}),
                ),
            ] {
                let request = Request::new(Operation::Write, path, Transport::Http)
                    .with_token("root")
                    .with_data(body.as_object().unwrap().clone());
                let response = core.handle(request).await;
                assert!(response.http_status() < 300, "{path}: {:?}", response.body);
            }
            core
        });
        Node {
            core,
            runtime,
            _directory: directory,
        }
    })
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("sys".to_owned()),
        Just("secret".to_owned()),
        Just("kv1".to_owned()),
        Just("database".to_owned()),
        Just("auth".to_owned()),
        Just("token".to_owned()),
        Just("local".to_owned()),
        Just("data".to_owned()),
        Just("metadata".to_owned()),
        Just("internal".to_owned()),
        Just("fs".to_owned()),
        Just("mounts".to_owned()),
        Just("policies".to_owned()),
        Just("acl".to_owned()),
        Just("leases".to_owned()),
        Just("storage".to_owned()),
        Just("raft".to_owned()),
        Just("audit".to_owned()),
        Just("rotate".to_owned()),
        Just("config".to_owned()),
        Just("creds".to_owned()),
        Just("roles".to_owned()),
        Just("app".to_owned()),
        Just("db".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just(String::new()),
        "[a-z0-9_-]{1,8}",
        "\\PC{1,4}",
        "[\\x00-\\x1f%]{1,3}",
    ]
}

/// Where requests go: mostly the routes there are, so cases reach the
/// handlers behind them, sometimes nowhere in particular.
fn prefix() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("secret/data/app/"),
        Just("secret/metadata/"),
        Just("secret/config"),
        Just("secret/delete/app/"),
        Just("secret/destroy/app/"),
        Just("secret/subkeys/app/"),
        Just("kv1/"),
        Just("sys/mounts/"),
        Just("sys/policies/acl/"),
        Just("sys/policies/password/"),
        Just("sys/capabilities-self"),
        Just("sys/internal/fs/"),
        Just("sys/internal/ui/mounts/"),
        Just("sys/leases/lookup"),
        Just("sys/leases/renew"),
        Just("sys/audit/"),
        Just("sys/audit-hash/"),
        Just("sys/rotate/config"),
        Just("sys/key-status"),
        Just("sys/storage/raft/"),
        Just("sys/"),
        Just("auth/token/create"),
        Just("auth/token/lookup"),
        Just("auth/token/"),
        Just("auth/local/role/"),
        Just("auth/local/login"),
        Just("database/config/"),
        Just("database/roles/"),
        Just("database/static-roles/"),
        Just("database/creds/"),
        Just("database/reset/"),
        Just(""),
    ]
    .prop_map(str::to_owned)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|number| json!(number)),
        "\\PC{0,12}".prop_map(Value::String),
        Just(json!("1h")),
        Just(json!("kv")),
        Just(json!("database")),
        Just(json!(["read", "list"])),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("type".to_owned()),
                    Just("data".to_owned()),
                    Just("options".to_owned()),
                    Just("policy".to_owned()),
                    Just("ttl".to_owned()),
                    Just("version".to_owned()),
                    Just("cas".to_owned()),
                    Just("lease_id".to_owned()),
                    Just("policies".to_owned()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..4
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map(
        prop_oneof![
            Just("type".to_owned()),
            Just("data".to_owned()),
            Just("options".to_owned()),
            Just("policy".to_owned()),
            Just("ttl".to_owned()),
            Just("lease_id".to_owned()),
            Just("bound_uids".to_owned()),
            Just("policies".to_owned()),
            Just("connection_url".to_owned()),
            Just("plugin_name".to_owned()),
            "[a-z_]{1,10}",
        ],
        json_value(),
        0..5,
    )
    .prop_map(|map| map.into_iter().collect())
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        Just(Operation::Read),
        Just(Operation::List),
        Just(Operation::Write),
        Just(Operation::Patch),
        Just(Operation::Delete),
    ]
}

/// What a refused request must leave as it was.
async fn state(core: &Core) -> Value {
    let read = |operation: Operation, path: &'static str| async move {
        let request = Request::new(operation, path, Transport::Http).with_token("root");
        let response = core.handle(request).await;
        match response.body {
            ResponseBody::Logical(logical) => logical.to_json()["data"].clone(),
            other => json!(format!("{other:?}")),
        }
    };
    json!({
        "mounts": read(Operation::Read, "sys/mounts").await.as_object().map(|mounts| mounts.keys().cloned().collect::<Vec<_>>()),
        "policies": read(Operation::List, "sys/policies/acl").await,
        "secrets": read(Operation::List, "secret/metadata/app").await,
        "secret": read(Operation::Read, "secret/data/app/db").await["data"].clone(),
        "roles": read(Operation::List, "auth/local/role").await,
        "audit": read(Operation::Read, "sys/audit").await,
    })
}

fn status(response: &Response) -> u16 {
    response.http_status()
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_request_is_answered_without_a_500_and_a_refusal_changes_nothing(
        operation in operation(),
        prefix in prefix(),
        segments in proptest::collection::vec(segment(), 0..4),
        data in body(),
        token in prop_oneof![4 => Just(Some("root")), 1 => Just(None), 1 => Just(Some("hvs.not-a-token"))],
        door in prop_oneof![Just(Transport::Http), Just(Transport::Grpc), Just(Transport::Unix), Just(Transport::Fuse)],
    ) {
        let node = node();
        let path = format!("{prefix}{}", segments.join("/"));
        // Sealing the node or revoking the root token would end the run's
        // meaning, not find a fault.
        prop_assume!(!path.contains("seal") && !path.contains("revoke"));
        let (answer, before, after) = node.runtime.block_on(async {
            let before = state(&node.core).await;
            let mut request = Request::new(operation, path.clone(), door).with_data(data.clone());
            if let Some(token) = token {
                request = request.with_token(token);
            }
            if matches!(door, Transport::Unix | Transport::Fuse) {
                request.peer = Some(LocalPeer::from_kernel(4242, 4242, 0));
            }
            let response = node.core.handle(request).await;
            let after = state(&node.core).await;
            (response, before, after)
        });
        let code = status(&answer);
        prop_assert!(code != 500, "{operation:?} {path:?} {data:?}: {:?}", answer.body);
        if code >= 400 {
            prop_assert_eq!(before, after, "{:?} {:?} was refused ({}) but changed the state", operation, path, code);
        }
    }
}
