"""hvac's Kubernetes auth calls against coffer and a fake API server on
127.0.0.1 over HTTPS (its self-signed CA given as kubernetes_ca_cert) that
records each TokenReview and answers from a table: authenticated, not
authenticated, another username, other audiences, 401, 500; also an
unreachable server and a server the CA does not vouch for. Tokens carry the
claims of projected and legacy service-account tokens. A binding refusal
makes no request; every failure after the bindings is 403 permission denied.
Then the mode with no API call: signatures checked against pem_keys."""

import json
import socket
import time

import pytest
from hvac import exceptions

import jwt_tools as tools

REVIEWER = "reviewer-token-for-tests"


def projected(namespace="default", name="app", uid="uid-app", aud=("https://kubernetes.default.svc",), **changes):
    now = int(time.time())
    claims = {
        "aud": list(aud), "exp": now + 600, "iat": now, "nbf": now, "iss": "https://kubernetes.default.svc",
        "kubernetes.io": {"namespace": namespace, "pod": {"name": "app-1", "uid": "pod-uid"},
                          "serviceaccount": {"name": name, "uid": uid}},
        "sub": f"system:serviceaccount:{namespace}:{name}",
    }
    claims.update(changes)
    return claims


def legacy(namespace="default", name="app", uid="uid-app"):
    return {
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": f"{name}-token-x7k2p",
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
        "sub": f"system:serviceaccount:{namespace}:{name}",
    }


class ApiServer:
    """Answers TokenReviews by `mode`, from the token's own claims."""

    def __init__(self):
        self.mode = "authenticated"
        self.ca, tls = tools.self_signed()
        self.fake = tools.Fake(self.answer, tls=tls)

    def answer(self, method, path, headers, body):
        if path != "/apis/authentication.k8s.io/v1/tokenreviews":
            return 404, {}
        review = json.loads(body)
        token = review["spec"]["token"]
        import base64
        segment = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        account = claims.get("kubernetes.io", {}).get("serviceaccount", {})
        namespace = claims.get("kubernetes.io", {}).get("namespace") or \
            claims.get("kubernetes.io/serviceaccount/namespace")
        name = account.get("name") or claims.get("kubernetes.io/serviceaccount/service-account.name")
        uid = account.get("uid") or claims.get("kubernetes.io/serviceaccount/service-account.uid")
        user = {"username": f"system:serviceaccount:{namespace}:{name}", "uid": uid,
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]}
        audiences = review["spec"].get("audiences") or ["https://kubernetes.default.svc"]
        status = {"authenticated": True, "user": user, "audiences": audiences}
        if self.mode == "unauthenticated":
            status = {"authenticated": False, "user": {}, "error": "token has been invalidated"}
        elif self.mode == "other-user":
            status["user"] = dict(user, username="system:serviceaccount:kube-system:admin")
        elif self.mode == "other-audiences":
            status["audiences"] = ["https://other.example"]
        elif self.mode == "401":
            return 401, {"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401}
        elif self.mode == "500":
            return 500, {"kind": "Status", "status": "Failure", "code": 500}
        return 201, {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {},
                     "spec": review["spec"], "status": status}


@pytest.fixture
def kubernetes(root):
    root.sys.enable_auth_method("kubernetes", path="kubernetes")
    yield root
    root.sys.disable_auth_method("kubernetes")


@pytest.fixture
def api_server():
    server = ApiServer()
    yield server
    server.fake.stop()


def denied(dev_server, role, token):
    with pytest.raises(exceptions.Forbidden) as caught:
        dev_server.client().auth.kubernetes.login(role, token)
    return caught.value.errors[0]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_token_reviews(dev_server, kubernetes, api_server):
    key = tools.rsa_key()
    kubernetes.auth.kubernetes.configure(api_server.fake.url, kubernetes_ca_cert=api_server.ca,
                                         token_reviewer_jwt=REVIEWER, disable_local_ca_jwt=True)
    config = kubernetes.auth.kubernetes.read_config()
    assert config["kubernetes_host"] == api_server.fake.url and config["token_reviewer_jwt_set"] is True
    assert REVIEWER not in json.dumps(config) and config["disable_iss_validation"] is True
    kubernetes.auth.kubernetes.create_role("app", ["app", "web-*"], ["default", "prod"], ttl="15m",
                                           policies=["app-reader"])
    role = kubernetes.auth.kubernetes.read_role("app")
    assert role["bound_service_account_names"] == ["app", "web-*"] and role["token_ttl"] == 900
    assert role["token_policies"] == ["app-reader"] and role["alias_name_source"] == "serviceaccount_uid"
    assert kubernetes.auth.kubernetes.list_roles()["keys"] == ["app"]

    token = tools.sign(projected(), key)
    auth = dev_server.client().auth.kubernetes.login("app", token)["auth"]
    assert auth["policies"] == ["app-reader", "default"] and auth["lease_duration"] == 900
    assert auth["metadata"] == {"role": "app", "service_account_name": "app", "service_account_namespace": "default",
                                "service_account_uid": "uid-app", "service_account_secret_name": ""}
    # The review as Kubernetes expects it: the reviewer's bearer, the exact body.
    [request] = api_server.fake.requests
    assert request["method"] == "POST" and request["path"] == "/apis/authentication.k8s.io/v1/tokenreviews"
    assert request["headers"]["authorization"] == f"Bearer {REVIEWER}"
    assert request["headers"]["content-type"] == "application/json"
    assert request["headers"]["accept"] == "application/json"
    assert json.loads(request["body"]) == {"metadata": {}, "spec": {
        "token": token, "audiences": ["https://kubernetes.default.svc"]}, "status": {"user": {}}}

    # A legacy secret token: no audience in the review, its secret in the metadata.
    auth = dev_server.client().auth.kubernetes.login("app", tools.sign(legacy(name="web-1", namespace="prod"), key))
    assert auth["auth"]["metadata"]["service_account_secret_name"] == "web-1-token-x7k2p"
    assert "audiences" not in json.loads(api_server.fake.requests[-1]["body"])["spec"]

    # Bindings fail on the claims alone: no request reaches the API server.
    before = len(api_server.fake.requests)
    assert denied(dev_server, "app", tools.sign(projected(namespace="kube-system"), key)) == "namespace not authorized"
    assert denied(dev_server, "app", tools.sign(projected(name="db"), key)) == "service account name not authorized"
    kubernetes.auth.kubernetes.create_role("aud", "app", "default", audience="coffer")
    assert denied(dev_server, "aud", tools.sign(legacy(), key)) == \
        "invalid audience (aud) claim: audience claim does not match any expected audience"
    assert denied(dev_server, "aud", tools.sign(projected(), key)) == \
        "invalid audience (aud) claim: audience claim does not match any expected audience"
    assert denied(dev_server, "app", "not-a-jwt") == "permission denied"
    assert len(api_server.fake.requests) == before

    # Every answer but a matching review is permission denied.
    for mode in ["unauthenticated", "other-user", "401", "500"]:
        api_server.mode = mode
        assert denied(dev_server, "app", token) == "permission denied", mode
    api_server.mode = "other-audiences"
    assert denied(dev_server, "aud", tools.sign(projected(aud=["coffer"]), key)) == "permission denied"
    api_server.mode = "authenticated"
    assert dev_server.client().auth.kubernetes.login("aud", tools.sign(projected(aud=["coffer"]), key))["auth"]
    assert json.loads(api_server.fake.requests[-1]["body"])["spec"]["audiences"] == ["coffer"]
    # Without a reviewer token, the client's own JWT is the bearer.
    kubernetes.auth.kubernetes.configure(api_server.fake.url, kubernetes_ca_cert=api_server.ca, disable_local_ca_jwt=True)
    dev_server.client().auth.kubernetes.login("app", token)
    assert api_server.fake.requests[-1]["headers"]["authorization"] == f"Bearer {token}"

    for body, text in [
        ({"jwt": token}, "missing role"),
        ({"role": "app"}, "missing jwt"),
        ({"role": "nope", "jwt": token}, 'invalid role name "nope"'),
    ]:
        with pytest.raises(exceptions.InvalidRequest) as caught:
            dev_server.client().write_data("auth/kubernetes/login", data=body)
        assert caught.value.errors == [text]


def test_unreachable_and_untrusted_api_servers(dev_server, kubernetes, api_server):
    key = tools.rsa_key()
    kubernetes.auth.kubernetes.create_role("app", "app", "default")
    token = tools.sign(projected(), key)
    # Nothing listens there.
    kubernetes.auth.kubernetes.configure(f"https://127.0.0.1:{free_port()}", kubernetes_ca_cert=api_server.ca,
                                         disable_local_ca_jwt=True)
    assert denied(dev_server, "app", token) == "permission denied"
    # A CA that did not sign the server's certificate: TLS fails, no review.
    other_ca, _ = tools.self_signed()  # another cluster's CA
    kubernetes.auth.kubernetes.configure(api_server.fake.url, kubernetes_ca_cert=other_ca, disable_local_ca_jwt=True)
    assert denied(dev_server, "app", token) == "permission denied"
    assert api_server.fake.requests == []
    kubernetes.auth.kubernetes.configure(api_server.fake.url, kubernetes_ca_cert=api_server.ca, disable_local_ca_jwt=True)
    assert dev_server.client().auth.kubernetes.login("app", token)["auth"]["client_token"]

    for body, text in [
        ({"disable_local_ca_jwt": True}, "no host provided"),
        ({"kubernetes_host": api_server.fake.url, "disable_local_ca_jwt": True},
         "kubernetes_ca_cert must be given when disable_local_ca_jwt is true"),
        ({"kubernetes_host": api_server.fake.url, "kubernetes_ca_cert": "garbage", "disable_local_ca_jwt": True},
         "kubernetes_ca_cert holds no PEM certificate"),
    ]:
        with pytest.raises(exceptions.InvalidRequest) as caught:
            kubernetes.write_data("auth/kubernetes/config", data=body)
        assert caught.value.errors == [text]
    for body, text in [
        ({"bound_service_account_namespaces": "default"}, '"bound_service_account_names" can not be empty'),
        ({"bound_service_account_names": "app"},
         '"bound_service_account_namespaces" can not be empty if "bound_service_account_namespace_selector" is not set'),
        ({"bound_service_account_names": "app", "bound_service_account_namespaces": "x", "alias_name_source": "x"},
         "invalid alias_name_source, must be one of: serviceaccount_uid, serviceaccount_name"),
    ]:
        with pytest.raises(exceptions.InvalidRequest) as caught:
            kubernetes.write_data("auth/kubernetes/role/new", data=body)
        assert caught.value.errors == [text]


def test_pem_keys_without_an_api_server(dev_server, kubernetes):
    key, other = tools.rsa_key(), tools.ec_key()
    kubernetes.write_data("auth/kubernetes/config", data={
        "pem_keys": [tools.public_pem(key)], "disable_local_ca_jwt": True,
        "issuer": "https://kubernetes.default.svc", "disable_iss_validation": False})
    kubernetes.auth.kubernetes.create_role("app", "app", "*")
    auth = dev_server.client().auth.kubernetes.login("app", tools.sign(projected(namespace="any"), key))["auth"]
    assert auth["metadata"]["service_account_namespace"] == "any"
    now = int(time.time())
    for token in [
        tools.sign(projected(), other),
        tools.sign(projected(), key, alg="none"),
        tools.sign(projected(exp=now - 120), key),
        tools.sign(projected(iss="https://evil.example"), key),
        tools.sign(legacy(), key),
    ]:
        assert denied(dev_server, "app", token) == "permission denied"
