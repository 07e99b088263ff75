"""hvac's audit calls against coffer: enable a file device, find a secret's
entries by its hash without the log holding the secret, list, disable."""

import json
import os
import time

import hvac
import pytest


def test_enable_hash_list_and_disable_a_file_device(dev_server, root):
    log = os.path.join(dev_server.workspace.name, "hvac-audit.log")
    root.sys.enable_audit_device("file", path="hvac-file", options={"file_path": log})
    devices = root.sys.list_enabled_audit_devices()["data"]
    assert devices["hvac-file/"]["type"] == "file"
    assert devices["hvac-file/"]["options"]["file_path"] == log

    root.secrets.kv.v2.create_or_update_secret(path="audited", secret={"api_key": "hvac-secret-value"})
    root.secrets.kv.v2.read_secret_version(path="audited", raise_on_deleted_version=True)

    # A response's entry is written after the answer, without holding it up.
    deadline = time.monotonic() + 5
    while True:
        with open(log) as handle:
            text = handle.read()
        entries = [json.loads(line) for line in text.splitlines()]
        reads = [
            entry
            for entry in entries
            if entry["type"] == "response"
            and entry["request"]["path"] == "secret/data/audited"
            and entry["request"]["operation"] == "read"
        ]
        if reads or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert reads, "no response entry for the read"
    assert "hvac-secret-value" not in text

    hashed = root.sys.calculate_hash("hvac-file", "hvac-secret-value")["data"]["hash"]
    assert hashed.startswith("hmac-sha256:")
    assert hashed in text

    with pytest.raises(hvac.exceptions.InvalidRequest, match="unknown audit backend"):
        root.sys.calculate_hash("no-such-device", "x")
    root.sys.disable_audit_device("hvac-file")
    assert "hvac-file/" not in root.sys.list_enabled_audit_devices()["data"]


def test_bad_devices_are_refused(root):
    with pytest.raises(hvac.exceptions.InvalidRequest) as refused:
        root.sys.enable_audit_device("kafka", path="bad")
    assert "unknown audit device type" in str(refused.value)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        root.sys.enable_audit_device("file", path="bad", options={"file_path": "/proc/none/x.log"})
    assert "bad/" not in root.sys.list_enabled_audit_devices()["data"]
