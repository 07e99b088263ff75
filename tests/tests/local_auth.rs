//! `auth/local` through the core's one pipeline, in-process on a real Raft
//! store: roles written and read back, bad roles refused, a local caller (as the
//! Unix socket and FUSE doors present it) logging in for a token or served
//! without one, and callers that match no role refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use coffer_daemon::core::{Core, Settings};
use coffer_daemon::raft::cluster::{self, Cluster};
use coffer_protocols::{
    ErrorCode, Handler, LocalPeer, Operation, Request, Response, ResponseBody, Transport,
};
use serde_json::{Map, Value, json};

struct Node {
    core: Arc<Core>,
    _directory: tempfile::TempDir,
}

async fn node() -> Node {
    let directory = tempfile::tempdir().unwrap();
    let settings = cluster::Settings {
        name: "local-auth".into(),
        api_addr: String::new(),
        cluster_addr: String::new(),
    };
    let cluster = Cluster::open(directory.path(), settings, None).unwrap();
    let core = Arc::new(Core::new(cluster, Settings::default()).unwrap());
    let output = core
        .initialize(1, 1, Some("root".into()))
        .await
        .unwrap_or_else(|error| panic!("init: {:?}", error.messages));
    core.submit_unseal_share(output.shares[0].clone(), false)
        .await
        .unwrap_or_else(|error| panic!("unseal: {:?}", error.messages));
    Node {
        core,
        _directory: directory,
    }
}

fn data(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// (status, the envelope or error body as JSON).
fn outcome(response: Response) -> (u16, Value) {
    let status = response.http_status();
    let body = match response.body {
        ResponseBody::Logical(logical) => logical.to_json(),
        ResponseBody::Error { messages, .. } => json!({"errors": messages}),
        ResponseBody::NoContent => Value::Null,
        other => json!(format!("{other:?}")),
    };
    (status, body)
}

impl Node {
    async fn root(&self, operation: Operation, path: &str, body: Value) -> (u16, Value) {
        let request = Request::new(operation, path, Transport::Http)
            .with_token("root")
            .with_data(data(body));
        outcome(self.core.handle(request).await)
    }

    async fn local(
        &self,
        uid: u32,
        token: Option<&str>,
        operation: Operation,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let mut request = Request::new(operation, path, Transport::Unix).with_data(data(body));
        request.peer = Some(LocalPeer::from_kernel(uid, uid, std::process::id()));
        if let Some(token) = token {
            request = request.with_token(token);
        }
        outcome(self.core.handle(request).await)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_callers_log_in_or_are_served_by_their_roles_and_nothing_else() {
    let node = node().await;
    let (status, _) = node
        .root(
            Operation::Write,
            "sys/policies/acl/app",
            json!({"policy": "path \"secret/data/app/*\" {\n capabilities = [\"read\"]\n}\npath \"auth/token/create\" {\n capabilities = [\"update\"]\n}"}),
        )
        .await;
    assert_eq!(status, 204);
    node.root(
        Operation::Write,
        "sys/mounts/secret",
        json!({"type": "kv", "options": {"version": "2"}}),
    )
    .await;
    for path in ["secret/data/app/db", "secret/data/other/x"] {
        node.root(Operation::Write, path, json!({"data": {"password": "p"}}))
            .await;
    }

    // Bad roles are refused with the reason.
    for (body, reason) in [
        (json!({"policies": ["app"]}), "at least one of bound_uids"),
        (
            json!({"bound_uids": [1000], "policies": ["root"]}),
            "cannot grant the root policy",
        ),
        (
            json!({"bound_uids": ["x"], "policies": ["app"]}),
            "numeric ids",
        ),
        (
            json!({"bound_units": ["bad unit"], "policies": ["app"]}),
            "systemd unit names",
        ),
        (
            json!({"bound_uids": [1000], "token_ttl": "2h", "token_max_ttl": "1h"}),
            "token_ttl",
        ),
        (
            json!({"bound_uids": [1000], "colour": "red"}),
            "unknown field",
        ),
    ] {
        let (status, answer) = node
            .root(Operation::Write, "auth/local/role/bad", body)
            .await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains(reason), "{reason}: {answer}");
    }
    let (status, _) = node
        .root(
            Operation::Write,
            "auth/local/role/bad name",
            json!({"bound_uids": [1]}),
        )
        .await;
    assert_eq!(status, 400);

    let (status, _) = node
        .root(
            Operation::Write,
            "auth/local/role/app",
            json!({"bound_uids": "1000,1001", "policies": "app", "token_ttl": "1m"}),
        )
        .await;
    assert_eq!(status, 204);
    let (_, role) = node
        .root(Operation::Read, "auth/local/role/app", json!({}))
        .await;
    assert_eq!(role["data"]["bound_uids"], json!([1000, 1001]));
    assert_eq!(role["data"]["token_ttl"], 60);
    let (_, listed) = node
        .root(Operation::List, "auth/local/role", json!({}))
        .await;
    assert_eq!(listed["data"]["keys"], json!(["app"]));

    // Login: a token with the role's policies and TTL.
    let (status, login) = node
        .local(1000, None, Operation::Write, "auth/local/login", json!({}))
        .await;
    assert_eq!(status, 200, "{login}");
    let auth = &login["auth"];
    assert_eq!(auth["policies"], json!(["app", "default"]));
    assert_eq!(auth["lease_duration"], 60);
    assert_eq!(auth["metadata"]["role"], "app");
    assert_eq!(auth["metadata"]["uid"], "1000");
    let token = auth["client_token"].as_str().unwrap().to_owned();
    let (status, read) = node
        .root(Operation::Read, "secret/data/app/db", json!({}))
        .await;
    assert_eq!(status, 200, "{read}");
    let request =
        Request::new(Operation::Read, "secret/data/app/db", Transport::Http).with_token(&token);
    let (status, read) = outcome(node.core.handle(request).await);
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["data"]["data"]["password"], "p");
    let (status, _) = node
        .local(
            1000,
            Some(&token),
            Operation::Read,
            "auth/token/lookup-self",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "the token works from the socket too");

    // Naming a role the caller does not match, or matching none: 403.
    let (status, _) = node
        .local(
            1000,
            None,
            Operation::Write,
            "auth/local/login",
            json!({"role": "other"}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = node
        .local(4242, None, Operation::Write, "auth/local/login", json!({}))
        .await;
    assert_eq!(status, 403);
    // Over HTTP there is no local caller to log in.
    let request = Request::new(Operation::Write, "auth/local/login", Transport::Http);
    let response = node.core.handle(request).await;
    assert!(matches!(
        response.body,
        ResponseBody::Error {
            code: ErrorCode::InvalidRequest,
            ..
        }
    ));

    // Without a token a matching caller is served by its roles, and only that.
    let (status, read) = node
        .local(1001, None, Operation::Read, "secret/data/app/db", json!({}))
        .await;
    assert_eq!(status, 200, "{read}");
    let (status, _) = node
        .local(
            1001,
            None,
            Operation::Read,
            "sys/policies/acl/app",
            json!({}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = node
        .local(4242, None, Operation::Read, "secret/data/app/db", json!({}))
        .await;
    assert_eq!(status, 403);
    let (status, answer) = node
        .local(
            1001,
            None,
            Operation::Read,
            "auth/token/lookup-self",
            json!({}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(answer.to_string().contains("auth/local/login"), "{answer}");
    let (status, _) = node
        .local(1001, None, Operation::Write, "auth/token/create", json!({}))
        .await;
    assert_eq!(
        status, 400,
        "no tokens minted from a local identity, even where policy allows"
    );

    // The filesystem's view: field names and the path to read, never values;
    // 403 where the caller has no access, whether or not anything is there.
    let (status, node_info) = node
        .local(
            1001,
            None,
            Operation::Read,
            "sys/internal/fs/secret/app/db",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{node_info}");
    assert_eq!(node_info["data"]["kind"], "secret");
    assert_eq!(node_info["data"]["read_path"], "secret/data/app/db");
    assert_eq!(node_info["data"]["fields"], json!(["password"]));
    assert!(!node_info.to_string().contains("\"p\""));
    for path in [
        "sys/internal/fs/secret/other/x",
        "sys/internal/fs/secret/nothing",
    ] {
        let (status, _) = node
            .local(1001, None, Operation::Read, path, json!({}))
            .await;
        assert_eq!(status, 403, "{path}");
    }
    // A listing is what LIST on the metadata path shows: the role's policy
    // grants read, not list, so no names at all.
    let (status, listed) = node
        .local(
            1001,
            None,
            Operation::List,
            "sys/internal/fs/secret",
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "{listed}");
    assert!(!listed.to_string().contains("other"), "{listed}");
    // Its lease actions are the filesystem's own, not a token holder's.
    let (status, _) = node
        .root(
            Operation::Write,
            "sys/internal/fs/secret/app",
            json!({"lease_id": "x", "action": "revoke"}),
        )
        .await;
    assert_eq!(status, 400);

    // Deleting the role ends it at once.
    node.root(Operation::Delete, "auth/local/role/app", json!({}))
        .await;
    let (status, _) = node
        .local(1001, None, Operation::Read, "secret/data/app/db", json!({}))
        .await;
    assert_eq!(status, 403);
    node.core.seal().await;
}
