"""hvac: response wrapping (X-Vault-Wrap-TTL, sys/wrapping/*) and cubbyhole."""

import time

import pytest
from hvac import exceptions


def test_a_wrapped_read_unwraps_once(dev_server, root):
    root.secrets.kv.v2.create_or_update_secret("wrap/app", {"password": "p4ss"})
    wrapped = root.read("secret/data/wrap/app", wrap_ttl="2m")
    assert wrapped["data"] is None
    info = wrapped["wrap_info"]
    assert (info["ttl"], info["creation_path"]) == (120, "secret/data/wrap/app")
    token = info["token"]
    # Lookup does not spend the token; using it anywhere else does nothing good.
    looked_up = root.write("sys/wrapping/lookup", token=token)["data"]
    assert (looked_up["creation_path"], looked_up["creation_ttl"]) == ("secret/data/wrap/app", 120)
    with pytest.raises(exceptions.Forbidden):
        dev_server.client(token).secrets.kv.v2.read_secret_version("wrap/app", raise_on_deleted_version=True)
    # That spent its one use.
    with pytest.raises(exceptions.InvalidRequest, match="wrapping token is not valid or does not exist"):
        root.sys.unwrap(token)

    token = root.read("secret/data/wrap/app", wrap_ttl="2m")["wrap_info"]["token"]
    unwrapped = dev_server.client(token).sys.unwrap()
    assert unwrapped["data"]["data"] == {"password": "p4ss"}
    with pytest.raises(exceptions.InvalidRequest, match="wrapping token is not valid or does not exist"):
        dev_server.client(token).sys.unwrap()
    with pytest.raises(exceptions.Forbidden, match="token is empty"):
        dev_server.client().sys.unwrap()


def test_wrapped_tokens_rewrap_wrap_and_expiry(dev_server, root):
    created = root.auth.token.create(policies=["default"], wrap_ttl="60s")
    info = created["wrap_info"]
    assert info["creation_path"] == "auth/token/create"
    auth = root.sys.unwrap(info["token"])["auth"]
    assert auth["accessor"] == info["wrapped_accessor"]
    assert dev_server.client(auth["client_token"]).is_authenticated()

    # Rewrap: a new token for the same response; the old one is spent.
    first = root.sys.wrap(payload={"note": "kept"}, ttl="60s")["wrap_info"]
    assert first["creation_path"] == "sys/wrapping/wrap"
    second = root.write("sys/wrapping/rewrap", token=first["token"])["wrap_info"]
    assert second["token"] != first["token"] and second["ttl"] == 60
    with pytest.raises(exceptions.InvalidRequest):
        root.sys.unwrap(first["token"])
    assert root.sys.unwrap(second["token"])["data"] == {"note": "kept"}
    with pytest.raises(exceptions.InvalidRequest, match="requires response wrapping"):
        root.write("sys/wrapping/wrap", note="x")

    short = root.sys.wrap(payload={"a": "b"}, ttl="1s")["wrap_info"]["token"]
    time.sleep(2.2)
    with pytest.raises(exceptions.InvalidRequest, match="not valid"):
        root.sys.unwrap(short)
    with pytest.raises(exceptions.InvalidRequest, match="X-Vault-Wrap-TTL"):
        root.read("secret/data/wrap/app", wrap_ttl="soon")


def test_cubbyhole_is_private_to_its_token_and_goes_with_it(dev_server, root):
    first = dev_server.client(root.auth.token.create(policies=["default"])["auth"]["client_token"])
    second = dev_server.client(root.auth.token.create(policies=["default"])["auth"]["client_token"])
    first.write("cubbyhole/notes/a", value="mine")
    assert first.read("cubbyhole/notes/a")["data"] == {"value": "mine"}
    assert first.list("cubbyhole/notes")["data"]["keys"] == ["a"]
    assert second.read("cubbyhole/notes/a") is None
    assert "cubbyhole/" in root.sys.list_mounted_secrets_engines()["data"]
    first.delete("cubbyhole/notes/a")
    assert first.read("cubbyhole/notes/a") is None
    first.write("cubbyhole/kept", value="x")
    first.auth.token.revoke_self()
    # A new token never sees an old token's values.
    third = dev_server.client(root.auth.token.create(policies=["default"])["auth"]["client_token"])
    assert third.read("cubbyhole/kept") is None


def test_policies_bound_the_wrapping_ttl_before_the_request_runs(dev_server, root):
    root.sys.create_or_update_acl_policy(
        "bounded-wrap",
        'path "secret/data/bounded/*" {\n  capabilities = ["create", "update", "read"]\n'
        '  min_wrapping_ttl = "10s"\n  max_wrapping_ttl = "1m"\n}\n',
    )
    client = dev_server.client(root.auth.token.create(policies=["bounded-wrap"])["auth"]["client_token"])
    with pytest.raises(exceptions.InvalidRequest, match="wrapping ttl too high"):
        client.write("secret/data/bounded/a", wrap_ttl="2m", data={"v": "1"})
    with pytest.raises(exceptions.InvalidRequest, match="wrapping ttl too low"):
        client.write("secret/data/bounded/a", wrap_ttl="5s", data={"v": "1"})
    # Refused before it ran: nothing was written.
    with pytest.raises(exceptions.InvalidPath):
        root.secrets.kv.v2.read_secret_version("bounded/a", raise_on_deleted_version=True)
    wrapped = client.write("secret/data/bounded/a", wrap_ttl="30s", data={"v": "1"})["wrap_info"]
    assert wrapped["ttl"] == 30
    assert root.sys.unwrap(wrapped["token"])["data"]["version"] == 1


def test_a_wrapped_response_is_audited_with_its_token_hashed(dev_server, root):
    import json
    import os

    log = os.path.join(dev_server.workspace.name, "wrap-audit.log")
    root.sys.enable_audit_device("file", path="wrap-file", options={"file_path": log})
    try:
        root.secrets.kv.v2.create_or_update_secret("wrap/audited", {"k": "wrapped-value"})
        info = root.read("secret/data/wrap/audited", wrap_ttl="1m")["wrap_info"]
        digest = root.sys.calculate_hash("wrap-file", info["token"])["data"]["hash"]
        deadline = time.monotonic() + 5
        while True:
            with open(log) as handle:
                text = handle.read()
            found = [
                json.loads(line)["response"]["wrap_info"]
                for line in text.splitlines()
                if '"wrap_info"' in line
            ]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert found and found[-1]["token"] == digest
        assert info["token"] not in text and "wrapped-value" not in text
    finally:
        root.sys.disable_audit_device("wrap-file")
