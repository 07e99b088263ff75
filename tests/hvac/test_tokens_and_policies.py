"""hvac: tokens with policies, the default policy, denied paths, revocation trees."""

import time

import pytest
from hvac import exceptions

READER = """
path "secret/data/shared/*" {
  capabilities = ["read", "list"]
}
path "secret/metadata/shared/*" {
  capabilities = ["list"]
}
path "secret/data/shared/locked" {
  capabilities = ["deny"]
}
"""

WRITER = """
path "secret/data/team/+/config" {
  capabilities = ["create", "update", "read"]
  allowed_parameters = {
    "data" = []
    "options" = []
  }
}
"""


def test_policies_crud(root):
    root.sys.create_or_update_acl_policy("reader", READER)
    assert root.sys.read_acl_policy("reader")["data"]["policy"] == READER
    assert "reader" in root.sys.list_acl_policies()["data"]["keys"]
    # The older sys/policy API works too.
    root.sys.create_or_update_policy("legacy", {"path": {"secret/*": {"capabilities": ["read"]}}})
    assert "legacy" in root.sys.list_policies()["data"]["policies"]
    assert "secret/*" in root.sys.read_policy("legacy")["data"]["rules"]
    root.sys.delete_policy("legacy")
    assert "legacy" not in root.sys.list_policies()["data"]["policies"]
    # Vault takes brackets in policy names.
    root.sys.create_or_update_acl_policy("team[ops]", READER)
    assert "team[ops]" in root.sys.list_acl_policies()["data"]["keys"]
    root.sys.delete_policy("team[ops]")
    root.sys.delete_policy("never[written]")
    assert "team[ops]" not in root.sys.list_acl_policies()["data"]["keys"]
    with pytest.raises(exceptions.InvalidRequest):
        root.sys.create_or_update_acl_policy("broken", 'path "x" { capabilities = ["fly"] }')
    with pytest.raises(exceptions.InvalidRequest):
        root.sys.delete_acl_policy("default")
    assert "default" in root.sys.list_acl_policies()["data"]["keys"]


def test_a_token_gets_exactly_its_policies(dev_server, root):
    root.sys.create_or_update_acl_policy("reader", READER)
    root.sys.create_or_update_acl_policy("writer", WRITER)
    root.secrets.kv.v2.create_or_update_secret("shared/db", {"password": "pw"})
    root.secrets.kv.v2.create_or_update_secret("shared/locked", {"password": "no"})
    root.secrets.kv.v2.create_or_update_secret("private/db", {"password": "no"})

    created = root.auth.token.create(policies=["reader", "writer"], ttl="1h", meta={"team": "a"})
    auth = created["auth"]
    assert auth["policies"] == ["default", "reader", "writer"]
    assert auth["renewable"] is True and 3500 < auth["lease_duration"] <= 3600
    assert auth["metadata"] == {"team": "a"}
    user = dev_server.client(auth["client_token"])
    assert user.is_authenticated()

    read = user.secrets.kv.v2.read_secret_version
    assert read("shared/db", raise_on_deleted_version=True)["data"]["data"] == {"password": "pw"}
    assert "db" in user.secrets.kv.v2.list_secrets("shared/")["data"]["keys"]
    for denied in ("private/db", "shared/locked"):
        with pytest.raises(exceptions.Forbidden):
            read(denied, raise_on_deleted_version=True)
    with pytest.raises(exceptions.Forbidden):
        user.secrets.kv.v2.create_or_update_secret("shared/db", {"password": "x"})
    # `+` matches one segment; allowed_parameters limits the body's keys.
    user.secrets.kv.v2.create_or_update_secret("team/web/config", {"a": "1"})
    with pytest.raises(exceptions.Forbidden):
        user.secrets.kv.v2.create_or_update_secret("team/web/extra/config", {"a": "1"})
    with pytest.raises(exceptions.Forbidden):
        user.adapter.post("/v1/secret/data/team/web/config", json={"data": {}, "extra": 1})
    # The default policy: look up, renew and revoke itself, nothing else.
    looked_up = user.auth.token.lookup_self()["data"]
    assert looked_up["policies"] == ["default", "reader", "writer"]
    assert looked_up["meta"] == {"team": "a"}
    assert looked_up["accessor"] == auth["accessor"]
    renewed = user.auth.token.renew_self(increment="30m")["auth"]
    assert 1700 < renewed["lease_duration"] <= 1800
    with pytest.raises(exceptions.Forbidden):
        user.auth.token.create(policies=["reader"])
    with pytest.raises(exceptions.Forbidden):
        user.sys.list_mounted_secrets_engines()
    caps = user.sys.get_capabilities(paths=["secret/data/shared/x", "secret/data/private/x"])
    assert caps["secret/data/shared/x"] == ["list", "read"]
    assert caps["secret/data/private/x"] == ["deny"]
    user.auth.token.revoke_self()
    assert not user.is_authenticated()


CREATOR = """
path "auth/token/create" {
  capabilities = ["update"]
}
"""


def test_revoking_a_parent_revokes_its_children(dev_server, root):
    root.sys.create_or_update_acl_policy("reader", READER)
    root.sys.create_or_update_acl_policy("creator", CREATOR)
    parent = root.auth.token.create(policies=["reader", "creator"], ttl="1h")["auth"]
    parent_client = dev_server.client(parent["client_token"])
    # A non-root parent may hand out a subset of its policies, but not more.
    child = parent_client.auth.token.create(policies=["reader", "creator"], ttl="30m")["auth"]
    grandchild = dev_server.client(child["client_token"]).auth.token.create(ttl="10m")["auth"]
    with pytest.raises(exceptions.InvalidRequest):
        parent_client.auth.token.create(policies=["writer"])
    orphan = root.auth.token.create_orphan(policies=["reader"], ttl="1h")["auth"]
    assert orphan["orphan"] is True and child["orphan"] is False

    root.auth.token.revoke(parent["client_token"])
    for token in (parent, child, grandchild):
        assert not dev_server.client(token["client_token"]).is_authenticated()
    assert dev_server.client(orphan["client_token"]).is_authenticated()

    # revoke-orphan keeps the children; revoke-accessor works by accessor.
    keeper = root.auth.token.create(policies=["reader", "creator"], ttl="1h")["auth"]
    kept = dev_server.client(keeper["client_token"]).auth.token.create(ttl="10m")["auth"]
    root.auth.token.revoke_and_orphan_children(keeper["client_token"])
    assert not dev_server.client(keeper["client_token"]).is_authenticated()
    kept_client = dev_server.client(kept["client_token"])
    assert kept_client.auth.token.lookup_self()["data"]["orphan"] is True
    assert root.auth.token.lookup_accessor(kept["accessor"])["data"]["id"] == ""
    root.auth.token.revoke_accessor(kept["accessor"])
    assert not kept_client.is_authenticated()
    with pytest.raises(exceptions.InvalidRequest, match="invalid accessor"):
        root.auth.token.lookup_accessor(kept["accessor"])


def test_use_limits_expiry_and_renewal_limits(dev_server, root):
    limited = root.auth.token.create(num_uses=2, ttl="1h")["auth"]
    client = dev_server.client(limited["client_token"])
    client.auth.token.lookup_self()
    client.auth.token.lookup_self()
    assert not client.is_authenticated()

    short = root.auth.token.create(ttl="2s")["auth"]
    short_client = dev_server.client(short["client_token"])
    assert short_client.is_authenticated()
    time.sleep(3)
    assert not short_client.is_authenticated()

    capped = root.auth.token.create(ttl="10s", explicit_max_ttl="20s")["auth"]
    renewed = root.auth.token.renew(capped["client_token"], increment="1h")
    assert renewed["auth"]["lease_duration"] <= 20
    assert renewed["warnings"]
    fixed = root.auth.token.create(ttl="1h", renewable=False)["auth"]
    with pytest.raises(exceptions.InvalidRequest):
        root.auth.token.renew(fixed["client_token"])

    periodic = root.auth.token.create(period="1h", policies=["default"])["auth"]
    assert dev_server.client(periodic["client_token"]).auth.token.lookup_self()["data"]["period"] == 3600
    assert periodic["lease_duration"] == 3600


def test_bad_tokens_are_403(dev_server):
    client = dev_server.client("hvs.made-up")
    assert not client.is_authenticated()
    with pytest.raises(exceptions.Forbidden):
        client.secrets.kv.v2.read_secret_version("anything", raise_on_deleted_version=True)
    with pytest.raises(exceptions.Forbidden):
        dev_server.client().auth.token.lookup_self()


def test_root_protected_paths_need_sudo(dev_server, root):
    root.sys.create_or_update_acl_policy(
        "operator-no-sudo",
        'path "sys/seal" {\n  capabilities = ["update"]\n}\npath "sys/rotate" {\n  capabilities = ["update"]\n}\n',
    )
    root.sys.create_or_update_acl_policy(
        "operator-sudo",
        'path "sys/rotate" {\n  capabilities = ["update", "sudo"]\n}\n',
    )
    without = dev_server.client(root.auth.token.create(policies=["operator-no-sudo"])["auth"]["client_token"])
    with pytest.raises(exceptions.Forbidden):
        without.sys.seal()
    with pytest.raises(exceptions.Forbidden):
        without.sys.rotate_encryption_key()
    assert root.sys.is_sealed() is False
    with_sudo = dev_server.client(root.auth.token.create(policies=["operator-sudo"])["auth"]["client_token"])
    with_sudo.sys.rotate_encryption_key()


def test_token_roles(dev_server, root):
    token = root.auth.token
    token.create_or_update_role(
        "ci", allowed_policies=["reader", "writer"], orphan=True, renewable=False, path_suffix="v1",
        token_explicit_max_ttl="2h",
    )
    token.create_or_update_role("open", disallowed_policies=["root-like"], token_period="1h")
    assert sorted(token.list_roles()["data"]["keys"]) == ["ci", "open"]
    role = token.read_role("ci")["data"]
    assert (role["allowed_policies"], role["orphan"], role["renewable"], role["path_suffix"]) == (
        ["reader", "writer"], True, False, "v1")
    assert role["token_explicit_max_ttl"] == 7200

    # No policies asked for: the role's allowed ones; its lifetime rules apply.
    made = token.create(role_name="ci")["auth"]
    assert made["policies"] == ["default", "reader", "writer"]
    assert (made["orphan"], made["renewable"], made["lease_duration"]) == (True, False, 7200)
    looked_up = dev_server.client(made["client_token"]).auth.token.lookup_self()["data"]
    assert looked_up["path"] == "auth/token/create/ci/v1"
    assert token.create(role_name="ci", policies=["reader"])["auth"]["policies"] == ["default", "reader"]
    with pytest.raises(exceptions.InvalidRequest, match="must be subset of the role's allowed policies"):
        token.create(role_name="ci", policies=["admin"])
    # A role that names no policies leaves the parent's bound; its period needs no sudo.
    root.sys.create_or_update_acl_policy("reader", READER)
    parent = dev_server.client(token.create(policies=["reader"])["auth"]["client_token"])
    root.sys.create_or_update_acl_policy(
        "role-user", 'path "auth/token/create/*" {\n  capabilities = ["update"]\n}\n')
    parent = dev_server.client(token.create(policies=["reader", "role-user"])["auth"]["client_token"])
    periodic = parent.auth.token.create(role_name="open", policies=["reader"])["auth"]
    assert periodic["lease_duration"] == 3600
    assert dev_server.client(periodic["client_token"]).auth.token.lookup_self()["data"]["period"] == 3600
    with pytest.raises(exceptions.InvalidRequest, match="subset of the parent"):
        parent.auth.token.create(role_name="open", policies=["writer"])
    with pytest.raises(exceptions.InvalidRequest, match="disallowed by this role"):
        token.create(role_name="open", policies=["root-like"])
    with pytest.raises(exceptions.InvalidRequest, match="unknown role"):
        token.create(role_name="nope")
    # Revoking the role's prefix revokes its tokens, as Vault's leases do.
    root.sys.revoke_prefix("auth/token/create/ci")
    assert not dev_server.client(made["client_token"]).is_authenticated()
    assert dev_server.client(periodic["client_token"]).is_authenticated()
    token.delete_role("ci")
    with pytest.raises(exceptions.InvalidPath):
        token.read_role("ci")
    with pytest.raises(exceptions.InvalidRequest, match="unknown role"):
        token.create(role_name="ci")


def test_the_token_store_is_tuned_like_any_auth_method(root):
    root.sys.tune_auth_method("token", default_lease_ttl="1h", max_lease_ttl="2h")
    try:
        tuning = root.sys.read_auth_method_tuning("token")["data"]
        assert (tuning["default_lease_ttl"], tuning["max_lease_ttl"]) == (3600, 7200)
        assert root.auth.token.create(policies=["default"])["auth"]["lease_duration"] == 3600
        capped = root.auth.token.create(policies=["default"], ttl="5h")
        assert capped["auth"]["lease_duration"] == 7200
        assert "capped" in capped["warnings"][0]
    finally:
        root.sys.tune_auth_method("token", default_lease_ttl=0, max_lease_ttl=0)
    assert root.auth.token.create(policies=["default"])["auth"]["lease_duration"] == 2764800
