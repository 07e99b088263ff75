"""hvac's JWT auth calls against coffer, with tokens signed here: GitHub
Actions and GitLab claim sets, RS256 and ES256, PEM keys, a JWKS served on
loopback that rotates its keys (refetched on an unknown kid, at most once per
interval), OIDC discovery, and each refusal with Vault's text (expired, not yet
valid, wrong audience, wrong issuer, alg none, another key, a claim outside
its glob)."""

import json
import os
import time

import pytest
from hvac import exceptions

import jwt_tools as tools

GITHUB = "https://token.actions.githubusercontent.com"


def github_claims(**changes):
    now = int(time.time())
    claims = {
        "iss": GITHUB, "aud": "coffer", "sub": "repo:acme/app:ref:refs/heads/main",
        "repository": "acme/app", "repository_owner": "acme", "ref": "refs/heads/main",
        "environment": "prod", "workflow": "deploy", "iat": now, "nbf": now, "exp": now + 300,
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def gitlab_claims(**changes):
    now = int(time.time())
    claims = {
        "iss": "https://gitlab.example.com", "aud": "coffer", "sub": "project_path:group/app:ref_type:branch:ref:main",
        "project_path": "group/app", "namespace_path": "group", "ref": "main", "ref_type": "branch",
        "user_login": "alice", "iat": now, "nbf": now, "exp": now + 300,
    }
    claims.update(changes)
    return claims


@pytest.fixture
def jwt_mount(root):
    root.sys.enable_auth_method("jwt", path="jwt")
    yield root
    root.sys.disable_auth_method("jwt")


def refused(dev_server, role, token, path="jwt"):
    with pytest.raises(exceptions.InvalidRequest) as caught:
        dev_server.client().auth.jwt.jwt_login(role, token, path=path)
    return caught.value.errors[0]


def test_github_actions_tokens_with_pem_keys(dev_server, jwt_mount):
    rsa_key, ec_key = tools.rsa_key(), tools.ec_key()
    jwt_mount.auth.jwt.configure(jwt_validation_pubkeys=[tools.public_pem(rsa_key), tools.public_pem(ec_key)],
                                 bound_issuer=GITHUB)
    config = jwt_mount.auth.jwt.read_config()["data"]
    assert config["bound_issuer"] == GITHUB and config["status"] == "valid" and len(config["jwt_validation_pubkeys"]) == 2
    jwt_mount.auth.jwt.create_role(
        "deploy", user_claim="sub", allowed_redirect_uris=[], role_type="jwt", bound_audiences=["coffer"],
        bound_claims={"repository": "acme/app", "ref": ["refs/heads/main", "refs/tags/*"]}, bound_claims_type="glob",
        claim_mappings={"repository": "repo", "environment": "env"}, token_policies=["deployer"], token_ttl="10m")
    role = jwt_mount.auth.jwt.read_role("deploy")["data"]
    assert role["bound_claims"]["ref"] == ["refs/heads/main", "refs/tags/*"] and role["token_ttl"] == 600
    assert role["role_type"] == "jwt" and role["user_claim"] == "sub"
    assert jwt_mount.auth.jwt.list_roles()["data"]["keys"] == ["deploy"]

    for key in (rsa_key, ec_key):
        auth = dev_server.client().auth.jwt.jwt_login("deploy", tools.sign(github_claims(), key))["auth"]
        assert auth["policies"] == ["default", "deployer"] and auth["lease_duration"] == 600
        assert auth["metadata"] == {"role": "deploy", "repo": "acme/app", "env": "prod"}
        looked = dev_server.client(auth["client_token"]).auth.token.lookup_self()["data"]
        assert looked["display_name"] == "jwt-repo:acme/app:ref:refs/heads/main"
    # A role change is seen by the next login (roles are kept parsed).
    jwt_mount.write_data("auth/jwt/role/deploy", data={"token_policies": ["deployer", "auditor"]})
    auth = dev_server.client().auth.jwt.jwt_login("deploy", tools.sign(github_claims(), rsa_key))["auth"]
    assert auth["policies"] == ["auditor", "default", "deployer"]
    # A tag matches its glob; a list audience matches on any member; exp is optional.
    tag = github_claims(ref="refs/tags/v1.2", aud=["other", "coffer"], exp=None)
    assert dev_server.client().auth.jwt.jwt_login("deploy", tools.sign(tag, rsa_key))["auth"]["client_token"]
    # Within the 60 s leeway.
    late = github_claims(exp=int(time.time()) - 30, nbf=int(time.time()) + 30)
    assert dev_server.client().auth.jwt.jwt_login("deploy", tools.sign(late, rsa_key))["auth"]["client_token"]

    now = int(time.time())
    other_key = tools.rsa_key()
    for token, text in [
        (tools.sign(github_claims(exp=now - 100), rsa_key),
         "error validating token: invalid expiration time (exp) claim: token is expired"),
        (tools.sign(github_claims(nbf=now + 100), rsa_key),
         "error validating token: invalid not before (nbf) claim: token not yet valid"),
        (tools.sign(github_claims(iat=now + 100), rsa_key),
         "error validating token: invalid issued at (iat) claim: token issued in the future"),
        (tools.sign(github_claims(aud="someone-else"), rsa_key),
         "error validating token: invalid audience (aud) claim: audience claim does not match any expected audience"),
        (tools.sign(github_claims(iss="https://evil.example.com"), rsa_key),
         "error validating token: invalid issuer (iss) claim"),
        (tools.sign(github_claims(), rsa_key, alg="none"),
         "error validating token: error verifying token signature: no known key successfully validated the token signature"),
        (tools.sign(github_claims(), other_key),
         "error validating token: error verifying token signature: no known key successfully validated the token signature"),
        (tools.sign(github_claims(ref="refs/heads/dev"), rsa_key),
         'error validating claims: claim "ref" does not match any associated bound claim values'),
        (tools.sign(github_claims(repository=None), rsa_key),
         'error validating claims: claim "repository" is missing'),
        (tools.sign(github_claims(sub=None), rsa_key), 'claim "sub" not found in token'),
        (tools.sign(github_claims(environment=["a"]), rsa_key), "error converting claim 'environment' to string"),
        ("abc", "error validating token: error verifying token signature: compact JWS format must have three parts"),
    ]:
        assert refused(dev_server, "deploy", token) == text
    # An HS256 token "signed" with the public key as its secret: never an HMAC key.
    import hashlib
    import hmac
    header = tools.b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = tools.b64(json.dumps(github_claims()).encode())
    mac = hmac.new(tools.public_pem(rsa_key).encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    assert "no known key" in refused(dev_server, "deploy", f"{header}.{body}.{tools.b64(mac)}")

    for body, text in [
        ({"jwt": tools.sign(github_claims(), rsa_key)}, "missing role"),
        ({"role": "deploy"}, "missing token"),
        ({"role": "zz", "jwt": "a.b.c"}, 'role "zz" could not be found'),
    ]:
        with pytest.raises(exceptions.InvalidRequest) as caught:
            dev_server.client().write_data("auth/jwt/login", data=body)
        assert caught.value.errors == [text]


def test_config_and_role_refusals(dev_server, jwt_mount):
    key = tools.rsa_key()
    for body, text in [
        ({}, "exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url' must be set"),
        ({"jwt_validation_pubkeys": [tools.public_pem(key)], "jwks_url": "http://127.0.0.1:1/keys"},
         "exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url' must be set"),
        ({"jwt_validation_pubkeys": ["garbage"]},
         "error parsing public key: data does not contain any valid public keys"),
        ({"jwks_url": "http://127.0.0.1:1/keys"}, "error checking jwks URL"),
        ({"jwt_validation_pubkeys": [tools.public_pem(key)], "jwt_supported_algs": ["HS256"]},
         'invalid jwt_supported_algs: unsupported signing algorithm "HS256"'),
    ]:
        with pytest.raises(exceptions.InvalidRequest) as caught:
            jwt_mount.write_data("auth/jwt/config", data=body)
        assert caught.value.errors == [text]
    with pytest.raises(exceptions.InvalidRequest) as caught:
        jwt_mount.write_data("auth/jwt/config", data={"oidc_discovery_url": "http://127.0.0.1:1"})
    assert caught.value.errors[0].startswith("error checking oidc discovery URL: ")

    jwt_mount.auth.jwt.configure(jwt_validation_pubkeys=[tools.public_pem(key)])
    for body, text in [
        ({"user_claim": "sub"}, "'allowed_redirect_uris' must be set if 'role_type' is 'oidc' or unspecified."),
        ({"role_type": "jwt"}, "a user claim must be defined on the role"),
        ({"role_type": "jwt", "user_claim": "sub"}, "must have at least one bound constraint when creating/updating a role"),
        ({"role_type": "jwt", "user_claim": "sub", "bound_audiences": "x", "bound_claims_type": "regex"},
         "invalid 'bound_claims_type': regex"),
        ({"role_type": "jwt", "user_claim": "sub", "bound_audiences": "x", "claim_mappings": {"a": "role"}},
         'metadata key "role" is reserved and may not be a mapping destination'),
    ]:
        with pytest.raises(exceptions.InvalidRequest) as caught:
            jwt_mount.write_data("auth/jwt/role/r", data=body)
        assert caught.value.errors == [text]


def test_gitlab_tokens_from_a_rotating_jwks(dev_server, jwt_mount):
    first, second, unknown = tools.rsa_key(), tools.ec_key(), tools.rsa_key()
    served = {"keys": [tools.jwk(first, "k1")]}
    fake = tools.Fake(lambda method, path, headers, body: (200, served))
    try:
        jwt_mount.auth.jwt.configure(jwks_url=fake.url + "/jwks", bound_issuer="https://gitlab.example.com")
        fetched = len(fake.requests)
        assert fetched == 1, "the JWKS is fetched when the config is written"
        jwt_mount.auth.jwt.create_role(
            "gitlab", user_claim="user_login", allowed_redirect_uris=[], bound_audiences=["coffer"],
            bound_claims={"project_path": "group/*", "ref_type": "branch"}, bound_claims_type="glob",
            claim_mappings={"project_path": "project"}, token_policies=["ci"])
        login = lambda token: dev_server.client().auth.jwt.jwt_login("gitlab", token)["auth"]
        auth = login(tools.sign(gitlab_claims(), first, kid="k1"))
        assert auth["metadata"] == {"role": "gitlab", "project": "group/app"}
        assert len(fake.requests) == fetched, "known keys need no fetch"

        # The issuer rotates: a new kid makes the node fetch the JWKS again.
        served["keys"] = [tools.jwk(second, "k2")]
        time.sleep(5.2)
        assert login(tools.sign(gitlab_claims(), second, kid="k2"))["client_token"]
        assert len(fake.requests) == fetched + 1
        # An unknown kid right after a fetch does not fetch again: callers
        # without credentials cannot make the node hammer the issuer.
        for _ in range(5):
            assert "no known key" in refused(dev_server, "gitlab", tools.sign(gitlab_claims(), unknown, kid="k3"))
        assert len(fake.requests) == fetched + 1
        assert "no known key" in refused(dev_server, "gitlab", tools.sign(gitlab_claims(), first, kid="k1"))
        assert 'claim "ref_type" does not match' in refused(
            dev_server, "gitlab", tools.sign(gitlab_claims(ref_type="tag"), second, kid="k2"))
    finally:
        fake.stop()


def test_oidc_discovery(dev_server, jwt_mount):
    key = tools.rsa_key()
    documents = {}
    fake = tools.Fake(lambda method, path, headers, body: (200, documents[path]) if path in documents else (404, {}))
    try:
        documents["/.well-known/openid-configuration"] = {"issuer": fake.url, "jwks_uri": fake.url + "/keys"}
        documents["/keys"] = {"keys": [tools.jwk(key, "only")]}
        jwt_mount.auth.jwt.configure(oidc_discovery_url=fake.url, bound_issuer=fake.url)
        jwt_mount.auth.jwt.create_role("svc", user_claim="sub", allowed_redirect_uris=[], bound_subject="svc-1")
        claims = gitlab_claims(iss=fake.url, sub="svc-1")
        assert dev_server.client().auth.jwt.jwt_login("svc", tools.sign(claims, key, kid="only"))["auth"]["client_token"]
        assert refused(dev_server, "svc", tools.sign(dict(claims, sub="svc-2"), key, kid="only")) == \
            "error validating token: invalid subject (sub) claim"
        # A discovery document for another issuer is refused at config time.
        documents["/.well-known/openid-configuration"] = {"issuer": "https://elsewhere", "jwks_uri": fake.url + "/keys"}
        with pytest.raises(exceptions.InvalidRequest, match="issuer did not match"):
            jwt_mount.auth.jwt.configure(oidc_discovery_url=fake.url)
    finally:
        fake.stop()


def test_logins_are_audited_with_the_jwt_hashed(dev_server, jwt_mount):
    key = tools.rsa_key()
    jwt_mount.auth.jwt.configure(jwt_validation_pubkeys=[tools.public_pem(key)])
    jwt_mount.auth.jwt.create_role("audited", user_claim="sub", allowed_redirect_uris=[], bound_audiences=["coffer"])
    log = os.path.join(dev_server.workspace.name, "jwt-audit.log")
    jwt_mount.sys.enable_audit_device("file", path="jwt-file", options={"file_path": log})
    try:
        token = tools.sign(github_claims(), key)
        client_token = dev_server.client().auth.jwt.jwt_login("audited", token)["auth"]["client_token"]
        with open(log) as handle:
            text = handle.read()
        assert token not in text and client_token not in text
        hashed = jwt_mount.sys.calculate_hash("jwt-file", token)["data"]["hash"]
        logins = [json.loads(line) for line in text.splitlines() if '"auth/jwt/login"' in line]
        assert logins and all(entry["request"]["data"]["jwt"] == hashed for entry in logins)
    finally:
        jwt_mount.sys.disable_audit_device("jwt-file")
