"""hvac's quota calls and rate limits as clients meet them: 429 with
Retry-After for a client over its rate, and nothing for another client."""

import http.client
import json
import urllib.parse

import pytest
from hvac import exceptions

from test_bao_cli import Cli


def get(server, path, source="127.0.0.1", token="root"):
    """GET `path` from the loopback address `source`: the status, headers and body."""
    url = urllib.parse.urlparse(server.address)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30, source_address=(source, 0))
    try:
        connection.request("GET", "/v1/" + path, headers={"X-Vault-Token": token})
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, json.loads(response.read() or b"null")
    finally:
        connection.close()


@pytest.fixture
def quota_free(root):
    yield root
    for kind in ("rate-limit", "lease-count"):
        try:
            names = root.adapter.list("/v1/sys/quotas/%s" % kind)["data"]["keys"]
        except exceptions.InvalidPath:
            continue
        for name in names:
            root.adapter.delete("/v1/sys/quotas/%s/%s" % (kind, name))
    root.adapter.post("/v1/sys/quotas/config", json={"rate_limit_exempt_paths": [
        "sys/generate-recovery-token/attempt", "sys/generate-recovery-token/update",
        "sys/generate-root/attempt", "sys/generate-root/update",
        "sys/health", "sys/seal-status", "sys/unseal",
    ]})


def test_a_client_over_its_rate_gets_429s_and_another_client_does_not(dev_server, quota_free):
    root = quota_free
    root.secrets.kv.v2.create_or_update_secret("quota/app", {"k": "v"})
    root.sys.create_or_update_quota(name="kv", rate=3, path="secret/", interval="1h")
    read = root.sys.read_quota("kv")["data"]
    assert (read["rate"], read["path"], read["interval"], read["type"]) == (3, "secret/", 3600, "rate-limit")
    assert root.sys.list_quotas()["data"]["keys"] == ["kv"]

    for _ in range(3):
        assert root.secrets.kv.v2.read_secret_version("quota/app", raise_on_deleted_version=True)["data"]["data"] == {"k": "v"}
    with pytest.raises(exceptions.RateLimitExceeded, match="rate limit quota exceeded"):
        root.secrets.kv.v2.read_secret_version("quota/app", raise_on_deleted_version=True)
    status, headers, body = get(dev_server, "secret/data/quota/app")
    assert status == 429
    assert body == {"errors": ['request path "secret/data/quota/app": rate limit quota exceeded']}
    assert 1 <= int(headers["retry-after"]) <= 1200
    # Another client has its own bucket; other mounts are not covered.
    status, _, body = get(dev_server, "secret/data/quota/app", source="127.0.0.2")
    assert (status, body["data"]["data"]) == (200, {"k": "v"})
    assert root.sys.list_mounted_secrets_engines()["data"]["secret/"]["type"] == "kv"

    root.sys.delete_quota("kv")
    assert root.secrets.kv.v2.read_secret_version("quota/app", raise_on_deleted_version=True)["data"]["data"] == {"k": "v"}
    with pytest.raises(exceptions.InvalidPath):
        root.sys.read_quota("kv")


def test_blocked_clients_wait_the_block_interval_and_headers_show_the_bucket(dev_server, quota_free):
    root = quota_free
    root.write_data("sys/quotas/config", data={"enable_rate_limit_response_headers": True})
    assert root.read("sys/quotas/config")["data"] == {
        "enable_rate_limit_audit_logging": False,
        "enable_rate_limit_response_headers": True,
        "rate_limit_exempt_paths": [],
    }
    root.sys.create_or_update_quota(name="all", rate=2, interval="1h", block_interval="2m")
    status, headers, _ = get(dev_server, "sys/mounts", source="127.0.0.3")
    assert (status, headers["x-ratelimit-limit"], headers["x-ratelimit-remaining"]) == (200, "2", "1")
    get(dev_server, "sys/mounts", source="127.0.0.3")
    status, headers, _ = get(dev_server, "sys/mounts", source="127.0.0.3")
    assert (status, headers["retry-after"]) == (429, "120")
    # sys/quotas is not exempt now (the config was replaced): Vault's rule.
    status, _, _ = get(dev_server, "sys/quotas/config", source="127.0.0.3")
    assert status == 429
    root.sys.delete_quota("all")
    assert get(dev_server, "sys/mounts", source="127.0.0.3")[0] == 200


def test_the_cli_writes_and_reads_quotas(dev_server, quota_free):
    cli = Cli(dev_server)
    out = cli.run("write", "sys/quotas/rate-limit/cli", "rate=10.5", "path=secret", "block_interval=30s")
    assert "Success" in out
    read = cli.json("read", "sys/quotas/rate-limit/cli")["data"]
    assert (read["rate"], read["path"], read["block_interval"], read["interval"]) == (10.5, "secret/", 30, 1)
    out = cli.run("write", "sys/quotas/rate-limit/other", "rate=1", "path=secret/", expect=2)
    assert 'quota rule with similar properties exists under the name "cli"' in out
    out = cli.run("write", "sys/quotas/rate-limit/bad", "rate=1", "path=nowhere/", expect=2)
    assert 'invalid mount path "nowhere/"' in out
    assert cli.json("list", "sys/quotas/rate-limit") == ["cli"]
    cli.run("delete", "sys/quotas/rate-limit/cli")
    out = cli.run("read", "sys/quotas/rate-limit/cli", expect=2)
    assert "No value found" in out
