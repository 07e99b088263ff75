"""hvac's AppRole calls against coffer: roles, role IDs, secret IDs (generated
and custom, with metadata and CIDR lists), lookup and destroy by secret and by
accessor, logins that spend uses exactly once even when concurrent, and
Vault's refusals."""

import concurrent.futures
import json
import os
import time

import hvac
import pytest
from hvac import exceptions


@pytest.fixture
def approle(root):
    root.sys.enable_auth_method("approle", path="approle")
    yield root
    root.sys.disable_auth_method("approle")


def anonymous(dev_server):
    return hvac.Client(url=dev_server.address)


def test_roles_secret_ids_and_logins(dev_server, approle):
    approle.auth.approle.create_or_update_approle(
        "ci", token_policies=["app"], token_ttl="20m", secret_id_ttl="10m", secret_id_num_uses=2)
    role = approle.auth.approle.read_role("ci")["data"]
    assert role["token_policies"] == ["app"] and role["token_ttl"] == 1200
    assert role["secret_id_ttl"] == 600 and role["secret_id_num_uses"] == 2 and role["bind_secret_id"] is True
    assert approle.auth.approle.list_roles()["data"]["keys"] == ["ci"]
    role_id = approle.auth.approle.read_role_id("ci")["data"]["role_id"]

    made = approle.auth.approle.generate_secret_id("ci", metadata={"team": "ci"})["data"]
    assert made["secret_id_num_uses"] == 2 and made["secret_id_ttl"] == 600
    looked = approle.auth.approle.read_secret_id("ci", made["secret_id"])["data"]
    assert looked["metadata"] == {"team": "ci"} and looked["secret_id_accessor"] == made["secret_id_accessor"]
    assert looked["expiration_time"] > looked["creation_time"]
    assert approle.auth.approle.list_secret_id_accessors("ci")["data"]["keys"] == [made["secret_id_accessor"]]

    first = anonymous(dev_server).auth.approle.login(role_id, made["secret_id"])["auth"]
    assert first["policies"] == ["app", "default"] and first["lease_duration"] == 1200
    assert first["metadata"] == {"role_name": "ci", "team": "ci"}
    assert approle.auth.approle.read_secret_id("ci", made["secret_id"])["data"]["secret_id_num_uses"] == 1
    anonymous(dev_server).auth.approle.login(role_id, made["secret_id"])
    # Its two uses are spent: the secret ID is gone.
    with pytest.raises(exceptions.InvalidRequest, match="invalid role or secret ID"):
        anonymous(dev_server).auth.approle.login(role_id, made["secret_id"])
    assert approle.auth.approle.read_secret_id("ci", made["secret_id"]) is None or \
        approle.auth.approle.read_secret_id("ci", made["secret_id"]).status_code == 204

    # Custom secret IDs, destroyed by value and by accessor.
    custom = approle.auth.approle.create_custom_secret_id("ci", "my-own-secret")["data"]
    assert anonymous(dev_server).auth.approle.login(role_id, "my-own-secret")["auth"]["client_token"]
    approle.auth.approle.destroy_secret_id("ci", "my-own-secret")
    with pytest.raises(exceptions.InvalidRequest, match="invalid role or secret ID"):
        anonymous(dev_server).auth.approle.login(role_id, "my-own-secret")
    other = approle.auth.approle.generate_secret_id("ci")["data"]
    by_accessor = approle.auth.approle.read_secret_id_accessor("ci", other["secret_id_accessor"])["data"]
    assert by_accessor["secret_id_accessor"] == other["secret_id_accessor"]
    approle.auth.approle.destroy_secret_id_accessor("ci", other["secret_id_accessor"])
    with pytest.raises(exceptions.InvalidRequest, match="invalid role or secret ID"):
        anonymous(dev_server).auth.approle.login(role_id, other["secret_id"])
    assert custom["secret_id_accessor"]

    # A role ID set by hand; the old one no longer logs in.
    approle.auth.approle.update_role_id("ci", "fixed-role-id")
    fresh = approle.auth.approle.generate_secret_id("ci")["data"]["secret_id"]
    assert anonymous(dev_server).auth.approle.login("fixed-role-id", fresh)["auth"]["client_token"]
    with pytest.raises(exceptions.InvalidRequest, match="invalid role or secret ID"):
        anonymous(dev_server).auth.approle.login(role_id, fresh)

    # Vault's refusals (OpenBao answers 500 for a missing role_id and an
    # unconstrained role; coffer says 400: they are the client's mistakes).
    with pytest.raises(exceptions.InvalidRequest, match="missing secret_id"):
        anonymous(dev_server).write_data("auth/approle/login", data={"role_id": "fixed-role-id"})
    with pytest.raises(exceptions.InvalidRequest, match="missing role_id"):
        anonymous(dev_server).write_data("auth/approle/login", data={"secret_id": fresh})
    with pytest.raises(exceptions.InvalidRequest, match="invalid role or secret ID"):
        anonymous(dev_server).auth.approle.login("no-such-role-id", fresh)
    with pytest.raises(exceptions.InvalidRequest, match="at least one constraint should be enabled on the role"):
        approle.auth.approle.create_or_update_approle("loose", bind_secret_id=False)
    with pytest.raises(exceptions.InvalidPath, match='role "zzz" does not exist'):
        approle.auth.approle.generate_secret_id("zzz")


def test_cidr_bindings_and_expiry(dev_server, approle):
    approle.auth.approle.create_or_update_approle("far", token_policies=["app"], secret_id_bound_cidrs=["10.0.0.0/8"])
    role_id = approle.auth.approle.read_role_id("far")["data"]["role_id"]
    secret = approle.auth.approle.generate_secret_id("far")["data"]["secret_id"]
    with pytest.raises(exceptions.InvalidRequest, match='source address "127.0.0.1" unauthorized by CIDR restrictions'):
        anonymous(dev_server).auth.approle.login(role_id, secret)

    # Without a secret ID, bound to loopback: logs in from here only.
    approle.auth.approle.create_or_update_approle("near", bind_secret_id=False, secret_id_bound_cidrs=["127.0.0.0/8"],
                                                  token_policies=["app"])
    near_id = approle.auth.approle.read_role_id("near")["data"]["role_id"]
    assert anonymous(dev_server).auth.approle.login(near_id, None)["auth"]["client_token"]

    # A secret ID's own CIDR list, and its token bound to elsewhere.
    approle.auth.approle.create_or_update_approle("bound", token_policies=["app"], secret_id_ttl="2s")
    bound_id = approle.auth.approle.read_role_id("bound")["data"]["role_id"]
    listed = approle.auth.approle.generate_secret_id("bound", cidr_list=["192.168.0.0/16"])["data"]["secret_id"]
    with pytest.raises(exceptions.InvalidRequest, match="unauthorized by CIDR restrictions"):
        anonymous(dev_server).auth.approle.login(bound_id, listed)
    elsewhere = approle.auth.approle.generate_secret_id("bound", token_bound_cidrs=["10.0.0.0/8"])["data"]["secret_id"]
    token = anonymous(dev_server).auth.approle.login(bound_id, elsewhere)["auth"]["client_token"]
    with pytest.raises(exceptions.Forbidden):
        hvac.Client(url=dev_server.address, token=token).auth.token.lookup_self()

    expiring = approle.auth.approle.generate_secret_id("bound")["data"]["secret_id"]
    time.sleep(3)
    with pytest.raises(exceptions.InvalidRequest, match="invalid role or secret ID"):
        anonymous(dev_server).auth.approle.login(bound_id, expiring)


def test_concurrent_logins_spend_each_use_once(dev_server, approle):
    approle.auth.approle.create_or_update_approle("race", token_policies=["app"], secret_id_num_uses=5)
    role_id = approle.auth.approle.read_role_id("race")["data"]["role_id"]
    secret = approle.auth.approle.generate_secret_id("race")["data"]["secret_id"]

    def attempt(_):
        try:
            return anonymous(dev_server).auth.approle.login(role_id, secret)["auth"]["client_token"]
        except (exceptions.InvalidRequest, exceptions.Forbidden):
            # Spent, or (after 5 failures) the role ID is locked out.
            return None

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        tokens = list(pool.map(attempt, range(16)))
    assert len([token for token in tokens if token]) == 5, tokens


def test_logins_are_audited_with_the_secret_id_hashed(dev_server, approle):
    log = os.path.join(dev_server.workspace.name, "approle-audit.log")
    approle.sys.enable_audit_device("file", path="approle-file", options={"file_path": log})
    try:
        approle.auth.approle.create_or_update_approle("audited", token_policies=["app"])
        role_id = approle.auth.approle.read_role_id("audited")["data"]["role_id"]
        secret = approle.auth.approle.generate_secret_id("audited")["data"]["secret_id"]
        token = anonymous(dev_server).auth.approle.login(role_id, secret)["auth"]["client_token"]
        deadline = time.monotonic() + 5
        while True:
            with open(log) as handle:
                text = handle.read()
            logins = [json.loads(line) for line in text.splitlines() if '"auth/approle/login"' in line]
            if len(logins) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(logins) >= 2
        assert secret not in text and token not in text
        hashed = approle.sys.calculate_hash("approle-file", secret)["data"]["hash"]
        assert logins[0]["request"]["data"]["secret_id"] == hashed
    finally:
        approle.sys.disable_audit_device("approle-file")
