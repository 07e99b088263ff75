"""coffer's gRPC API through grpcio (a client not written here): reflection,
the standard health service, one scenario table run over HTTP and gRPC on TCP
and on the Unix socket with identical results, local identity over the socket,
and bad input that gets clear status codes while the server keeps serving."""

import http.client
import json
import socket
import subprocess
import urllib.parse

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import BINARY
from coffer_grpc import Coffer, target_of
from test_database import CREATE, Postgres

POLICY = """
path "secret/data/table/*"     { capabilities = ["create", "read", "update", "delete"] }
path "secret/metadata/table/*" { capabilities = ["list", "read"] }
path "database/creds/*"        { capabilities = ["read"] }
path "sys/leases/*"            { capabilities = ["update"] }
path "auth/token/create"       { capabilities = ["create", "update"] }
"""

# Values that differ by run or by call, never by door.
VOLATILE = {
    "request_id", "lease_id", "accessor", "client_token", "id", "created_time", "deletion_time",
    "issue_time", "expire_time", "last_renewal", "creation_time", "ttl", "last_renewal_time",
    "entity_id", "mfa_requirement", "wrap_info", "username", "password",
}

ERRORS = {400: "invalid_request", 403: "permission_denied", 404: "not_found", 405: "unsupported_operation",
          503: "unavailable"}


def canonical(value):
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items() if key not in VOLATILE}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def envelope(data=None, lease_duration=0, renewable=False, auth=None, warnings=None):
    """The part of an answer every door must agree on."""
    result = {"data": canonical(data or {}), "lease_duration": int(lease_duration or 0),
              "renewable": bool(renewable), "warnings": warnings or []}
    if auth:
        result["auth"] = canonical({
            "policies": auth.get("policies") or [],
            "token_policies": auth.get("token_policies") or [],
            "metadata": auth.get("metadata") or {},
            "lease_duration": int(auth.get("lease_duration") or 0),
            "renewable": bool(auth.get("renewable")),
            "orphan": bool(auth.get("orphan")),
            "token_type": auth.get("token_type") or "",
            "num_uses": int(auth.get("num_uses") or 0),
        })
    return result


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.socket_path)


class HttpDoor:
    """Vault's HTTP API, on TCP or on the Unix socket."""

    def __init__(self, address=None, unix=None):
        self.address, self.unix = address, unix

    def _connection(self):
        if self.unix:
            return UnixHTTPConnection(self.unix)
        return http.client.HTTPConnection(urllib.parse.urlparse(self.address).netloc, timeout=30)

    def request(self, method, path, token, body=None, params=None):
        url = "/v1/" + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"X-Vault-Token": token} if token else {}
        connection = self._connection()
        connection.request(method, url, body=json.dumps(body) if body is not None else None, headers=headers)
        response = connection.getresponse()
        text = response.read()
        connection.close()
        document = json.loads(text) if text.strip() else {}
        if response.status >= 400:
            return ERRORS.get(response.status, str(response.status)), document
        return "ok", document

    def run(self, step, token):
        kind, path, body, params = step
        method = {"read": "GET", "write": "POST", "list": "LIST", "delete": "DELETE", "login": "POST"}.get(kind)
        if kind == "lookup_self":
            method, path = "GET", "auth/token/lookup-self"
        elif kind in ("renew", "revoke", "lookup"):
            method, path = "PUT", "sys/leases/" + kind
        outcome, document = self.request(method, path, token, body, params)
        if outcome != "ok":
            return outcome, None
        return outcome, envelope(document.get("data"), document.get("lease_duration"),
                                 document.get("renewable"), document.get("auth"), document.get("warnings")), document


class GrpcDoor:
    """The gRPC API, on TCP or on the Unix socket."""

    def __init__(self, address):
        self.client = Coffer(address)

    def run(self, step, token):
        kind, path, body, params = step
        try:
            if kind == "read":
                answer = self.client.call("Read", token, path=path, params=params or {})
            elif kind == "write":
                answer = self.client.call("Write", token, path=path, data=body or {})
            elif kind == "list":
                answer = self.client.call("List", token, path=path)
            elif kind == "delete":
                answer = self.client.call("Delete", token, path=path, params=params or {})
            elif kind == "login":
                answer = self.client.call("Login", token, path=path, data=body or {})
            elif kind == "lookup_self":
                answer = self.client.call("LookupSelf", token)
            elif kind == "renew":
                answer = self.client.call("Renew", token, lease_id=body["lease_id"],
                                          increment_seconds=body.get("increment", 0))
            elif kind == "revoke":
                answer = self.client.call("Revoke", token, lease_id=body["lease_id"])
            elif kind == "lookup":
                answer = self.client.call("Lookup", token, lease_id=body["lease_id"])
        except grpc.RpcError as error:
            metadata = dict(error.trailing_metadata() or ())
            return metadata.get("x-coffer-error", error.code().name), None
        return "ok", envelope(answer.get("data"), answer.get("lease_duration"), answer.get("renewable"),
                              answer.get("auth"), answer.get("warnings")), answer


def doors(server):
    return {
        "http/tcp": HttpDoor(address=server.address),
        "http/unix": HttpDoor(unix=server.socket),
        "grpc/tcp": GrpcDoor(server.grpc),
        "grpc/unix": GrpcDoor("unix://" + server.socket),
    }


@pytest.fixture(scope="module")
def postgres():
    running = Postgres()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def prepared(server, postgres):
    root = HttpDoor(address=server.address)
    assert root.request("PUT", "sys/policies/acl/table", "root", {"policy": POLICY})[0] == "ok"
    assert root.request("POST", "sys/mounts/database", "root", {"type": "database"})[0] == "ok"
    assert root.request("POST", "database/config/pg", "root", {
        "plugin_name": "postgresql-database-plugin", "allowed_roles": ["app", "short"],
        "connection_url": postgres.template(), "username": "postgres", "password": postgres.password,
    })[0] == "ok"
    assert root.request("POST", "database/roles/app", "root", {
        "db_name": "pg", "creation_statements": [CREATE], "default_ttl": "1h", "max_ttl": "2h",
    })[0] == "ok"
    assert root.request("POST", "database/roles/short", "root", {
        "db_name": "pg", "creation_statements": [CREATE], "default_ttl": "4s", "max_ttl": "1m",
    })[0] == "ok"
    return server


def token_for(server):
    outcome, document = HttpDoor(address=server.address).request(
        "POST", "auth/token/create", "root", {"policies": ["table"], "ttl": "2h"})
    assert outcome == "ok", document
    return document["auth"]["client_token"]


def scenario(door, token, space):
    """Runs the table through `door` under secret/data/table/<space>/; returns its outcomes."""
    base = "secret/data/table/%s" % space
    steps = [
        ("write", base + "/x", {"data": {"a": "one"}}, None),
        ("write", base + "/x", {"data": {"a": "two", "b": "bee"}}, None),
        ("read", base + "/x", None, None),
        ("read", base + "/x", None, {"version": "1"}),
        ("list", "secret/metadata/table/%s" % space, None, None),
        ("read", "secret/data/elsewhere", None, None),
        ("read", base + "/missing", None, None),
        ("write", base + "/x", {"options": {"cas": 1}, "data": {"a": "stale"}}, None),
        ("write", base + "/x", {"data": "not an object"}, None),
        ("delete", base + "/x", None, None),
        ("read", base + "/x", None, None),
        ("login", "auth/token/create", {"policies": ["table"], "ttl": "1h"}, None),
        ("lookup_self", None, None, None),
        ("read", "database/creds/app", None, None),
    ]
    results = [door.run(step, token)[:2] for step in steps]
    # The lease steps need the lease the credential read made through this door.
    lease_id = door.run(("read", "database/creds/app", None, None), token)[2]["lease_id"]
    for kind, body in [
        ("renew", {"lease_id": lease_id, "increment": 600}),
        ("lookup", {"lease_id": lease_id}),
        ("revoke", {"lease_id": lease_id}),
        ("lookup", {"lease_id": lease_id}),
        ("renew", {"lease_id": "database/creds/app/no-such-lease"}),
    ]:
        results.append(door.run((kind, None, body, None), token)[:2])
    return results


def test_reflection_lists_the_services(server):
    client = Coffer(server.grpc)
    services = client.services()
    for name in ["coffer.v1.Coffer", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                 "grpc.reflection.v1.ServerReflection"]:
        assert name in services, services
    methods = sorted(client.service.methods_by_name)
    assert methods == sorted(["Read", "Write", "List", "Delete", "Login", "LookupSelf", "Renew", "Revoke",
                              "Lookup", "Health", "SealStatus", "Watch"])
    client.close()


def test_standard_health_service_and_typed_health(server):
    channel = grpc.insecure_channel(target_of(server.grpc))
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ["", "coffer.v1.Coffer"]:
        answer = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, name
    with pytest.raises(grpc.RpcError) as unknown:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    channel.close()
    client = Coffer(server.grpc)
    health = client.call("Health")
    assert health["initialized"] is True and health.get("sealed", False) is False
    status = client.call("SealStatus")
    assert status["type"] == "shamir" and status["threshold"] == "1" and status["shares"] == "1"
    client.close()


def test_one_scenario_table_gives_identical_results_through_every_door(prepared):
    results = {name: scenario(door, token_for(prepared), name.replace("/", "-"))
               for name, door in doors(prepared).items()}
    reference = results["http/tcp"]
    outcomes = [outcome for outcome, _ in reference]
    assert outcomes == [
        "ok", "ok", "ok", "ok", "ok", "permission_denied", "not_found", "invalid_request",
        "invalid_request", "ok", "not_found", "ok", "ok", "ok",
        "ok", "ok", "ok", "invalid_request", "invalid_request",
    ], reference
    read = reference[2][1]["data"]
    assert read["data"] == {"a": "two", "b": "bee"} and read["metadata"]["version"] == 2
    assert reference[3][1]["data"]["data"] == {"a": "one"}
    assert reference[4][1]["data"] == {"keys": ["x"]}
    login = reference[11][1]["auth"]
    assert login["policies"] == ["default", "table"] and login["lease_duration"] == 3600
    creds = reference[13][1]
    assert creds["lease_duration"] == 3600 and creds["renewable"] is True
    assert reference[14][1]["lease_duration"] == 600
    for name, outcome in results.items():
        assert outcome == reference, "%s differs from http/tcp:\n%s\n%s" % (name, outcome, reference)


def test_the_socket_knows_its_caller_over_grpc_too(prepared):
    root = HttpDoor(address=prepared.address)
    assert root.request("PUT", "sys/policies/acl/local-root",
                        "root", {"policy": 'path "secret/data/local/*" { capabilities = ["read"] }'})[0] == "ok"
    assert root.request("POST", "auth/local/role/me", "root",
                        {"bound_uids": [0], "policies": ["local-root"]})[0] == "ok"
    assert root.request("POST", "secret/data/local/x", "root", {"data": {"v": "local"}})[0] == "ok"
    over_socket = Coffer("unix://" + prepared.socket)
    answer = over_socket.call("Read", path="secret/data/local/x")
    assert answer["data"]["data"] == {"v": "local"}
    login = over_socket.call("Login", path="auth/local/login")
    assert "local-root" in login["auth"]["policies"]
    with pytest.raises(grpc.RpcError) as refused:
        Coffer(prepared.grpc).call("Read", path="secret/data/local/x")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, "no token over TCP: no identity"
    with pytest.raises(grpc.RpcError) as tcp_login:
        Coffer(prepared.grpc).call("Login", path="auth/local/login")
    assert tcp_login.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Unix socket" in tcp_login.value.details()


def test_bad_input_gets_clear_codes_and_the_server_keeps_serving(server):
    client = Coffer(server.grpc, token="root")
    # Malformed protobuf: a field header that promises more bytes than follow.
    with pytest.raises(grpc.RpcError) as malformed:
        client.raw("/coffer.v1.Coffer/Read", b"\x0a\xff\xff\xff\x0f")
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT, malformed.value.details()
    # An unknown method, and an unknown service.
    for path in ["/coffer.v1.Coffer/Explode", "/no.such.Service/Call"]:
        with pytest.raises(grpc.RpcError) as unknown:
            client.raw(path, b"")
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED, path
    # A message over the 32 MiB limit.
    with pytest.raises(grpc.RpcError) as oversized:
        client.call("Write", path="secret/data/big", data={"data": {"blob": "x" * (33 * 1024 * 1024)}})
    assert oversized.value.code() in (grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED)
    # Struct values that JSON cannot hold.
    for bad in [float("nan"), float("inf")]:
        with pytest.raises(grpc.RpcError) as invalid:
            client.call("Write", path="secret/data/bad", data={"data": {"n": bad}})
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "finite" in invalid.value.details()
    # Paths the core refuses, and a login outside auth/.
    for path in ["/secret/data/x", "secret/../sys/seal", "secret/data/a\x01b"]:
        with pytest.raises(grpc.RpcError) as refused:
            client.call("Read", path=path)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, path
    with pytest.raises(grpc.RpcError) as login:
        client.call("Login", path="secret/data/x")
    assert login.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # No token; a bad token; a lease that does not exist.
    with pytest.raises(grpc.RpcError) as anonymous:
        client.call("Read", token="", path="secret/data/x")
    assert anonymous.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as bogus:
        client.call("Read", token="hvs.bogus", path="secret/data/x")
    assert bogus.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # A watch on a path the caller may not list.
    limited = HttpDoor(address=server.address).request(
        "POST", "auth/token/create", "root", {"policies": ["default"]})[1]["auth"]["client_token"]
    stream = client.watch(token=limited, prefix="secret/data/")
    with pytest.raises(grpc.RpcError) as denied:
        next(iter(stream))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "list or read" in denied.value.details()
    # Still serving.
    client.call("Write", path="secret/data/after", data={"data": {"ok": "yes"}})
    assert client.call("Read", path="secret/data/after")["data"]["data"] == {"ok": "yes"}
    assert "panicked" not in server.log_text()


def test_watch_warns_of_the_callers_leases_before_they_expire(prepared):
    token = token_for(prepared)
    client = Coffer(prepared.grpc, token=token)
    creds = client.call("Read", path="database/creds/short")
    lease_id = creds["lease_id"]
    stream = client.watch(prefix="database/creds/", lease_warning_seconds=3, timeout=20)
    warning = None
    for message in stream:
        event = client.event(message)
        if "lease_expiring" in event:
            warning = event["lease_expiring"]
            break
    stream.cancel()
    assert warning is not None
    assert warning["lease_id"] == lease_id
    assert 0 <= int(warning.get("ttl_seconds", "0")) <= 3
    assert warning["renewable"] is True
    assert warning["expire_time"].endswith("Z")
    # Another token holds no lease: its watch gets no warning for this one.
    other = Coffer(prepared.grpc, token=token_for(prepared))
    quiet = other.watch(prefix="database/creds/", lease_warning_seconds=60, timeout=2.5)
    with pytest.raises(grpc.RpcError) as ended:
        for message in quiet:
            assert "lease_expiring" not in other.event(message), "a warning for another token's lease"
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def test_the_grpc_listener_speaks_tls_by_default(tmp_path):
    """A configured (non-dev) server: `listener "grpc"` with a certificate."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
            "-subj", "/CN=coffer test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=tmp_path)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "server.csr", cwd=tmp_path)
    (tmp_path / "ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "1", "-extfile", "ext", "-out", "cert.pem", cwd=tmp_path)
    config = tmp_path / "coffer.hcl"
    config.write_text(
        'storage "raft" {\n path = "%s"\n node_id = "tls"\n}\n'
        'listener "tcp" {\n address = "127.0.0.1:0"\n tls_disable = true\n}\n'
        'listener "grpc" {\n address = "127.0.0.1:0"\n tls_cert_file = "%s"\n tls_key_file = "%s"\n}\n'
        'cluster_addr = "https://127.0.0.1:0"\n'
        % (tmp_path / "data", tmp_path / "cert.pem", tmp_path / "key.pem")
    )
    process = subprocess.Popen([BINARY, "server", "--config", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
    try:
        address = None
        for line in process.stdout:
            if line.strip().startswith("gRPC Address: "):
                address = line.strip().split(": ", 1)[1]
            if "operator init" in line:
                break
        assert address and address.startswith("https://"), address
        target = address[len("https://"):]
        credentials = grpc.ssl_channel_credentials(root_certificates=(tmp_path / "ca.pem").read_bytes())
        channel = grpc.secure_channel(target, credentials)
        status = channel.unary_unary(
            "/coffer.v1.Coffer/SealStatus", request_serializer=None, response_deserializer=None
        )(b"", timeout=10)
        assert status, "an uninitialized server still answers SealStatus over TLS"
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING, "not initialized, not unsealed"
        channel.close()
        plain = grpc.insecure_channel(target)
        with pytest.raises(grpc.RpcError) as refused:
            health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        plain.close()
    finally:
        process.kill()
        process.wait()


def test_a_certificate_is_issued_over_grpc_as_over_http(server):
    """pki/issue/<role> through gRPC's Write: the same fields as over HTTP,
    a key that matches the certificate, and the role's refusal as
    INVALID_ARGUMENT with the server's text."""
    root = HttpDoor(address=server.address)
    assert root.request("POST", "sys/mounts/grpc-pki", "root", {"type": "pki"})[0] == "ok"
    assert root.request("POST", "grpc-pki/root/generate/internal", "root",
                        {"common_name": "grpc root", "key_type": "ec"})[0] == "ok"
    assert root.request("POST", "grpc-pki/roles/svc", "root",
                        {"allowed_domains": ["svc.internal"], "allow_subdomains": True,
                         "key_type": "ec", "ttl": "10m"})[0] == "ok"
    client = Coffer(server.grpc)
    answer = client.call("Write", "root", path="grpc-pki/issue/svc",
                         data={"common_name": "api.svc.internal", "ttl": "5m"})
    over_http = root.request("POST", "grpc-pki/issue/svc", "root", {"common_name": "api.svc.internal"})[1]
    assert sorted(answer["data"]) == sorted(over_http["data"])
    data = answer["data"]
    assert data["private_key_type"] == "ec" and len(data["ca_chain"]) == 1
    subject = subprocess.run(["openssl", "x509", "-noout", "-subject", "-pubkey"], input=data["certificate"],
                             capture_output=True, text=True, check=True).stdout
    assert "CN = api.svc.internal" in subject
    key = subprocess.run(["openssl", "pkey", "-pubout"], input=data["private_key"],
                         capture_output=True, text=True, check=True).stdout
    assert key in subject
    with pytest.raises(grpc.RpcError) as refused:
        client.call("Write", "root", path="grpc-pki/issue/svc", data={"common_name": "api.example.com"})
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "common name api.example.com not allowed by this role" in refused.value.details()
    client.close()
