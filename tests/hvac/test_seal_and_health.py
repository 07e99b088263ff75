"""hvac against a configured server: health, init, unseal, seal, and 503 while sealed."""

import hvac
import pytest
from hvac import exceptions


def test_init_unseal_and_seal(configured_server):
    client = configured_server.client()
    assert client.sys.is_initialized() is False
    assert client.sys.read_health_status(method="HEAD").status_code == 501
    assert client.sys.read_health_status(method="GET", uninit_code=200)["initialized"] is False

    result = client.sys.initialize(secret_shares=5, secret_threshold=3)
    assert len(result["keys"]) == 5 and len(result["keys_base64"]) == 5
    assert client.sys.is_initialized() is True
    assert client.sys.is_sealed() is True
    status = client.sys.read_seal_status()
    assert (status["t"], status["n"], status["progress"], status["type"]) == (3, 5, 0, "shamir")

    # Two shares: still sealed, progress 2; reset clears it.
    client.sys.submit_unseal_key(result["keys"][0])
    assert client.sys.submit_unseal_key(result["keys_base64"][3])["progress"] == 2
    assert client.sys.submit_unseal_key(reset=True)["progress"] == 0

    unsealed = client.sys.submit_unseal_keys(result["keys"][1:4])
    assert unsealed["sealed"] is False
    client.token = result["root_token"]
    assert client.is_authenticated()
    assert client.sys.read_health_status(method="GET")["sealed"] is False
    assert client.sys.read_leader_status()["is_self"] is True

    client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    client.secrets.kv.v2.create_or_update_secret("app", {"k": "v"})

    client.sys.seal()
    assert client.sys.is_sealed() is True
    assert client.sys.read_health_status(method="HEAD").status_code == 503
    assert client.sys.read_health_status(method="GET", sealed_code=200)["sealed"] is True
    with pytest.raises(exceptions.VaultDown):
        client.secrets.kv.v2.read_secret_version("app", raise_on_deleted_version=True)
    with pytest.raises(exceptions.VaultDown):
        client.auth.token.lookup_self()

    client.sys.submit_unseal_keys(result["keys_base64"][2:5])
    assert client.secrets.kv.v2.read_secret_version("app", raise_on_deleted_version=True)["data"]["data"] == {"k": "v"}


def test_dev_server_health(dev_server):
    client = dev_server.client()
    assert client.sys.read_health_status(method="HEAD").status_code == 200
    health = client.sys.read_health_status(method="GET")
    assert health["initialized"] is True and health["sealed"] is False and health["standby"] is False
    assert client.sys.read_health_status(method="GET", standby_ok=True)["sealed"] is False


def test_key_rotation_keeps_data_readable(root):
    root.secrets.kv.v2.create_or_update_secret("rotate/before", {"v": "1"})
    term = root.sys.get_encryption_key_status()["data"]["term"]
    root.sys.rotate_encryption_key()
    assert root.sys.get_encryption_key_status()["data"]["term"] == term + 1
    root.secrets.kv.v2.create_or_update_secret("rotate/after", {"v": "2"})
    read = root.secrets.kv.v2.read_secret_version
    assert read("rotate/before", raise_on_deleted_version=True)["data"]["data"] == {"v": "1"}
    assert read("rotate/after", raise_on_deleted_version=True)["data"]["data"] == {"v": "2"}
