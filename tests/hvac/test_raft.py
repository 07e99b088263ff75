"""hvac's Raft calls against a one-node coffer: the member list, a snapshot taken
and restored (the store goes back to it and stays unsealed), and refusals."""

import hvac
import pytest


def test_raft_configuration_lists_the_one_member(root):
    config = root.sys.read_raft_config()["data"]["config"]
    servers = config["servers"]
    assert len(servers) == 1
    assert servers[0]["node_id"] == "dev"
    assert servers[0]["leader"] is True
    assert servers[0]["voter"] is True


def test_a_snapshot_restores_the_store_it_was_taken_of(root):
    root.secrets.kv.v2.create_or_update_secret(path="raft/before", secret={"v": "kept"})
    response = root.sys.take_raft_snapshot()
    assert response.status_code == 200
    snapshot = response.content
    assert len(snapshot) > 100
    assert b"kept" not in snapshot, "values are ciphertext in a snapshot"

    root.secrets.kv.v2.create_or_update_secret(path="raft/after", secret={"v": "gone"})
    restored = root.sys.restore_raft_snapshot(snapshot)
    assert restored.status_code == 204

    # Same cluster: the node reopens the restored store without sealing.
    assert root.sys.read_seal_status()["sealed"] is False
    kept = root.secrets.kv.v2.read_secret_version(path="raft/before", raise_on_deleted_version=True)
    assert kept["data"]["data"] == {"v": "kept"}
    with pytest.raises(hvac.exceptions.InvalidPath):
        root.secrets.kv.v2.read_secret_version(path="raft/after", raise_on_deleted_version=True)
    # The store still takes writes.
    root.secrets.kv.v2.create_or_update_secret(path="raft/later", secret={"v": "ok"})


def test_a_damaged_snapshot_is_refused_and_changes_nothing(root):
    root.secrets.kv.v2.create_or_update_secret(path="raft/stays", secret={"v": "1"})
    snapshot = bytearray(root.sys.take_raft_snapshot().content)
    snapshot[len(snapshot) // 2] ^= 0xFF
    with pytest.raises(hvac.exceptions.InvalidRequest) as refused:
        root.sys.force_restore_raft_snapshot(bytes(snapshot))
    assert "checksum" in str(refused.value)
    stays = root.secrets.kv.v2.read_secret_version(path="raft/stays", raise_on_deleted_version=True)
    assert stays["data"]["data"] == {"v": "1"}


def test_raft_endpoints_need_sudo(dev_server, root):
    root.sys.create_or_update_policy(
        name="raft-reader", policy='path "sys/storage/raft/*" { capabilities = ["read"] }'
    )
    token = root.auth.token.create(policies=["raft-reader"])["auth"]["client_token"]
    with pytest.raises(hvac.exceptions.Forbidden):
        dev_server.client(token).sys.read_raft_config()
