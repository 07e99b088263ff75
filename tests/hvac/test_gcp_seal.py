"""seal "gcpckms" against a fake Cloud KMS on loopback (tests/hvac/gcp_kms.py),
driven through hvac: the key checked at start, init with recovery keys, a
restart that unseals with one decrypt, a KMS that is down (sealed, 503,
retried until it is back) and a KMS that answers garbage (sealed, the
envelope's authentication catches it)."""

import json
import time

import pytest
import requests

from gcp_kms import FakeCloudKms

KEY = "projects/coffer-test/locations/global/keyRings/coffer/cryptoKeys/unseal"


def wait(check, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def sealed(server):
    return server.client().sys.read_seal_status()["sealed"]


def seal_block(kms, tmp_path):
    """A `seal "gcpckms"` block for the fake, with a service account key file."""
    credentials = tmp_path / "sa.json"
    credentials.write_text(json.dumps(kms.credentials()))
    return f'''seal "gcpckms" {{
  project     = "coffer-test"
  region      = "global"
  key_ring    = "coffer"
  crypto_key  = "unseal"
  credentials = "{credentials}"
  endpoint    = "{kms.url}"
}}
'''


@pytest.fixture
def kms():
    fake = FakeCloudKms(KEY)
    yield fake
    fake.stop()


def test_a_gcpckms_seal_unseals_itself_and_waits_out_a_kms_that_is_down(kms, server_with_config, tmp_path):
    seal = seal_block(kms, tmp_path) + """telemetry {
  unauthenticated_metrics_access = true
}
"""
    server = server_with_config(seal)
    client = server.client()
    status = client.sys.read_seal_status()
    assert (status["type"], status["recovery_seal"], status["initialized"]) == ("gcpckms", True, False)
    # The key and the permissions are checked before init.
    wait(lambda: kms.calls(":testIamPermissions"), "the start-up key check")
    assert kms.calls("")

    init = client.sys.initialize(recovery_shares=3, recovery_threshold=2)
    assert init["keys"] == [] and len(init["recovery_keys_base64"]) == 3
    assert len(kms.calls(":encrypt")) == 2  # the unseal key and the recovery key
    root = server.client(init["root_token"])
    root.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    root.secrets.kv.v2.create_or_update_secret("app", secret={"password": "gcp"})

    # A restart: unsealed with one decrypt, no operator.
    decrypts = len(kms.calls(":decrypt"))
    server.restart()
    wait(lambda: not sealed(server), "the node to unseal itself")
    assert len(kms.calls(":decrypt")) == decrypts + 1
    root = server.client(init["root_token"])
    assert root.secrets.kv.v2.read_secret_version("app", raise_on_deleted_version=True)["data"]["data"] == {
        "password": "gcp"}

    # The KMS is down: sealed (health 503), retried, unsealed once it is back.
    kms.stop()
    server.restart()
    wait(lambda: server.log_text().count("failed to unseal with the seal") >= 1, "a failed attempt", 30)
    assert sealed(server)
    health = server.client().sys.read_health_status(method="GET")
    assert health.status_code == 503
    # The metrics show the last KMS error while the node is sealed.
    metrics = requests.get(server.address + "/v1/sys/metrics?format=prometheus", timeout=10).text
    assert 'coffer_seal_kms_last_error{seal="gcpckms",error="gcpckms seal: getting a token' in metrics, metrics
    assert "coffer_seal_kms_last_call_seconds" in metrics
    kms.start()
    wait(lambda: not sealed(server), "the node to unseal once the KMS is back", 60)

    # The KMS answers garbage: the envelope does not open; sealed until the
    # KMS is right again.
    kms.garbage = True
    server.restart()
    wait(lambda: "message authentication failed" in server.log_text(), "the garbage to be caught", 30)
    assert sealed(server)
    kms.garbage = False
    wait(lambda: not sealed(server), "the node to unseal once the KMS is right", 60)
    log = server.log_text()
    assert init["root_token"] not in log
    assert all(key not in log for key in init["recovery_keys_base64"])


def test_a_host_without_ca_certificates_gets_an_error_not_a_panic(kms, server_with_config, tmp_path):
    """No system CA roots (a minimal image; here SSL_CERT_FILE/SSL_CERT_DIR
    point at nothing): the server starts, stays sealed and says why at each
    attempt, instead of panicking while building its HTTP client."""
    seal = seal_block(kms, tmp_path)
    server = server_with_config(seal, env={"SSL_CERT_FILE": "/dev/null", "SSL_CERT_DIR": "/nonexistent"})
    status = server.client().sys.read_seal_status()
    assert (status["type"], status["sealed"]) == ("gcpckms", True)
    wait(lambda: "No CA certificates were loaded" in server.log_text(), "the reason in the log")
    assert "panicked" not in server.log_text()
    assert server.process.poll() is None, "still serving"
    assert kms.requests == [], "nothing reached the KMS"
