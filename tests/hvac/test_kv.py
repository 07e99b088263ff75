"""hvac: every KV v2 operation, KV v1, and mount management."""

import time

import pytest
from hvac import exceptions


def kv2(root):
    return root.secrets.kv.v2


def test_write_read_versions_and_patch(root):
    kv = kv2(root)
    first = kv.create_or_update_secret("app/config", {"user": "a", "password": "p1"})
    assert first["data"]["version"] == 1 and first["data"]["deletion_time"] == ""
    assert kv.create_or_update_secret("app/config", {"user": "a", "password": "p2"})["data"]["version"] == 2
    latest = kv.read_secret_version("app/config", raise_on_deleted_version=True)["data"]
    assert latest["data"] == {"user": "a", "password": "p2"}
    assert latest["metadata"]["version"] == 2
    assert kv.read_secret_version("app/config", version=1, raise_on_deleted_version=True)["data"]["data"]["password"] == "p1"
    # hvac's patch merges on the client (read, then a check-and-set write).
    kv.patch("app/config", {"password": "p3"})
    assert kv.read_secret_version("app/config", raise_on_deleted_version=True)["data"]["data"] == {"user": "a", "password": "p3"}
    # The server's own PATCH is a JSON merge patch: null removes a key.
    root.adapter.request(
        "PATCH",
        "/v1/secret/data/app/config",
        json={"data": {"user": None, "extra": {"nested": True}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    patched = kv.read_secret_version("app/config", raise_on_deleted_version=True)["data"]
    assert patched["data"] == {"password": "p3", "extra": {"nested": True}}
    assert patched["metadata"]["version"] == 4
    with pytest.raises(exceptions.InvalidPath):
        root.adapter.request("PATCH", "/v1/secret/data/app/absent", json={"data": {"a": "b"}})
    with pytest.raises(exceptions.InvalidPath):
        kv.read_secret_version("app/absent", raise_on_deleted_version=True)
    subkeys = root.adapter.get("/v1/secret/subkeys/app/config")["data"]["subkeys"]
    assert subkeys == {"password": None, "extra": {"nested": None}}
    kv.create_or_update_secret("app/other", {"x": "1"})
    kv.create_or_update_secret("app/deep/one", {"x": "1"})
    assert kv.list_secrets("app")["data"]["keys"] == ["config", "deep/", "other"]
    with pytest.raises(exceptions.InvalidPath):
        kv.list_secrets("nothing-here")


def test_check_and_set(root):
    kv = kv2(root)
    kv.create_or_update_secret("cas/key", {"v": "1"}, cas=0)
    with pytest.raises(exceptions.InvalidRequest, match="check-and-set"):
        kv.create_or_update_secret("cas/key", {"v": "x"}, cas=0)
    kv.create_or_update_secret("cas/key", {"v": "2"}, cas=1)
    with pytest.raises(exceptions.InvalidRequest, match="did not match"):
        kv.create_or_update_secret("cas/key", {"v": "x"}, cas=1)
    kv.update_metadata("cas/key", cas_required=True)
    with pytest.raises(exceptions.InvalidRequest, match="required"):
        kv.create_or_update_secret("cas/key", {"v": "x"})
    # A negative version is a mismatch, in Vault's words.
    with pytest.raises(exceptions.InvalidRequest, match="check-and-set parameter did not match the current version"):
        kv.create_or_update_secret("cas/key", {"v": "x"}, cas=-1)
    kv.create_or_update_secret("cas/key", {"v": "3"}, cas=2)
    assert kv.read_secret_version(raise_on_deleted_version=True, path="cas/key")["data"]["data"] == {"v": "3"}


def test_soft_delete_undelete_destroy(root):
    kv = kv2(root)
    for value in ("1", "2", "3"):
        kv.create_or_update_secret("life/key", {"v": value})
    kv.delete_latest_version_of_secret("life/key")
    deleted = kv.read_secret_version("life/key", raise_on_deleted_version=False)
    assert deleted["data"]["data"] is None
    assert deleted["data"]["metadata"]["deletion_time"] != ""
    assert deleted["data"]["metadata"]["version"] == 3
    with pytest.raises(exceptions.InvalidPath) as raised:
        kv.read_secret_version("life/key", raise_on_deleted_version=True)
    assert raised.value.json["data"]["metadata"]["deletion_time"] != ""

    kv.undelete_secret_versions("life/key", versions=[3])
    assert kv.read_secret_version(raise_on_deleted_version=True, path="life/key")["data"]["data"] == {"v": "3"}
    kv.delete_secret_versions("life/key", versions=[1, 2])
    for version in (1, 2):
        with pytest.raises(exceptions.InvalidPath):
            kv.read_secret_version("life/key", version=version, raise_on_deleted_version=True)
    kv.destroy_secret_versions("life/key", versions=[1])
    metadata = kv.read_secret_metadata("life/key")["data"]
    assert metadata["versions"]["1"]["destroyed"] is True
    assert metadata["versions"]["2"]["destroyed"] is False and metadata["versions"]["2"]["deletion_time"] != ""
    assert metadata["current_version"] == 3
    # A destroyed version cannot be undeleted.
    kv.undelete_secret_versions("life/key", versions=[1, 2])
    assert kv.read_secret_version("life/key", version=2, raise_on_deleted_version=True)["data"]["data"] == {"v": "2"}
    with pytest.raises(exceptions.InvalidPath):
        kv.read_secret_version("life/key", version=1, raise_on_deleted_version=True)
    kv.delete_metadata_and_all_versions("life/key")
    with pytest.raises(exceptions.InvalidPath):
        kv.read_secret_metadata("life/key")
    with pytest.raises(exceptions.InvalidRequest):
        root.adapter.post("/v1/secret/delete/life/key", json={"versions": []})


def test_metadata_max_versions_and_delete_after(root):
    kv = kv2(root)
    kv.update_metadata(
        "meta/key",
        max_versions=2,
        custom_metadata={"owner": "ops", "tier": "1"},
    )
    for value in ("1", "2", "3", "4"):
        kv.create_or_update_secret("meta/key", {"v": value})
    metadata = kv.read_secret_metadata("meta/key")["data"]
    assert metadata["max_versions"] == 2
    assert sorted(metadata["versions"]) == ["3", "4"]
    assert metadata["oldest_version"] == 3 and metadata["current_version"] == 4
    assert metadata["custom_metadata"] == {"owner": "ops", "tier": "1"}
    assert kv.read_secret_version(raise_on_deleted_version=True, path="meta/key")["data"]["metadata"]["custom_metadata"] == {"owner": "ops", "tier": "1"}
    with pytest.raises(exceptions.InvalidPath):
        kv.read_secret_version("meta/key", version=1, raise_on_deleted_version=True)

    # The default keeps 10 versions.
    for value in range(12):
        kv.create_or_update_secret("meta/many", {"v": str(value)})
    assert len(kv.read_secret_metadata("meta/many")["data"]["versions"]) == 10

    kv.update_metadata("meta/short", delete_version_after="1s")
    kv.create_or_update_secret("meta/short", {"v": "gone soon"})
    assert kv.read_secret_version(raise_on_deleted_version=True, path="meta/short")["data"]["data"] == {"v": "gone soon"}
    time.sleep(1.5)
    expired = kv.read_secret_version("meta/short", raise_on_deleted_version=False)
    assert expired["data"]["metadata"]["deletion_time"] != ""
    assert kv.read_secret_metadata("meta/short")["data"]["delete_version_after"] == "1s"


def test_engine_configuration(dev_server, root):
    root.sys.enable_secrets_engine("kv", path="configured", options={"version": "2"})
    kv = root.secrets.kv.v2
    kv.configure(max_versions=3, cas_required=True, mount_point="configured")
    config = kv.read_configuration(mount_point="configured")["data"]
    assert (config["max_versions"], config["cas_required"]) == (3, True)
    with pytest.raises(exceptions.InvalidRequest):
        kv.create_or_update_secret("x", {"a": "b"}, mount_point="configured")
    kv.create_or_update_secret("x", {"a": "b"}, cas=0, mount_point="configured")
    root.sys.disable_secrets_engine("configured")


def test_kv_v1(root):
    root.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
    kv = root.secrets.kv.v1
    kv.create_or_update_secret("app/db", {"password": "pw"}, mount_point="kv1")
    assert kv.read_secret("app/db", mount_point="kv1")["data"] == {"password": "pw"}
    kv.create_or_update_secret("app/db", {"password": "pw2"}, mount_point="kv1")
    assert kv.read_secret("app/db", mount_point="kv1")["data"] == {"password": "pw2"}
    assert kv.list_secrets("app", mount_point="kv1")["data"]["keys"] == ["db"]
    kv.delete_secret("app/db", mount_point="kv1")
    with pytest.raises(exceptions.InvalidPath):
        kv.read_secret("app/db", mount_point="kv1")
    root.sys.disable_secrets_engine("kv1")


def test_mount_management(root):
    root.sys.enable_secrets_engine("kv-v2", path="team/apps", description="team secrets")
    mounts = root.sys.list_mounted_secrets_engines()["data"]
    assert mounts["team/apps/"]["type"] == "kv"
    assert mounts["team/apps/"]["options"] == {"version": "2"}
    assert mounts["team/apps/"]["description"] == "team secrets"
    # Go clients send Vault's other settings with default values; those are accepted.
    root.sys.tune_mount_configuration("team/apps", default_lease_ttl="1h", max_lease_ttl="2h", force_no_cache=False)
    with pytest.raises(exceptions.InvalidRequest, match="not supported"):
        root.sys.tune_mount_configuration("team/apps", listing_visibility="unauth")
    tuned = root.sys.read_mount_configuration("team/apps")["data"]
    assert (tuned["default_lease_ttl"], tuned["max_lease_ttl"]) == (3600, 7200)
    root.secrets.kv.v2.create_or_update_secret("x", {"a": "b"}, mount_point="team/apps")
    with pytest.raises(exceptions.InvalidRequest, match="already in use"):
        root.sys.enable_secrets_engine("kv", path="team/apps/nested")
    with pytest.raises(exceptions.InvalidRequest, match="already in use"):
        root.sys.enable_secrets_engine("kv", path="team")
    with pytest.raises(exceptions.InvalidRequest):
        root.sys.enable_secrets_engine("kv", path="sys/mine")
    # hvac sends the KV version as a number; Vault takes it, and so does coffer.
    root.sys.enable_secrets_engine("kv", path="team/v1", options={"version": 1}, config={"options": None})
    assert root.sys.list_mounted_secrets_engines()["data"]["team/v1/"]["options"] == {"version": "1"}
    # A move keeps the data (it stays under the mount's id).
    root.secrets.kv.v1.create_or_update_secret("kept", {"a": "b"}, mount_point="team/v1")
    moved = root.sys.move_backend("team/v1", "team/moved")["data"]
    status = root.read(f"sys/remount/status/{moved['migration_id']}")["data"]["migration_info"]
    assert (status["source_mount"], status["target_mount"], status["status"]) == ("team/v1/", "team/moved/", "success")
    assert root.secrets.kv.v1.read_secret("kept", mount_point="team/moved")["data"] == {"a": "b"}
    with pytest.raises(exceptions.InvalidRequest, match="no matching mount"):
        root.sys.move_backend("team/v1", "team/elsewhere")
    with pytest.raises(exceptions.InvalidRequest):
        root.sys.enable_secrets_engine("no-such-engine", path="other")
    root.sys.disable_secrets_engine("team/apps")
    assert "team/apps/" not in root.sys.list_mounted_secrets_engines()["data"]
    # Remounting at the same path does not bring old data back.
    root.sys.enable_secrets_engine("kv-v2", path="team/apps")
    with pytest.raises(exceptions.InvalidPath):
        root.secrets.kv.v2.read_secret_version("x", mount_point="team/apps", raise_on_deleted_version=True)
    with pytest.raises(exceptions.InvalidPath):
        root.adapter.get("/v1/no-such-mount/x")
