"""hvac's userpass calls against coffer: users with argon2id (or Vault's
bcrypt) hashes, case-insensitive names, one answer for a wrong password and
an unknown user, token fields on the login's token, CIDR-bound tokens, and
the audit log with the password hashed."""

import json
import os
import time

import bcrypt
import hvac
import pytest
from hvac import exceptions


@pytest.fixture
def userpass(root):
    root.sys.enable_auth_method("userpass", path="userpass")
    root.sys.create_or_update_policy("app", 'path "secret/data/app/*" { capabilities = ["read"] }')
    yield root
    root.sys.disable_auth_method("userpass")


def client(dev_server, token=None):
    return hvac.Client(url=dev_server.address, token=token)


def test_users_log_in_with_vaults_answers(dev_server, userpass):
    userpass.auth.userpass.create_or_update_user("alice", "correct horse", policies=["app"],
                                                 mount_point="userpass")
    userpass.write_data("auth/userpass/users/alice", data={"token_ttl": "1h", "token_max_ttl": "2h"})
    read = userpass.auth.userpass.read_user("alice")["data"]
    assert read["token_policies"] == ["app"] and read["token_ttl"] == 3600 and read["token_max_ttl"] == 7200
    assert "password" not in json.dumps(read) and "argon2" not in json.dumps(read)
    assert userpass.auth.userpass.list_user()["data"]["keys"] == ["alice"]

    login = client(dev_server).auth.userpass.login("ALICE", "correct horse")["auth"]
    assert login["policies"] == ["app", "default"] and login["metadata"] == {"username": "alice"}
    assert login["lease_duration"] == 3600 and login["renewable"] is True
    token = client(dev_server, login["client_token"])
    assert token.auth.token.lookup_self()["data"]["display_name"] == "userpass-alice"
    renewed = token.auth.token.renew_self(increment="3h")["auth"]
    assert renewed["lease_duration"] <= 7200

    # A wrong password and an unknown user: one answer, after the same work
    # (an unknown name is checked against a dummy hash, not answered at once).
    answers, times = {}, {}
    for name in ("alice", "nobody"):
        spent = []
        for _ in range(3):  # under the lockout threshold (5)
            started = time.monotonic()
            with pytest.raises(exceptions.InvalidRequest) as refused:
                client(dev_server).auth.userpass.login(name, "wrong")
            spent.append(time.monotonic() - started)
            answers[name] = refused.value.errors
        times[name] = sorted(spent)[1]
    assert answers["alice"] == answers["nobody"] == ["invalid username or password"]
    assert times["nobody"] > 0.5 * times["alice"], times
    with pytest.raises(exceptions.InvalidRequest, match="missing password"):
        client(dev_server).write_data("auth/userpass/login/alice", data={})
    with pytest.raises(exceptions.InvalidRequest, match="must provide either password or password_hash"):
        userpass.write_data("auth/userpass/users/bob", data={"token_policies": "app"})

    userpass.auth.userpass.update_password_on_user("alice", "battery staple")
    with pytest.raises(exceptions.InvalidRequest):
        client(dev_server).auth.userpass.login("alice", "correct horse")
    assert client(dev_server).auth.userpass.login("alice", "battery staple")["auth"]["client_token"]
    userpass.write_data("auth/userpass/users/alice/policies", data={"token_policies": "default"})
    assert client(dev_server).auth.userpass.login("alice", "battery staple")["auth"]["policies"] == ["default"]

    userpass.auth.userpass.delete_user("alice")
    with pytest.raises(exceptions.InvalidRequest, match="invalid username or password"):
        client(dev_server).auth.userpass.login("alice", "battery staple")


def test_a_bcrypt_password_hash_from_vault_logs_in(dev_server, userpass):
    hashed = bcrypt.hashpw(b"from vault", bcrypt.gensalt(rounds=4)).decode()
    userpass.write_data("auth/userpass/users/carol", data={"password_hash": hashed, "token_policies": "app"})
    assert client(dev_server).auth.userpass.login("carol", "from vault")["auth"]["policies"] == ["app", "default"]
    with pytest.raises(exceptions.InvalidRequest, match="password_hash must be a bcrypt"):
        userpass.write_data("auth/userpass/users/dave", data={"password_hash": "plain"})


def test_a_cidr_bound_token_is_refused_from_elsewhere(dev_server, userpass):
    userpass.write_data("auth/userpass/users/erin", data={
        "password": "pw", "token_policies": "app", "token_bound_cidrs": "10.0.0.0/8"})
    assert userpass.auth.userpass.read_user("erin")["data"]["token_bound_cidrs"] == ["10.0.0.0/8"]
    token = client(dev_server).auth.userpass.login("erin", "pw")["auth"]["client_token"]
    with pytest.raises(exceptions.Forbidden):
        client(dev_server, token).auth.token.lookup_self()
    userpass.write_data("auth/userpass/users/erin", data={"token_bound_cidrs": "127.0.0.1/32"})
    assert userpass.auth.userpass.read_user("erin")["data"]["token_bound_cidrs"] == ["127.0.0.1"]
    token = client(dev_server).auth.userpass.login("erin", "pw")["auth"]["client_token"]
    looked = client(dev_server, token).auth.token.lookup_self()["data"]
    assert looked["policies"] == ["app", "default"] and looked["bound_cidrs"] == ["127.0.0.1"]
    assert "bound_cidrs" not in userpass.auth.token.lookup_self()["data"]


def test_logins_are_audited_with_the_password_hashed(dev_server, userpass):
    log = os.path.join(dev_server.workspace.name, "userpass-audit.log")
    userpass.sys.enable_audit_device("file", path="userpass-file", options={"file_path": log})
    try:
        userpass.write_data("auth/userpass/users/frank", data={"password": "audited-secret-pw"})
        token = client(dev_server).auth.userpass.login("frank", "audited-secret-pw")["auth"]["client_token"]
        deadline = time.monotonic() + 5
        while True:
            with open(log) as handle:
                text = handle.read()
            logins = [json.loads(line) for line in text.splitlines()
                      if '"auth/userpass/login/frank"' in line]
            if len(logins) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(logins) >= 2, "a request and a response entry for the login"
        assert "audited-secret-pw" not in text and token not in text
        hashed = userpass.sys.calculate_hash("userpass-file", "audited-secret-pw")["data"]["hash"]
        assert logins[0]["request"]["data"]["password"] == hashed
    finally:
        userpass.sys.disable_audit_device("userpass-file")


def test_users_are_locked_out_after_failed_logins(dev_server, userpass):
    userpass.write_data("sys/auth/userpass/tune", data={
        "user_lockout_config": {"lockout_threshold": "3", "lockout_duration": "3s", "lockout_counter_reset": "1m"}})
    tuned = userpass.read("sys/auth/userpass/tune")["data"]
    assert tuned["user_lockout_threshold"] == 3 and tuned["user_lockout_duration"] == 3
    assert tuned["user_lockout_counter_reset_duration"] == 60 and tuned["user_lockout_disable"] is False
    for name in ("gina", "hank"):
        userpass.write_data("auth/userpass/users/" + name, data={"password": "right"})

    for _ in range(3):
        with pytest.raises(exceptions.InvalidRequest, match="invalid username or password"):
            client(dev_server).auth.userpass.login("gina", "wrong")
    # Locked out: even the right password gets Vault's 403; others are not.
    with pytest.raises(exceptions.Forbidden, match="permission denied"):
        client(dev_server).auth.userpass.login("gina", "right")
    assert client(dev_server).auth.userpass.login("hank", "right")["auth"]["client_token"]
    # An unknown name is locked out the same way (no user enumeration).
    for _ in range(3):
        with pytest.raises(exceptions.InvalidRequest):
            client(dev_server).auth.userpass.login("nobody", "wrong")
    with pytest.raises(exceptions.Forbidden):
        client(dev_server).auth.userpass.login("nobody", "wrong")
    # sys/locked-users shows both, in Vault's shape; the sys/auth list shows the config.
    accessor = userpass.sys.list_auth_methods()["data"]["userpass/"]["accessor"]
    assert userpass.sys.list_auth_methods()["data"]["userpass/"]["config"]["user_lockout_config"][
        "user_lockout_threshold"] == 3
    locked = userpass.read("sys/locked-users")["data"]
    assert locked["total"] == 2
    assert locked["by_namespace"][0]["mount_accessors"] == [
        {"mount_accessor": accessor, "counts": 2, "alias_identifiers": ["gina", "nobody"]}]
    with pytest.raises(exceptions.Forbidden):
        client(dev_server, "not-a-token").read("sys/locked-users")
    # Unlocking one lets it in at once; the other stays out until the duration passes.
    userpass.write_data(f"sys/locked-users/{accessor}/unlock/gina")
    assert client(dev_server).auth.userpass.login("gina", "right")["auth"]["client_token"]
    assert userpass.read("sys/locked-users")["data"]["by_namespace"][0]["mount_accessors"][0][
        "alias_identifiers"] == ["nobody"]
    time.sleep(3.5)
    assert userpass.read("sys/locked-users")["data"]["total"] == 0

    metrics = userpass.adapter.get("/v1/sys/metrics", params={"format": "prometheus"}).text
    failures = [line for line in metrics.splitlines()
                if line.startswith('coffer_login_failures_total{method="userpass",mount="userpass/",source="127.0.0.1"}')]
    assert failures and float(failures[0].split()[-1]) >= 8, metrics

    userpass.write_data("sys/auth/userpass/tune", data={"user_lockout_config": {"disable_lockout": True}})
    for _ in range(4):
        with pytest.raises(exceptions.InvalidRequest):
            client(dev_server).auth.userpass.login("hank", "wrong")
    assert client(dev_server).auth.userpass.login("hank", "right")["auth"]["client_token"]
