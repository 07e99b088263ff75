//! The request pipeline over an in-memory replica: seal and unseal, token
//! authentication, policy refusal, audit that fails closed, where a request
//! runs, the request span, and an engine the core has never heard of. No
//! RocksDB, no Raft, no sockets: each test takes milliseconds.

use std::io::Write;
use std::sync::{Arc, Mutex};

use coffer_protocols::{ErrorCode, Handler, Operation, Request, Response, ResponseBody, Transport};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::{Core, Settings};
use crate::api::error::ApiResult;
use crate::api::reply::Reply;
use crate::engine::{self, BoxFuture, Environment, Files, Mount, Node, Requester, SecretEngine};
use crate::policy::Acl;
use crate::replica::memory::MemoryReplica;

const ROOT: &str = "root-token-for-tests";

/// A core over `replica`, initialized with one key share and unsealed.
async fn unsealed_core(replica: Arc<MemoryReplica>, settings: Settings) -> Core {
    let core = Core::new(replica, settings).unwrap();
    let output = core.initialize(1, 1, Some(ROOT.into())).await.unwrap();
    assert!(core.is_sealed(), "a new core stays sealed, as Vault's does");
    let share = Zeroizing::new(output.shares[0].to_vec());
    core.submit_unseal_share(share, false).await.unwrap();
    assert!(!core.is_sealed());
    core
}

fn request(operation: Operation, path: &str, token: Option<&str>, data: Value) -> Request {
    let mut request = Request::new(operation, path, Transport::Http);
    if let Some(token) = token {
        request = request.with_token(token);
    }
    if let Value::Object(data) = data {
        request = request.with_data(data);
    }
    request
}

/// The response's data, or the error code and messages.
fn outcome(response: &Response) -> Result<Map<String, Value>, (ErrorCode, Vec<String>)> {
    match &response.body {
        ResponseBody::Logical(logical) => Ok(logical.data.clone().unwrap_or_default()),
        ResponseBody::NoContent => Ok(Map::new()),
        ResponseBody::Error { code, messages, .. } => Err((*code, messages.clone())),
        other => panic!("unexpected response {other:?}"),
    }
}

async fn call(
    core: &Core,
    operation: Operation,
    path: &str,
    token: Option<&str>,
    data: Value,
) -> Response {
    core.handle(request(operation, path, token, data)).await
}

fn code(response: &Response) -> Option<ErrorCode> {
    outcome(response).err().map(|(code, _)| code)
}

/// A token made by root with the fields of `data`.
async fn new_token(core: &Core, data: Value) -> String {
    let created = call(
        core,
        Operation::Write,
        "auth/token/create",
        Some(ROOT),
        data,
    )
    .await;
    let ResponseBody::Logical(logical) = &created.body else {
        panic!("{created:?}");
    };
    logical.auth.as_ref().unwrap().client_token.clone()
}

async fn mount_kv(core: &Core) {
    let mounted = call(
        core,
        Operation::Write,
        "sys/mounts/secret",
        Some(ROOT),
        json!({"type": "kv", "options": {"version": "2"}}),
    )
    .await;
    assert_eq!(code(&mounted), None, "{mounted:?}");
}

#[tokio::test]
async fn a_sealed_core_refuses_requests_and_unsealing_brings_the_data_back() {
    let replica = Arc::new(MemoryReplica::default());
    let core = unsealed_core(replica.clone(), Settings::default()).await;
    mount_kv(&core).await;
    let written = call(
        &core,
        Operation::Write,
        "secret/data/app",
        Some(ROOT),
        json!({"data": {"password": "p1"}}),
    )
    .await;
    assert_eq!(code(&written), None, "{written:?}");

    core.seal().await;
    assert!(core.is_sealed());
    let refused = call(
        &core,
        Operation::Read,
        "secret/data/app",
        Some(ROOT),
        json!({}),
    )
    .await;
    assert_eq!(code(&refused), Some(ErrorCode::Sealed));
    let status = call(&core, Operation::Read, "sys/seal-status", None, json!({})).await;
    assert!(
        matches!(status.body, ResponseBody::Raw { status: 200, .. }),
        "{status:?}"
    );

    // A new core over the same replica (a restart) opens the same data.
    let restarted = Core::new(replica, Settings::default()).unwrap();
    assert!(restarted.is_sealed());
    let wrong = restarted
        .submit_unseal_share(Zeroizing::new(vec![7; 33]), false)
        .await;
    assert!(wrong.is_err(), "a wrong share does not unseal");
    assert!(restarted.is_sealed());
}

#[tokio::test]
async fn tokens_are_authenticated_and_policies_refuse_what_they_do_not_grant() {
    let core = unsealed_core(Arc::new(MemoryReplica::default()), Settings::default()).await;
    mount_kv(&core).await;
    let path = "secret/data/app";
    let no_token = call(&core, Operation::Read, path, None, json!({})).await;
    assert_eq!(code(&no_token), Some(ErrorCode::PermissionDenied));
    let bad_token = call(&core, Operation::Read, path, Some("hvs.made-up"), json!({})).await;
    assert_eq!(code(&bad_token), Some(ErrorCode::PermissionDenied));

    let policy = call(
        &core,
        Operation::Write,
        "sys/policies/acl/reader",
        Some(ROOT),
        json!({"policy": "path \"secret/data/app\" { capabilities = [\"read\"] }"}),
    )
    .await;
    assert_eq!(code(&policy), None, "{policy:?}");
    let token = new_token(&core, json!({"policies": ["reader"]})).await;
    call(
        &core,
        Operation::Write,
        path,
        Some(ROOT),
        json!({"data": {"k": "v"}}),
    )
    .await;

    let read = call(&core, Operation::Read, path, Some(&token), json!({})).await;
    assert_eq!(outcome(&read).unwrap()["data"]["k"], "v");
    let write = call(
        &core,
        Operation::Write,
        path,
        Some(&token),
        json!({"data": {"k": "w"}}),
    )
    .await;
    assert_eq!(code(&write), Some(ErrorCode::PermissionDenied));
    let elsewhere = call(
        &core,
        Operation::Read,
        "secret/data/other",
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(code(&elsewhere), Some(ErrorCode::PermissionDenied));
    let sudo = call(&core, Operation::Write, "sys/seal", Some(&token), json!({})).await;
    assert_eq!(code(&sudo), Some(ErrorCode::PermissionDenied));
    assert!(!core.is_sealed());
}

#[tokio::test]
async fn only_sys_seal_itself_seals_and_only_with_sudo() {
    // Before sys/ paths were parsed into endpoints, any write under
    // `sys/seal/` sealed the node, and asked for no sudo there.
    let core = unsealed_core(Arc::new(MemoryReplica::default()), Settings::default()).await;
    call(
        &core,
        Operation::Write,
        "sys/policies/acl/operator",
        Some(ROOT),
        json!({"policy": "path \"sys/*\" { capabilities = [\"create\", \"update\"] }"}),
    )
    .await;
    let token = new_token(&core, json!({"policies": ["operator"]})).await;
    for path in ["sys/seal/now", "sys/seal/", "sys/seal"] {
        let response = call(&core, Operation::Write, path, Some(&token), json!({})).await;
        assert!(code(&response).is_some(), "{path}: {response:?}");
        assert!(!core.is_sealed(), "{path} sealed the node");
    }
    let sealed = call(&core, Operation::Write, "sys/seal", Some(ROOT), json!({})).await;
    assert_eq!(code(&sealed), None, "{sealed:?}");
    assert!(core.is_sealed());
}

#[tokio::test]
async fn a_request_no_audit_device_records_is_not_run() {
    // A socket device whose address refuses connections: no device can
    // record anything.
    let settings = Settings {
        audit: vec![crate::audit::DeviceConfig {
            path: "socket/".into(),
            kind: crate::audit::Kind::Socket,
            description: String::new(),
            options: [("address".to_owned(), "127.0.0.1:1".to_owned())].into(),
            local: false,
        }],
        ..Settings::default()
    };
    let core = unsealed_core(Arc::new(MemoryReplica::default()), settings).await;
    let refused = call(
        &core,
        Operation::Write,
        "sys/mounts/secret",
        Some(ROOT),
        json!({"type": "kv"}),
    )
    .await;
    let (code, messages) = outcome(&refused).unwrap_err();
    assert_eq!(code, ErrorCode::Unavailable);
    assert!(messages[0].contains("no audit device"), "{messages:?}");
    // Nothing ran: the mount is not there.
    let mounts = call(&core, Operation::Read, "sys/mounts", Some(ROOT), json!({})).await;
    assert!(
        outcome(&mounts).is_err(),
        "listing mounts is not audited either"
    );
}

#[tokio::test]
async fn standbys_forward_writes_and_serve_reads_and_node_endpoints_themselves() {
    let replica = Arc::new(MemoryReplica::default());
    let core = unsealed_core(replica.clone(), Settings::default()).await;
    mount_kv(&core).await;
    call(
        &core,
        Operation::Write,
        "secret/data/app",
        Some(ROOT),
        json!({"data": {"k": "v"}}),
    )
    .await;
    replica.set_follower(true);

    let write = call(
        &core,
        Operation::Write,
        "secret/data/app",
        Some(ROOT),
        json!({"data": {}}),
    )
    .await;
    assert_eq!(
        code(&write),
        Some(ErrorCode::RateLimited),
        "the leader's canned answer"
    );
    let read = call(
        &core,
        Operation::Read,
        "secret/data/app",
        Some(ROOT),
        json!({}),
    )
    .await;
    assert_eq!(outcome(&read).unwrap()["data"]["k"], "v", "served here");
    let health = call(&core, Operation::Read, "sys/health", None, json!({})).await;
    assert!(
        matches!(health.body, ResponseBody::Raw { .. }),
        "{health:?}"
    );
    let mut no_forward = request(Operation::Write, "secret/data/app", Some(ROOT), json!({}));
    no_forward.no_forward = true;
    let redirect = core.handle(no_forward).await;
    assert!(
        matches!(&redirect.body, ResponseBody::Redirect { location } if location.starts_with("https://127.0.0.2:8200/v1/secret/data/app")),
        "{redirect:?}"
    );

    // A token with a use count spends a use on every read: a write, on the leader.
    replica.set_follower(false);
    let limited = new_token(&core, json!({"num_uses": 5})).await;
    replica.set_follower(true);
    call(
        &core,
        Operation::Read,
        "secret/data/app",
        Some(&limited),
        json!({}),
    )
    .await;

    let forwarded: Vec<String> = replica
        .forwarded
        .lock()
        .unwrap()
        .iter()
        .map(|request| format!("{:?} {}", request.operation, request.path))
        .collect();
    assert_eq!(forwarded, ["Write secret/data/app", "Read secret/data/app"]);
}

/// A writer the test reads back: what the log said.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_internal_errors_log_line_names_its_request() {
    let replica = Arc::new(MemoryReplica::default());
    let core = unsealed_core(replica.clone(), Settings::default()).await;
    mount_kv(&core).await;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    replica.set_broken(true);
    let broken = request(Operation::Read, "secret/data/app", Some(ROOT), json!({}));
    let id = broken.id.clone();
    let response = core.handle(broken).await;
    let (code, messages) = outcome(&response).unwrap_err();
    assert_eq!(code, ErrorCode::Internal);
    assert!(
        !messages.join(" ").contains("injected"),
        "details stay in the log"
    );
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|line| line.contains("internal error"))
        .unwrap_or_else(|| panic!("no internal error logged: {log}"));
    assert!(line.contains(&id), "{line}");
    assert!(line.contains("injected read fault"), "{line}");
}

/// An engine the core has never heard of: it answers with what it was asked,
/// and shows one file per mount under `/secrets`.
struct Echo;

fn echo_engine(_environment: &Environment) -> Arc<dyn SecretEngine> {
    Arc::new(Echo)
}

impl SecretEngine for Echo {
    fn type_name(&self) -> &'static str {
        "echo"
    }

    fn configure(
        &self,
        requested: &str,
        options: std::collections::BTreeMap<String, String>,
    ) -> Option<ApiResult<std::collections::BTreeMap<String, String>>> {
        (requested == "echo").then_some(Ok(options))
    }

    fn exists(&self, _mount: &Mount<'_>, _path: &str) -> ApiResult<bool> {
        Ok(false)
    }

    fn public(&self, path: &str) -> bool {
        path.starts_with("public/")
    }

    fn handle<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        operation: Operation,
        path: &'a str,
        data: &'a Map<String, Value>,
        requester: &'a Requester<'a>,
    ) -> BoxFuture<'a, ApiResult<Reply>> {
        Box::pin(async move {
            Ok(Reply::data(json!({
                "mount": mount.entry.path,
                "operation": operation.as_str(),
                "path": path,
                "data": data,
                "caller": requester.display_name,
            })))
        })
    }

    fn files(&self) -> Option<&dyn Files> {
        Some(self)
    }
}

impl Files for Echo {
    fn visible(&self, mount: &Mount<'_>, acl: &Acl) -> bool {
        acl.has_access_under(&mount.entry.path)
    }

    fn node<'a>(
        &'a self,
        mount: &'a Mount<'a>,
        _acl: &'a Acl,
        sub: &'a str,
    ) -> BoxFuture<'a, ApiResult<Node>> {
        Box::pin(async move {
            Ok(match sub {
                "" => Node::Folder,
                _ => Node::Static {
                    read_path: mount.logical(sub),
                },
            })
        })
    }

    fn children<'a>(
        &'a self,
        _mount: &'a Mount<'a>,
        _acl: &'a Acl,
        _sub: &'a str,
    ) -> BoxFuture<'a, ApiResult<Vec<String>>> {
        Box::pin(async { Ok(vec!["hello".to_owned()]) })
    }
}

/// An unsealed core that also serves the echo engine, mounted at `echo/`.
async fn core_with_echo() -> Core {
    let mut engines = engine::BUILT_IN.to_vec();
    engines.push(echo_engine);
    let settings = Settings {
        engines,
        ..Settings::default()
    };
    let core = unsealed_core(Arc::new(MemoryReplica::default()), settings).await;
    let mounted = call(
        &core,
        Operation::Write,
        "sys/mounts/echo",
        Some(ROOT),
        json!({"type": "echo"}),
    )
    .await;
    assert_eq!(code(&mounted), None, "{mounted:?}");
    core
}

#[tokio::test]
async fn an_engine_the_core_does_not_know_mounts_and_serves_every_door() {
    let core = core_with_echo().await;
    for transport in [
        Transport::Http,
        Transport::Grpc,
        Transport::Unix,
        Transport::Fuse,
    ] {
        let mut request = request(Operation::Write, "echo/a/b", Some(ROOT), json!({"x": 1}));
        request.transport = transport;
        let response = core.handle(request).await;
        let ResponseBody::Logical(logical) = &response.body else {
            panic!("{response:?}");
        };
        assert_eq!(logical.mount_type, "echo");
        let data = logical.data.as_ref().unwrap();
        assert_eq!(data["path"], "a/b");
        assert_eq!(data["operation"], "update");
        assert_eq!(data["data"]["x"], 1);
        assert_eq!(data["caller"], "root");
        assert_eq!(response.route.as_deref(), Some("echo/"));
    }
    // The filesystem's view comes from the engine too.
    let listed = call(
        &core,
        Operation::List,
        "sys/internal/fs/echo",
        Some(ROOT),
        json!({}),
    )
    .await;
    let ResponseBody::Logical(logical) = &listed.body else {
        panic!("{listed:?}");
    };
    assert_eq!(logical.data.as_ref().unwrap()["keys"], json!(["hello"]));
    let node = call(
        &core,
        Operation::Read,
        "sys/internal/fs/echo/hello",
        Some(ROOT),
        json!({}),
    )
    .await;
    let data = outcome(&node).unwrap();
    assert_eq!(data["kind"], "static");
    assert_eq!(data["read_path"], "echo/hello");
    // And an unknown type is still refused, naming what is served.
    let unknown = call(
        &core,
        Operation::Write,
        "sys/mounts/x",
        Some(ROOT),
        json!({"type": "nope"}),
    )
    .await;
    let (_, messages) = outcome(&unknown).unwrap_err();
    assert!(
        messages[0].contains("kv, database, pki, echo"),
        "{messages:?}"
    );
}

/// An auth method the core has never heard of: `login` takes a name and
/// grants the policies it asks for (root too, which the core must refuse).
struct Named;

fn named_method(_environment: &crate::auth::Environment) -> Arc<dyn crate::auth::AuthMethod> {
    Arc::new(Named)
}

impl crate::auth::AuthMethod for Named {
    fn type_name(&self) -> &'static str {
        "named"
    }

    fn description(&self) -> &'static str {
        "a test method"
    }

    fn is_login(&self, path: &str) -> bool {
        path == "login"
    }

    fn login<'a>(
        &'a self,
        request: &'a crate::auth::LoginRequest<'a>,
    ) -> BoxFuture<'a, ApiResult<crate::auth::Login>> {
        Box::pin(async move {
            let fields = crate::api::fields::Fields::new(request.data);
            let name = fields.string("name")?.unwrap_or_default();
            if name.is_empty() {
                return Err(crate::api::error::ApiError::invalid("missing name"));
            }
            Ok(crate::auth::Login {
                policies: fields.string_list("policies")?.unwrap_or_default(),
                metadata: [("name".to_owned(), name.clone())].into(),
                display_name: name,
                ttl: 60,
                max_ttl: 120,
                num_uses: 0,
                renewable: true,
                ..crate::auth::Login::default()
            })
        })
    }

    fn exists(&self, _mount: &Mount<'_>, _path: &str) -> ApiResult<bool> {
        Ok(true)
    }

    fn handle<'a>(
        &'a self,
        _mount: &'a Mount<'a>,
        operation: Operation,
        path: &'a str,
        _data: &'a Map<String, Value>,
    ) -> BoxFuture<'a, ApiResult<Reply>> {
        Box::pin(async move {
            Ok(Reply::data(
                json!({"path": path, "operation": operation.as_str()}),
            ))
        })
    }
}

#[tokio::test]
async fn an_auth_method_the_core_does_not_know_logs_callers_in_with_core_made_tokens() {
    let core = unsealed_core(Arc::new(MemoryReplica::default()), core_with_named_method()).await;
    let enabled = call(
        &core,
        Operation::Write,
        "sys/auth/named",
        Some(ROOT),
        json!({"type": "named"}),
    )
    .await;
    assert_eq!(outcome(&enabled), Ok(Map::new()));
    let login = call(
        &core,
        Operation::Write,
        "auth/named/login",
        Some("hvs.not-a-token"),
        json!({"name": "ci", "policies": ["default"]}),
    )
    .await;
    let ResponseBody::Logical(logical) = &login.body else {
        panic!("{login:?}");
    };
    assert_eq!(logical.mount_type, "named");
    let auth = logical.auth.as_ref().unwrap();
    assert_eq!(auth.policies, ["default"]);
    assert_eq!(auth.lease_duration, 60);
    assert!(auth.renewable);
    let token = auth.client_token.clone();
    let looked_up = call(
        &core,
        Operation::Read,
        "auth/token/lookup-self",
        Some(&token),
        json!({}),
    )
    .await;
    let data = outcome(&looked_up).unwrap();
    assert_eq!(data["display_name"], "named-ci");
    assert_eq!(data["path"], "auth/named/login");
    assert_eq!(data["meta"]["name"], "ci");
    assert_eq!(data["explicit_max_ttl"], 120);

    // Its other paths need a token whose policies allow them.
    let refused = call(
        &core,
        Operation::Read,
        "auth/named/config",
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(code(&refused), Some(ErrorCode::PermissionDenied));
    let served = call(
        &core,
        Operation::Read,
        "auth/named/config",
        Some(ROOT),
        json!({}),
    )
    .await;
    assert_eq!(outcome(&served).unwrap()["path"], "config");
    // A method's mistakes do not become root tokens.
    let root = call(
        &core,
        Operation::Write,
        "auth/named/login",
        None,
        json!({"name": "x", "policies": ["root"]}),
    )
    .await;
    assert_eq!(code(&root), Some(ErrorCode::Internal));
    let bad = call(&core, Operation::Write, "auth/named/login", None, json!({})).await;
    assert_eq!(code(&bad), Some(ErrorCode::InvalidRequest));
    // sys/auth lists it beside the built-in ones.
    let listed = call(&core, Operation::Read, "sys/auth", Some(ROOT), json!({})).await;
    let ResponseBody::Logical(logical) = &listed.body else {
        panic!("{listed:?}");
    };
    let data = logical.data.as_ref().unwrap();
    assert_eq!(data["named/"]["type"], "named");
    assert_eq!(data["local/"]["type"], "local");
    assert_eq!(data["token/"]["type"], "token");
}

fn core_with_named_method() -> Settings {
    let mut methods = crate::auth::BUILT_IN.to_vec();
    methods.push(named_method);
    Settings {
        auth_methods: methods,
        ..Settings::default()
    }
}

async fn login_named(core: &Core, mount: &str) -> Response {
    call(
        core,
        Operation::Write,
        &format!("auth/{mount}/login"),
        None,
        json!({"name": "ci", "policies": ["default"]}),
    )
    .await
}

fn auth_of(response: &Response) -> &coffer_protocols::Auth {
    let ResponseBody::Logical(logical) = &response.body else {
        panic!("{response:?}");
    };
    logical.auth.as_ref().unwrap()
}

#[tokio::test]
async fn sys_auth_enables_tunes_and_disables_methods_and_disabling_revokes_their_tokens() {
    let core = unsealed_core(Arc::new(MemoryReplica::default()), core_with_named_method()).await;
    let write =
        |path: &'static str, body: Value| call(&core, Operation::Write, path, Some(ROOT), body);
    let enable =
        json!({"type": "named", "description": "CI", "config": {"default_lease_ttl": "10m"}});
    assert_eq!(
        outcome(&write("sys/auth/ci", enable.clone()).await),
        Ok(Map::new())
    );

    // Paths taken, built-in types and unknown types are refused.
    for (path, body, text) in [
        (
            "sys/auth/ci",
            enable.clone(),
            "path is already in use at ci/",
        ),
        (
            "sys/auth/local",
            json!({"type": "named"}),
            "path is already in use at local/",
        ),
        (
            "sys/auth/token",
            json!({"type": "named"}),
            "path is already in use at token/",
        ),
        (
            "sys/auth/ci/sub",
            json!({"type": "named"}),
            "path is already in use at ci/",
        ),
        (
            "sys/auth/other",
            json!({"type": "local"}),
            "built in at auth/local/",
        ),
        (
            "sys/auth/other",
            json!({"type": "nope"}),
            "coffer enables userpass, approle, jwt, kubernetes, named",
        ),
        ("sys/auth/other", json!({}), "missing type"),
    ] {
        let refused = write(path, body).await;
        let (code, messages) = outcome(&refused).unwrap_err();
        assert_eq!(code, ErrorCode::InvalidRequest, "{path}");
        assert!(messages[0].contains(text), "{path}: {messages:?}");
    }

    // Everything below sys/auth needs sudo; the list does not.
    call(
        &core,
        Operation::Write,
        "sys/policies/acl/auth-admin",
        Some(ROOT),
        json!({"policy": "path \"sys/auth*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\"] }"}),
    )
    .await;
    let admin = new_token(&core, json!({"policies": ["auth-admin"]})).await;
    for (operation, path) in [
        (Operation::Write, "sys/auth/other"),
        (Operation::Read, "sys/auth/ci"),
        (Operation::Read, "sys/auth/ci/tune"),
        (Operation::Delete, "sys/auth/ci"),
    ] {
        let refused = call(
            &core,
            operation,
            path,
            Some(&admin),
            json!({"type": "named"}),
        )
        .await;
        assert_eq!(code(&refused), Some(ErrorCode::PermissionDenied), "{path}");
    }
    let listed = call(&core, Operation::Read, "sys/auth", Some(&admin), json!({})).await;
    let listed = outcome(&listed).unwrap();
    assert_eq!(listed["ci/"]["type"], "named");
    assert_eq!(listed["ci/"]["description"], "CI");
    assert_eq!(listed["ci/"]["config"]["default_lease_ttl"], 600);
    let accessor = listed["ci/"]["accessor"].as_str().unwrap().to_owned();
    assert!(accessor.starts_with("auth_named_"), "{accessor}");
    assert_eq!(listed["token/"]["type"], "token");

    // Tune: the effective values, a max under the default refused, and the
    // mount's max bounding the tokens of its logins.
    let read = |path: &'static str| call(&core, Operation::Read, path, Some(ROOT), json!({}));
    let tune = outcome(&read("sys/auth/ci/tune").await).unwrap();
    assert_eq!(tune["default_lease_ttl"], 600);
    assert_eq!(tune["max_lease_ttl"], Settings::default().max_lease_ttl);
    assert_eq!(tune["description"], "CI");
    let refused = write("sys/auth/ci/tune", json!({"max_lease_ttl": "5m"})).await;
    let (_, messages) = outcome(&refused).unwrap_err();
    assert_eq!(
        messages,
        ["backend max lease TTL of 300 would be less than backend default lease TTL of 600"]
    );
    let tuned = write(
        "sys/auth/ci/tune",
        json!({"default_lease_ttl": 20, "max_lease_ttl": "30s", "description": "robots"}),
    )
    .await;
    assert_eq!(outcome(&tuned), Ok(Map::new()));
    let through_mounts = outcome(&read("sys/mounts/auth/ci/tune").await).unwrap();
    assert_eq!(through_mounts["max_lease_ttl"], 30);
    assert_eq!(through_mounts["description"], "robots");
    let login = login_named(&core, "ci").await;
    assert_eq!(auth_of(&login).lease_duration, 30);
    let token = auth_of(&login).client_token.clone();
    let lookup = || {
        call(
            &core,
            Operation::Read,
            "auth/token/lookup-self",
            Some(&token),
            json!({}),
        )
    };
    let looked_up = outcome(&lookup().await).unwrap();
    assert_eq!(looked_up["explicit_max_ttl"], 30);
    assert_eq!(looked_up["path"], "auth/ci/login");
    // The built-in methods show the system's settings; `local` is not tuned.
    let token_tune = outcome(&read("sys/auth/token/tune").await).unwrap();
    assert_eq!(
        token_tune["default_lease_ttl"],
        Settings::default().default_lease_ttl
    );
    assert!(outcome(&write("sys/auth/local/tune", json!({"max_lease_ttl": 60})).await).is_err());
    let missing = outcome(&read("sys/auth/none/tune").await).unwrap_err();
    assert_eq!(missing.0, ErrorCode::InvalidRequest);

    // Disabling: the built-in ones cannot be; the enabled one takes its
    // tokens with it, and its paths are gone.
    let delete = |path: &'static str| call(&core, Operation::Delete, path, Some(ROOT), json!({}));
    for built_in in ["sys/auth/token", "sys/auth/local"] {
        assert_eq!(
            code(&delete(built_in).await),
            Some(ErrorCode::InvalidRequest)
        );
    }
    let other_token = auth_of(&login_named(&core, "ci").await)
        .client_token
        .clone();
    assert_eq!(outcome(&delete("sys/auth/ci").await), Ok(Map::new()));
    assert_eq!(code(&lookup().await), Some(ErrorCode::PermissionDenied));
    let other = call(
        &core,
        Operation::Read,
        "auth/token/lookup-self",
        Some(&other_token),
        json!({}),
    )
    .await;
    assert_eq!(code(&other), Some(ErrorCode::PermissionDenied));
    // No login there any more: a caller without a token is refused, and
    // root finds no route.
    assert_eq!(
        code(&login_named(&core, "ci").await),
        Some(ErrorCode::PermissionDenied)
    );
    assert_eq!(
        code(&write("auth/ci/login", json!({"name": "ci"})).await),
        Some(ErrorCode::NotFound)
    );
    assert!(
        !outcome(&read("sys/auth").await)
            .unwrap()
            .contains_key("ci/")
    );
    // Disabling what is not there is not an error, as in Vault.
    assert_eq!(outcome(&delete("sys/auth/ci").await), Ok(Map::new()));
    // Enabled again, it is a new mount.
    assert_eq!(outcome(&write("sys/auth/ci", enable).await), Ok(Map::new()));
    let again = outcome(&read("sys/auth/ci").await).unwrap();
    assert_ne!(again["accessor"], accessor.as_str());
    assert_eq!(auth_of(&login_named(&core, "ci").await).lease_duration, 60);
}

#[tokio::test]
async fn a_token_expires_when_the_clock_passes_its_ttl_with_no_sleep() {
    let core = unsealed_core(Arc::new(MemoryReplica::default()), Settings::default()).await;
    let token = new_token(&core, json!({"ttl": "1h"})).await;
    let lookup = || {
        call(
            &core,
            Operation::Read,
            "auth/token/lookup-self",
            Some(&token),
            json!({}),
        )
    };
    let alive = lookup().await;
    assert!(outcome(&alive).unwrap()["ttl"].as_u64().unwrap() > 3590);
    crate::clock::advance(std::time::Duration::from_secs(3599));
    let last_second = lookup().await;
    assert!(outcome(&last_second).unwrap()["ttl"].as_u64().unwrap() <= 1);
    crate::clock::advance(std::time::Duration::from_secs(2));
    let expired = lookup().await;
    assert_eq!(code(&expired), Some(ErrorCode::PermissionDenied));
}

/// One HTTP/1.1 request on `stream`, and the whole answer.
async fn ask<S>(mut stream: S, path: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "GET /v1/{path} HTTP/1.1\r\nHost: coffer\r\nX-Vault-Token: {ROOT}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8(answer).unwrap()
}

#[tokio::test]
async fn the_echo_engine_answers_through_the_real_doors_on_tcp_and_a_unix_socket() {
    use coffer_protocols::listener::{self, Listener, Protocol, Socket, Timeouts};
    let core = Arc::new(core_with_echo().await);

    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = tcp.local_addr().unwrap();
    let directory = tempfile::tempdir().unwrap();
    let socket_path = directory.path().join("coffer.sock");
    let unix = tokio::net::UnixListener::bind(&socket_path).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for (socket, protocol) in [
        (Socket::Tcp(tcp), Protocol::Http),
        (Socket::Unix(unix), Protocol::Both),
    ] {
        let listener = Listener {
            socket,
            protocol,
            tls: None,
            timeouts: Timeouts::default(),
        };
        let core = core.clone();
        let mut stopped = stopped.clone();
        servers.push(tokio::spawn(async move {
            listener::serve(listener, core, async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
        }));
    }
    let over_tcp = ask(
        tokio::net::TcpStream::connect(address).await.unwrap(),
        "echo/a/b",
    )
    .await;
    let over_unix = ask(
        tokio::net::UnixStream::connect(&socket_path).await.unwrap(),
        "echo/a/b",
    )
    .await;
    for answer in [&over_tcp, &over_unix] {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(r#""mount_type":"echo""#), "{answer}");
        assert!(answer.contains(r#""path":"a/b""#), "{answer}");
        assert!(answer.contains(r#""operation":"read""#), "{answer}");
    }
    stop.send(true).unwrap();
    for server in servers {
        server.await.unwrap().unwrap();
    }
}

/// A request on the Unix socket from `uid`, with no token.
fn from_local(uid: u32, operation: Operation, path: &str, data: Value) -> Request {
    let mut request = request(operation, path, None, data);
    request.transport = Transport::Unix;
    request.peer = Some(coffer_protocols::LocalPeer {
        uid,
        gid: uid,
        pid: std::process::id(),
        executable: None,
        groups: Vec::new(),
        unit: None,
    });
    request
}

#[tokio::test]
async fn only_sudo_tokens_and_trusted_local_callers_reach_the_key_holders_endpoints() {
    let core = unsealed_core(Arc::new(MemoryReplica::default()), Settings::default()).await;
    let attempt = "sys/generate-root/attempt";
    // No token over TCP, a token without sudo, a stranger on the socket: 403,
    // and no attempt was started.
    let no_token = call(&core, Operation::Write, attempt, None, json!({})).await;
    assert_eq!(code(&no_token), Some(ErrorCode::PermissionDenied));
    call(
        &core,
        Operation::Write,
        "sys/policies/acl/no-sudo",
        Some(ROOT),
        json!({"policy": "path \"sys/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\"] }"}),
    )
    .await;
    let no_sudo = new_token(&core, json!({"policies": ["no-sudo"]})).await;
    let refused = call(&core, Operation::Write, attempt, Some(&no_sudo), json!({})).await;
    assert_eq!(code(&refused), Some(ErrorCode::PermissionDenied));
    let stranger_uid = 4242;
    assert_ne!(nix::unistd::geteuid().as_raw(), stranger_uid);
    let stranger = core
        .handle(from_local(
            stranger_uid,
            Operation::Delete,
            attempt,
            json!({}),
        ))
        .await;
    assert_eq!(code(&stranger), Some(ErrorCode::PermissionDenied));
    let status = outcome(&call(&core, Operation::Read, attempt, Some(ROOT), json!({})).await);
    assert_eq!(status.unwrap()["started"], false);

    // The daemon's own user on the socket needs no token; root's token works too.
    let own = nix::unistd::geteuid().as_raw();
    let started = core
        .handle(from_local(own, Operation::Write, attempt, json!({})))
        .await;
    let started = outcome(&started).unwrap();
    assert_eq!(started["started"], true);
    assert_eq!(
        started["otp"].as_str().unwrap().len(),
        crate::tokens::TOKEN_LEN
    );
    let again = call(&core, Operation::Write, attempt, Some(ROOT), json!({})).await;
    assert_eq!(
        outcome(&again).unwrap_err().1,
        ["root generation already in progress"]
    );
    // The stranger cannot cancel it either.
    core.handle(from_local(
        stranger_uid,
        Operation::Delete,
        attempt,
        json!({}),
    ))
    .await;
    let status = outcome(&call(&core, Operation::Read, attempt, Some(ROOT), json!({})).await);
    assert_eq!(status.unwrap()["started"], true);
}

#[tokio::test]
async fn a_tokens_cubbyhole_is_deleted_with_the_token() {
    use crate::storage::Backend;
    let replica = Arc::new(MemoryReplica::default());
    let core = unsealed_core(replica.clone(), Settings::default()).await;
    let token = new_token(&core, json!({"policies": ["default"]})).await;
    let written = call(
        &core,
        Operation::Write,
        "cubbyhole/notes",
        Some(&token),
        json!({"value": "private"}),
    )
    .await;
    assert_eq!(outcome(&written), Ok(Map::new()));
    assert_eq!(replica.scan("sys/cubbyhole/").unwrap().len(), 1);
    let read = call(
        &core,
        Operation::Read,
        "cubbyhole/notes",
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(outcome(&read).unwrap()["value"], "private");
    // Root's own cubbyhole is another one.
    let other = call(
        &core,
        Operation::Read,
        "cubbyhole/notes",
        Some(ROOT),
        json!({}),
    )
    .await;
    assert_eq!(code(&other), Some(ErrorCode::NotFound));
    call(
        &core,
        Operation::Write,
        "auth/token/revoke-self",
        Some(&token),
        json!({}),
    )
    .await;
    assert!(replica.scan("sys/cubbyhole/").unwrap().is_empty());
}

/// A request from the TCP address `address`.
fn from_address(address: &str, operation: Operation, path: &str, data: Value) -> Request {
    let mut request = request(operation, path, Some(ROOT), data);
    request.remote_address = Some(format!("{address}:50000"));
    request
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

#[tokio::test]
async fn rate_limit_quotas_refuse_a_client_over_its_rate_and_no_other() {
    let core = unsealed_core(Arc::new(MemoryReplica::default()), Settings::default()).await;
    mount_kv(&core).await;
    let write = |path: &'static str, data: Value| {
        let core = &core;
        async move { call(core, Operation::Write, path, Some(ROOT), data).await }
    };
    let refusal = |response: &Response| outcome(response).err().map(|(_, messages)| messages);
    // Vault's checks and texts.
    for (body, error) in [
        (json!({}), "'rate' is invalid"),
        (json!({"rate": -1}), "'rate' is invalid"),
        (
            json!({"rate": 1, "path": "nosuch/"}),
            "invalid mount path \"nosuch/\"",
        ),
        (
            json!({"rate": 1, "path": "secret/", "role": "r"}),
            "Mount path \"secret/\" is not a valid auth method and therefore unsuitable for use with role-based quotas",
        ),
        (
            json!({"rate": 1, "path": "auth/token/", "role": "r"}),
            "Mount path \"auth/token/\" does not support use with role-based quotas",
        ),
    ] {
        let refused = write("sys/quotas/rate-limit/q", body.clone()).await;
        assert_eq!(refusal(&refused), Some(vec![error.to_owned()]), "{body}");
    }
    let created = write(
        "sys/quotas/rate-limit/kv",
        json!({"rate": "2", "interval": "1h", "path": "/secret", "ignored": true}),
    )
    .await;
    assert_eq!(code(&created), None, "{created:?}");
    let read = call(
        &core,
        Operation::Read,
        "sys/quotas/rate-limit/kv",
        Some(ROOT),
        json!({}),
    )
    .await;
    let read = outcome(&read).unwrap();
    assert_eq!(
        Value::Object(read),
        json!({"name": "kv", "path": "secret/", "role": "", "type": "rate-limit",
               "inheritable": false, "rate": 2, "interval": 3600, "block_interval": 0})
    );
    let twin = write(
        "sys/quotas/rate-limit/twin",
        json!({"rate": 5, "path": "secret"}),
    )
    .await;
    assert_eq!(
        refusal(&twin),
        Some(vec![
            "quota rule with similar properties exists under the name \"kv\"".to_owned()
        ])
    );
    let listed = call(
        &core,
        Operation::List,
        "sys/quotas/rate-limit/",
        Some(ROOT),
        json!({}),
    )
    .await;
    assert_eq!(outcome(&listed).unwrap()["keys"], json!(["kv"]));

    // Two requests per hour per client on secret/: the third is refused
    // before it runs, with Retry-After; another client and another mount
    // are untouched.
    let read_from = |address: &'static str, path: &'static str| {
        let core = &core;
        async move {
            core.handle(from_address(address, Operation::Read, path, json!({})))
                .await
        }
    };
    for _ in 0..2 {
        let allowed = read_from("127.0.0.2", "secret/data/missing").await;
        assert_eq!(code(&allowed), Some(ErrorCode::NotFound));
        assert_eq!(
            header(&allowed, "x-ratelimit-limit"),
            None,
            "headers are off"
        );
    }
    // A refusal is held until the client could succeed, at most a second
    // (tokio's paused clock would need its test-util feature, which would
    // build every tokio crate twice).
    let started = std::time::Instant::now();
    let refused = read_from("127.0.0.2", "secret/data/missing").await;
    let held = started.elapsed().as_secs_f64();
    assert!((0.9..3.0).contains(&held), "held {held} s");
    assert_eq!(
        refusal(&refused),
        Some(vec![
            "request path \"secret/data/missing\": rate limit quota exceeded".to_owned()
        ])
    );
    assert_eq!(code(&refused), Some(ErrorCode::RateLimited));
    let retry_after: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!((1..=1800).contains(&retry_after), "{retry_after}");
    assert_eq!(
        code(&read_from("127.0.0.3", "secret/data/missing").await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(code(&read_from("127.0.0.2", "sys/mounts").await), None);
    // A standby counted what it forwarded.
    let mut forwarded = from_address(
        "127.0.0.2",
        Operation::Read,
        "secret/data/missing",
        json!({}),
    );
    forwarded.forwarded = true;
    assert_eq!(
        code(&core.handle(forwarded).await),
        Some(ErrorCode::NotFound)
    );

    // A global quota leaves the exempt paths alone, and shows its headers
    // when the config asks.
    let configured = write(
        "sys/quotas/config",
        json!({"enable_rate_limit_response_headers": true,
               "rate_limit_exempt_paths": ["sys/health", "sys/quotas/*"]}),
    )
    .await;
    assert_eq!(code(&configured), None, "{configured:?}");
    assert_eq!(
        code(
            &write(
                "sys/quotas/rate-limit/all",
                json!({"rate": 1, "interval": "1h"})
            )
            .await
        ),
        None
    );
    let first = read_from("127.0.0.4", "sys/mounts").await;
    assert_eq!(code(&first), None);
    assert_eq!(header(&first, "X-Ratelimit-Limit"), Some("1"));
    assert_eq!(header(&first, "X-Ratelimit-Remaining"), Some("0"));
    assert_eq!(
        code(&read_from("127.0.0.4", "sys/mounts").await),
        Some(ErrorCode::RateLimited)
    );
    for _ in 0..3 {
        assert_eq!(
            read_from("127.0.0.4", "sys/health").await.http_status(),
            200
        );
        assert_ne!(
            code(&read_from("127.0.0.4", "sys/quotas/config").await),
            Some(ErrorCode::RateLimited)
        );
    }
    // Deleting the rules lifts them at once.
    for name in ["all", "kv"] {
        let deleted = call(
            &core,
            Operation::Delete,
            &format!("sys/quotas/rate-limit/{name}"),
            Some(ROOT),
            json!({}),
        )
        .await;
        assert_eq!(code(&deleted), None);
    }
    assert_eq!(code(&read_from("127.0.0.4", "sys/mounts").await), None);
    assert_eq!(
        code(&read_from("127.0.0.2", "secret/data/missing").await),
        Some(ErrorCode::NotFound)
    );
    let gone = call(
        &core,
        Operation::Read,
        "sys/quotas/rate-limit/kv",
        Some(ROOT),
        json!({}),
    )
    .await;
    assert_eq!(code(&gone), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn the_token_stores_tune_sets_its_tokens_ttls() {
    let core = unsealed_core(Arc::new(MemoryReplica::default()), Settings::default()).await;
    let write =
        |path: &'static str, data: Value| call(&core, Operation::Write, path, Some(ROOT), data);
    let tuned = write(
        "sys/auth/token/tune",
        json!({"default_lease_ttl": "1h", "max_lease_ttl": "2h", "description": "tokens!"}),
    )
    .await;
    assert_eq!(code(&tuned), None, "{tuned:?}");
    let read = call(
        &core,
        Operation::Read,
        "sys/auth/token/tune",
        Some(ROOT),
        json!({}),
    )
    .await;
    let read = outcome(&read).unwrap();
    assert_eq!(
        (
            &read["default_lease_ttl"],
            &read["max_lease_ttl"],
            &read["description"]
        ),
        (&json!(3600), &json!(7200), &json!("tokens!"))
    );
    let listed =
        outcome(&call(&core, Operation::Read, "sys/auth", Some(ROOT), json!({})).await).unwrap();
    assert_eq!(listed["token/"]["config"]["max_lease_ttl"], 7200);

    let plain = write("auth/token/create", json!({"policies": ["default"]})).await;
    assert_eq!(auth_of(&plain).lease_duration, 3600);
    let long = write(
        "auth/token/create",
        json!({"policies": ["default"], "ttl": "5h"}),
    )
    .await;
    assert_eq!(auth_of(&long).lease_duration, 7200);
    let ResponseBody::Logical(logical) = &long.body else {
        panic!("{long:?}");
    };
    assert_eq!(
        logical.warnings,
        Some(vec![
            "TTL of \"5h\" exceeded the effective max_ttl of \"2h\"; TTL value is capped accordingly"
                .to_owned()
        ])
    );
    let token = auth_of(&plain).client_token.clone();
    let renewed = call(
        &core,
        Operation::Write,
        "auth/token/renew-self",
        Some(&token),
        json!({"increment": "10h"}),
    )
    .await;
    assert!(auth_of(&renewed).lease_duration <= 7200, "{renewed:?}");

    let refused = write("sys/auth/token/tune", json!({"max_lease_ttl": "30m"})).await;
    assert_eq!(
        outcome(&refused).unwrap_err().1,
        ["backend max lease TTL of 1800 would be less than backend default lease TTL of 3600"]
    );
    // Zero goes back to the system's.
    assert_eq!(
        code(
            &write(
                "sys/auth/token/tune",
                json!({"default_lease_ttl": 0, "max_lease_ttl": 0})
            )
            .await
        ),
        None
    );
    let back = write("auth/token/create", json!({"policies": ["default"]})).await;
    assert_eq!(
        auth_of(&back).lease_duration,
        Settings::default().default_lease_ttl
    );
}

#[tokio::test]
async fn an_engines_public_reads_need_no_token_and_nothing_else_is_public() {
    let core = core_with_echo().await;
    let read = call(&core, Operation::Read, "echo/public/ca", None, json!({})).await;
    assert_eq!(outcome(&read).unwrap()["path"], "public/ca");
    // A token that may not read the mount reads its public paths too.
    let stranger = new_token(&core, json!({"policies": ["default"]})).await;
    let read = call(
        &core,
        Operation::Read,
        "echo/public/ca",
        Some(&stranger),
        json!({}),
    )
    .await;
    assert_eq!(outcome(&read).unwrap()["path"], "public/ca");
    for (operation, path, token) in [
        (Operation::Write, "echo/public/ca", None),
        (Operation::List, "echo/public/", None),
        (Operation::Read, "echo/private", None),
        (Operation::Read, "echo/private", Some(stranger.as_str())),
        (Operation::Write, "echo/public/ca", Some(stranger.as_str())),
    ] {
        let refused = call(&core, operation, path, token, json!({})).await;
        assert_eq!(
            code(&refused),
            Some(ErrorCode::PermissionDenied),
            "{operation:?} {path}"
        );
    }
}
