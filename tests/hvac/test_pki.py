"""hvac's PKI calls against coffer's `pki` engine, checked with openssl and a
real TLS handshake (Python's ssl module on loopback)."""

import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest
from hvac import exceptions


def openssl(*args, stdin=None):
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, input=stdin, timeout=60)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def pki(root):
    root.sys.enable_secrets_engine("pki", path="pki", config={"max_lease_ttl": "87600h"})
    yield root
    root.sys.disable_secrets_engine("pki")


def write(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")
    return path


def test_a_root_ca_issues_leaf_certificates_openssl_verifies(dev_server, pki):
    # No CA yet: a clear 400, not a 500.
    pki.secrets.pki.create_or_update_role("web", {"allowed_domains": "example.com", "allow_subdomains": True})
    with pytest.raises(exceptions.InvalidRequest, match="no default issuer currently configured"):
        pki.secrets.pki.generate_certificate("web", "www.example.com")

    pki.secrets.pki.set_urls({
        "issuing_certificates": ["http://127.0.0.1:8200/v1/pki/ca"],
        "crl_distribution_points": ["http://127.0.0.1:8200/v1/pki/crl"],
    })
    root = pki.secrets.pki.generate_root(
        "internal", "coffer test root", extra_params={"key_type": "ec", "ttl": "87600h", "issuer_name": "root-2026"}
    )["data"]
    assert "private_key" not in root
    assert root["issuing_ca"] == root["certificate"]
    assert len(root["serial_number"].split(":")) == 20
    exported = pki.secrets.pki.generate_root("exported", "second root", extra_params={"key_type": "ed25519"})["data"]
    assert exported["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert exported["private_key_type"] == "ed25519"
    issuers = pki.secrets.pki.list_issuers()["data"]
    assert len(issuers["keys"]) == 2
    assert issuers["key_info"][root["issuer_id"]]["is_default"] is True
    assert pki.secrets.pki.read_issuer("root-2026")["data"]["issuer_id"] == root["issuer_id"]

    role = pki.secrets.pki.create_or_update_role(
        "web",
        {"allowed_domains": "example.com", "allow_subdomains": True, "max_ttl": "72h", "key_type": "ec",
         "organization": "Coffer Tests"},
    )["data"]
    assert (role["max_ttl"], role["key_bits"], role["allow_localhost"]) == (259200, 256, True)
    issued = pki.secrets.pki.generate_certificate(
        "web", "www.example.com", extra_params={"alt_names": "api.example.com", "ip_sans": "127.0.0.1", "ttl": "100h"}
    )
    assert issued["warnings"] == ['TTL "100h0m0s" is longer than permitted maxTTL "72h0m0s", so maxTTL is being used']
    leaf = issued["data"]
    assert leaf["issuing_ca"] == root["certificate"].strip()
    assert leaf["ca_chain"] == [root["certificate"].strip()]
    assert leaf["private_key_type"] == "ec"
    assert leaf["expiration"] - leaf["not_before"] == 72 * 3600 + 30

    with tempfile.TemporaryDirectory() as directory:
        ca = write(directory, "ca.pem", root["certificate"])
        cert = write(directory, "leaf.pem", leaf["certificate"])
        key = write(directory, "leaf.key", leaf["private_key"])
        code, out = openssl("verify", "-CAfile", ca, cert)
        assert code == 0 and "OK" in out, out
        code, text = openssl("x509", "-in", cert, "-noout", "-text")
        assert code == 0, text
        for expected in (
            "DNS:www.example.com", "DNS:api.example.com", "IP Address:127.0.0.1",
            "TLS Web Server Authentication", "TLS Web Client Authentication",
            "Digital Signature", "Key Agreement", "CA Issuers - URI:http://127.0.0.1:8200/v1/pki/ca",
            "URI:http://127.0.0.1:8200/v1/pki/crl", "O = Coffer Tests", "CA:FALSE",
        ):
            assert expected in text, expected
        code, modulus = openssl("pkey", "-in", key, "-pubout")
        code2, from_cert = openssl("x509", "-in", cert, "-noout", "-pubkey")
        assert code == 0 and code2 == 0 and modulus == from_cert, "the key and the certificate match"
        handshake(cert, key, ca, "www.example.com")

    # Stored and listed; the CA is public.
    assert leaf["serial_number"] in pki.secrets.pki.list_certificates()["data"]["keys"]
    read = pki.secrets.pki.read_certificate(leaf["serial_number"].replace(":", "-"))["data"]
    assert read["certificate"].strip() == leaf["certificate"] and read["revocation_time"] == 0
    with urllib.request.urlopen(dev_server.address + "/v1/pki/ca/pem", timeout=10) as answer:
        assert answer.headers["Content-Type"] == "application/pem-certificate-chain"
        assert answer.read().decode() == root["certificate"].strip()
    with urllib.request.urlopen(dev_server.address + "/v1/pki/ca", timeout=10) as answer:
        assert answer.headers["Content-Type"] == "application/pkix-cert"
        der = answer.read()
    assert der[0] == 0x30, "DER starts with a SEQUENCE"
    assert pki.secrets.pki.read_ca_certificate() == root["certificate"].strip()


def test_role_refusals_give_vaults_texts(pki):
    pki.secrets.pki.generate_root("internal", "refusals root", extra_params={"key_type": "ec", "ttl": "8760h"})
    pki.secrets.pki.create_or_update_role("web", {"allowed_domains": ["example.com"], "allow_subdomains": True})
    # A leaf may not outlive its CA (the issuer's leaf_not_after_behavior "err").
    with pytest.raises(exceptions.InvalidRequest, match="that is beyond the expiration of the CA certificate at"):
        pki.write_data("pki/issue/web", data={"common_name": "long.example.com", "ttl": "9000h"})
    for extra, error in (
        ({"common_name": "www.evil.com"}, "common name www.evil.com not allowed by this role"),
        ({"common_name": "example.com"}, "common name example.com not allowed by this role"),
        ({"common_name": "a.example.com", "alt_names": "evil.org"}, "subject alternate name evil.org not allowed by this role"),
        ({"common_name": "a.example.com", "ip_sans": "notanip"}, 'the value "notanip" is not a valid IP address'),
        ({"common_name": ""}, "the common_name field is required"),
    ):
        with pytest.raises(exceptions.InvalidRequest, match=error):
            pki.write_data("pki/issue/web", data=extra)
    with pytest.raises(exceptions.InvalidRequest, match="unknown role: nope"):
        pki.write_data("pki/issue/nope", data={"common_name": "a.example.com"})
    with pytest.raises(exceptions.InvalidRequest, match="unsupported bit length for EC key: 2048"):
        pki.secrets.pki.create_or_update_role("bad", {"key_type": "ec", "key_bits": 2048})
    # cert-manager's string-valued body is accepted.
    issued = pki.write_data(
        "pki/issue/web",
        data={"common_name": "cm.example.com", "alt_names": "", "ip_sans": "", "uri_sans": "", "ttl": "2160h0m0s",
              "exclude_cn_from_sans": "false", "format": "pem_bundle"},
    )
    # pem_bundle as Vault's: the key, the certificate and its issuer; keys
    # are PKCS#1/SEC1 unless private_key_format asks for PKCS#8.
    bundle = issued["data"]["certificate"]
    assert bundle.startswith("-----BEGIN RSA PRIVATE KEY-----") and bundle.count("BEGIN CERTIFICATE") == 2
    assert issued["data"]["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    pkcs8 = pki.write_data("pki/issue/web", data={"common_name": "p8.example.com", "private_key_format": "pkcs8"})
    assert pkcs8["data"]["private_key"].startswith("-----BEGIN PRIVATE KEY-----")


def handshake(cert, key, ca, name, client_cert=None, client_key=None):
    """A TLS 1.3 handshake between a server holding `cert` and a client that
    trusts only `ca` and checks `name`; with `client_cert`, the server asks
    for it and checks it against `ca` too."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=ca)
    if client_cert:
        server.verify_mode = ssl.CERT_REQUIRED
        server.load_verify_locations(cafile=ca)
        client.load_cert_chain(client_cert, client_key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        accepted = {}

        def serve():
            connection, _ = listener.accept()
            with server.wrap_socket(connection, server_side=True) as tls:
                accepted["data"] = tls.recv(5)
                tls.sendall(b"pong!")

        thread = threading.Thread(target=serve)
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client.wrap_socket(raw, server_hostname=name) as tls:
                tls.sendall(b"ping!")
                assert tls.recv(5) == b"pong!"
                assert tls.getpeercert()["subject"][-1][0] == ("commonName", name)
        thread.join(timeout=10)
    assert accepted["data"] == b"ping!"


def test_an_intermediate_signs_what_cert_manager_sends(dev_server, root):
    root.sys.enable_secrets_engine("pki", path="pki", config={"max_lease_ttl": "87600h"})
    root.sys.enable_secrets_engine("pki", path="pki_int", config={"max_lease_ttl": "43800h"})
    try:
        ca = root.secrets.pki.generate_root("internal", "coffer root", extra_params={"key_type": "ec"})["data"]
        csr = root.secrets.pki.generate_intermediate(
            "internal", "coffer intermediate", extra_params={"key_type": "ec"}, mount_point="pki_int"
        )["data"]["csr"]
        assert csr.startswith("-----BEGIN CERTIFICATE REQUEST-----")
        signed = root.secrets.pki.sign_intermediate(
            csr, "coffer intermediate", extra_params={"format": "pem_bundle", "ttl": "43800h"}
        )["data"]
        assert signed["certificate"].count("BEGIN CERTIFICATE") == 2
        assert len(signed["ca_chain"]) == 2
        imported = root.secrets.pki.set_signed_intermediate(signed["certificate"], mount_point="pki_int")["data"]
        assert len(imported["imported_issuers"]) == 1
        again = root.secrets.pki.set_signed_intermediate(signed["certificate"], mount_point="pki_int")["data"]
        assert again["existing_issuers"] == imported["imported_issuers"], "importing again changes nothing"
        root.secrets.pki.create_or_update_role(
            "svc",
            {"allowed_domains": "example.com", "allow_subdomains": True, "key_type": "ec", "max_ttl": "720h"},
            mount_point="pki_int",
        )
        with tempfile.TemporaryDirectory() as directory:
            key = os.path.join(directory, "svc.key")
            request = os.path.join(directory, "svc.csr")
            code, out = openssl(
                "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", request, "-subj", "/O=Verbatim Org/CN=svc.example.com",
                "-addext", "subjectAltName=DNS:svc.example.com,DNS:alt.example.com",
            )
            assert code == 0, out
            with open(request) as handle:
                csr_pem = handle.read()
            # cert-manager's body: every value a string, empty ones included.
            answer = root.write_data("pki_int/sign/svc", data={
                "common_name": "svc.example.com", "alt_names": "svc.example.com", "ip_sans": "", "uri_sans": "",
                "ttl": "2160h0m0s", "csr": csr_pem, "exclude_cn_from_sans": "false",
            })
            data = answer["data"]
            assert len(data["ca_chain"]) == 2
            intermediate = signed["certificate"].split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----"
            assert data["issuing_ca"] == intermediate.strip() == data["ca_chain"][0]
            assert data["ca_chain"][1] == ca["certificate"].strip()
            assert any("maxTTL" in warning for warning in answer["warnings"])
            assert any("use_csr_common_name" in warning for warning in answer["warnings"])
            root_pem = write(directory, "root.pem", ca["certificate"])
            int_pem = write(directory, "int.pem", data["issuing_ca"])
            leaf_pem = write(directory, "svc.pem", data["certificate"])
            code, out = openssl("verify", "-CAfile", root_pem, "-untrusted", int_pem, leaf_pem)
            assert code == 0 and "OK" in out, out
            code, text = openssl("x509", "-in", leaf_pem, "-noout", "-text")
            assert "DNS:alt.example.com" in text and "O = Verbatim Org" not in text, text

            # Mutual TLS with the intermediate chain: the server and the client
            # each send leaf + intermediate; each trusts only the root.
            server_chain = write(directory, "server-chain.pem", data["certificate"] + "\n" + data["issuing_ca"])
            client = root.secrets.pki.generate_certificate(
                "svc", "client.example.com", extra_params={"ttl": "1h"}, mount_point="pki_int"
            )["data"]
            client_chain = write(directory, "client-chain.pem", client["certificate"] + "\n" + client["issuing_ca"])
            client_key = write(directory, "client.key", client["private_key"])
            handshake(server_chain, key, root_pem, "svc.example.com", client_chain, client_key)

            verbatim = root.write_data("pki_int/sign-verbatim", data={"csr": csr_pem, "ttl": "1h"})["data"]
            code, text = openssl("x509", "-noout", "-subject", stdin=verbatim["certificate"])
            assert "O = Verbatim Org" in text, text

            code, out = openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key + ".rsa",
                                "-out", request + ".rsa", "-subj", "/CN=rsa.example.com")
            assert code == 0, out
            with open(request + ".rsa") as handle:
                rsa_csr = handle.read()
        with pytest.raises(exceptions.InvalidRequest, match="role requires keys of type ec"):
            root.write_data("pki_int/sign/svc", data={"csr": rsa_csr})
        with pytest.raises(exceptions.InvalidRequest, match="csr contains no data"):
            root.write_data("pki_int/sign/svc", data={"csr": "junk", "common_name": "a.example.com"})
    finally:
        root.sys.disable_secrets_engine("pki_int")
        root.sys.disable_secrets_engine("pki")


def crl_text(dev_server, ca_path):
    with urllib.request.urlopen(dev_server.address + "/v1/pki/crl", timeout=10) as answer:
        assert answer.headers["Content-Type"] == "application/pkix-crl"
        der = answer.read()
    with tempfile.NamedTemporaryFile(suffix=".crl") as handle:
        handle.write(der)
        handle.flush()
        code, text = openssl("crl", "-inform", "DER", "-in", handle.name, "-noout", "-text", "-CAfile", ca_path)
    assert code == 0, text
    assert "verify OK" in text, "the CRL's signature verifies against the CA"
    return text


def test_revocation_is_idempotent_and_lands_in_the_crl(dev_server, pki):
    ca = pki.secrets.pki.generate_root("internal", "revoking root", extra_params={"key_type": "ec"})["data"]
    # Leaves get an hour: a role without a TTL would ask for the mount's default,
    # as long as the root's own and so past it (Vault refuses that too).
    pki.secrets.pki.create_or_update_role("web", {"allow_any_name": True, "key_type": "ec", "ttl": "1h"})
    pki.secrets.pki.create_or_update_role("quiet", {"allow_any_name": True, "key_type": "ec", "no_store": True,
                                                    "ttl": "1h"})
    with tempfile.TemporaryDirectory() as directory:
        ca_path = write(directory, "ca.pem", ca["certificate"])
        text = crl_text(dev_server, ca_path)
        assert "No Revoked Certificates" in text

        leaf = pki.secrets.pki.generate_certificate("web", "a.example.com")["data"]
        serial = leaf["serial_number"]
        first = pki.secrets.pki.revoke_certificate(serial)["data"]
        assert first["state"] == "revoked" and first["revocation_time"] > 0
        again = pki.secrets.pki.revoke_certificate(serial.replace(":", "-"))["data"]
        assert again["revocation_time"] == first["revocation_time"], "revoking again changes nothing"
        read = pki.secrets.pki.read_certificate(serial)["data"]
        assert read["revocation_time"] == first["revocation_time"] and read["issuer_id"] == ca["issuer_id"]
        assert serial in pki.list("pki/certs/revoked")["data"]["keys"]
        text = crl_text(dev_server, ca_path)
        assert serial.replace(":", "").upper() in text
        number = int(text.split("X509v3 CRL Number:")[1].split()[0])
        assert number >= 2

        # A certificate the role did not store: unknown by serial, revocable by PEM.
        quiet = pki.secrets.pki.generate_certificate("quiet", "b.example.com")["data"]
        with pytest.raises(exceptions.InvalidPath):
            pki.secrets.pki.read_certificate(quiet["serial_number"])
        with pytest.raises(exceptions.InvalidRequest, match="not found"):
            pki.secrets.pki.revoke_certificate(quiet["serial_number"])
        by_pem = pki.write_data("pki/revoke", data={"certificate": quiet["certificate"]})["data"]
        assert by_pem["state"] == "revoked"
        assert quiet["serial_number"].replace(":", "").upper() in crl_text(dev_server, ca_path)

        assert pki.read("pki/crl/rotate")["data"] == {"success": True}
        rotated = crl_text(dev_server, ca_path)
        assert int(rotated.split("X509v3 CRL Number:")[1].split()[0]) > number
        with urllib.request.urlopen(dev_server.address + "/v1/pki/crl/pem", timeout=10) as answer:
            assert answer.read().decode().startswith("-----BEGIN X509 CRL-----")

    with pytest.raises(exceptions.InvalidRequest, match="The serial number or certificate to revoke must be provided."):
        pki.write_data("pki/revoke", data={})
    with pytest.raises(exceptions.InvalidRequest, match="certificate with serial aa:bb not found."):
        pki.secrets.pki.revoke_certificate("aa:bb")
    with pytest.raises(exceptions.InvalidRequest, match="is an issuer of this mount"):
        pki.secrets.pki.revoke_certificate(ca["serial_number"])


def test_a_leased_certificate_is_revoked_when_its_lease_ends(dev_server, pki):
    pki.secrets.pki.generate_root("internal", "leasing root", extra_params={"key_type": "ec"})
    pki.secrets.pki.create_or_update_role(
        "leased", {"allow_any_name": True, "key_type": "ec", "generate_lease": True, "no_store": True}
    )
    issued = pki.secrets.pki.generate_certificate("leased", "svc.example.com", extra_params={"ttl": "1h"})
    assert issued["lease_id"].startswith("pki/issue/leased/")
    assert issued["renewable"] is False and 3590 <= issued["lease_duration"] <= 3600
    serial = issued["data"]["serial_number"]
    assert serial not in revoked(pki)
    pki.sys.revoke_lease(issued["lease_id"])
    assert serial in revoked(pki)

    # A short one ends by itself.
    short = pki.secrets.pki.generate_certificate("leased", "short.example.com", extra_params={"ttl": "2s", "format": "der"})
    deadline = time.time() + 15
    while short["data"]["serial_number"] not in revoked(pki):
        assert time.time() < deadline, "the expired lease did not revoke its certificate"
        time.sleep(0.25)


def revoked(pki):
    """The revoked serials (hvac answers an empty LIST with None)."""
    listed = pki.list("pki/certs/revoked")
    return listed["data"]["keys"] if listed else []


def test_an_imported_ca_bundle_issues_certificates(pki):
    with tempfile.TemporaryDirectory() as directory:
        key, cert = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
        code, out = openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", cert, "-days", "30", "-subj", "/CN=imported root",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )
        assert code == 0, out
        with open(key) as handle:
            key_pem = handle.read()
        with open(cert) as handle:
            cert_pem = handle.read()
        assert "BEGIN PRIVATE KEY" in key_pem
        imported = pki.secrets.pki.submit_ca_information(key_pem + cert_pem)["data"]
        assert len(imported["imported_issuers"]) == 1 and len(imported["imported_keys"]) == 1
        again = pki.write_data("pki/issuers/import/bundle", data={"pem_bundle": key_pem + cert_pem})["data"]
        assert again["existing_issuers"] == imported["imported_issuers"] and again["imported_issuers"] is None
        # The same key as SEC1 (`EC PRIVATE KEY`, as Vault exports keys) is recognized as the same key.
        code, sec1 = openssl("ec", "-in", key)
        assert code == 0 and "BEGIN EC PRIVATE KEY" in sec1, sec1
        sec1 = sec1[sec1.index("-----BEGIN EC PRIVATE KEY-----"):]
        third = pki.write_data("pki/issuers/import/bundle", data={"pem_bundle": sec1 + cert_pem})["data"]
        assert third["imported_keys"] is None and third["existing_keys"] == imported["imported_keys"], third
        pki.secrets.pki.create_or_update_role("any", {"allow_any_name": True, "key_type": "ec", "ttl": "1h"})
        leaf = pki.secrets.pki.generate_certificate("any", "imported.example.com")["data"]
        leaf_path = write(directory, "leaf.pem", leaf["certificate"])
        code, out = openssl("verify", "-CAfile", cert, leaf_path)
        assert code == 0 and "OK" in out, out
    with pytest.raises(exceptions.InvalidRequest, match="provided data for import was too short"):
        pki.secrets.pki.submit_ca_information("junk")


def test_tidy_removes_expired_certificates_and_their_revocations(dev_server, pki):
    ca = pki.secrets.pki.generate_root("internal", "tidy root", extra_params={"key_type": "ec"})["data"]
    pki.secrets.pki.create_or_update_role("short", {"allow_any_name": True, "key_type": "ec", "ttl": "2s"})
    pki.secrets.pki.create_or_update_role("long", {"allow_any_name": True, "key_type": "ec", "ttl": "1h"})
    status = pki.read("pki/tidy-status")["data"]
    assert status["state"] == "Inactive" and status["cert_store_deleted_count"] is None

    expired = pki.secrets.pki.generate_certificate("short", "old.example.com")["data"]["serial_number"]
    revoked_old = pki.secrets.pki.generate_certificate("short", "gone.example.com")["data"]["serial_number"]
    kept = pki.secrets.pki.generate_certificate("long", "live.example.com")["data"]["serial_number"]
    revoked_live = pki.secrets.pki.generate_certificate("long", "bad.example.com")["data"]["serial_number"]
    for serial in (revoked_old, revoked_live):
        pki.secrets.pki.revoke_certificate(serial)
    time.sleep(4)  # the short ones expire, and 1 s of safety buffer passes

    # Vault's answers: 202 with a warning; nothing set; a zero buffer.
    nothing = pki.adapter.post("/v1/pki/tidy", json={})
    assert nothing.status_code == 202
    assert "no tidy operations were set" in nothing.json()["warnings"][0]
    with pytest.raises(exceptions.InvalidRequest, match="safety_buffer must be greater than zero"):
        pki.secrets.pki.tidy(extra_params={"tidy_cert_store": True, "safety_buffer": "0s"})
    with pytest.raises(exceptions.InvalidRequest, match="tidy_cert_store"):
        pki.secrets.pki.tidy(extra_params={"tidy_cert_store": "yes"})

    started = pki.adapter.post("/v1/pki/tidy", json={
        "tidy_cert_store": True, "tidy_revoked_certs": True, "safety_buffer": "1s"})
    assert started.status_code == 202 and "Tidy operation successfully started" in started.json()["warnings"][0]
    status = pki.read("pki/tidy-status")["data"]
    assert status["state"] == "Finished", status
    assert status["cert_store_deleted_count"] == 1 and status["revoked_cert_deleted_count"] == 1, status
    assert status["tidy_cert_store"] is True and status["safety_buffer"] == 1
    assert status["time_finished"] >= status["time_started"]

    stored = pki.list("pki/certs")["data"]["keys"]
    assert kept in stored and revoked_live in stored and ca["serial_number"] in stored
    assert expired not in stored and revoked_old not in stored
    assert revoked(pki) == [revoked_live]
    with tempfile.TemporaryDirectory() as directory:
        text = crl_text(dev_server, write(directory, "ca.pem", ca["certificate"]))
    assert revoked_live.replace(":", "").upper() in text
    assert revoked_old.replace(":", "").upper() not in text, "the CRL was rebuilt without it"


def test_private_keys_are_hashed_in_the_audit_log(dev_server, pki):
    log = os.path.join(dev_server.workspace.name, "pki-audit.log")
    pki.sys.enable_audit_device("file", path="pki-file", options={"file_path": log})
    try:
        pki.secrets.pki.generate_root("internal", "audited root", extra_params={"key_type": "ec"})
        pki.secrets.pki.create_or_update_role("web", {"allow_any_name": True, "key_type": "ec", "ttl": "1h"})
        issued = pki.secrets.pki.generate_certificate("web", "audited.example.com")["data"]
        key_body = "".join(issued["private_key"].strip().splitlines()[1:-1])
        deadline = time.monotonic() + 5
        while True:
            with open(log) as handle:
                text = handle.read()
            entries = [json.loads(line) for line in text.splitlines()]
            answers = [entry for entry in entries if entry["type"] == "response"
                       and entry["request"]["path"] == "pki/issue/web"]
            if answers or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert answers, "no response entry for the issue"
        data = answers[0]["response"]["data"]
        assert data["private_key"] == pki.sys.calculate_hash("pki-file", issued["private_key"])["data"]["hash"]
        assert data["private_key"].startswith("hmac-sha256:")
        assert key_body[:40] not in text and "PRIVATE KEY" not in text
    finally:
        pki.sys.disable_audit_device("pki-file")


def as_json(answer):
    """hvac's adapter answers a dict, or a Response for some statuses."""
    return answer if isinstance(answer, dict) else answer.json()


def test_issuers_are_renamed_tuned_and_deleted(pki):
    root = pki.secrets.pki.generate_root("internal", "short root", extra_params={"key_type": "ec", "ttl": "2h"})["data"]
    pki.secrets.pki.create_or_update_role("web", {"allow_any_name": True, "key_type": "ec", "ttl": "1h"})
    with pytest.raises(exceptions.InvalidRequest, match="beyond the expiration of the CA certificate"):
        pki.secrets.pki.generate_certificate("web", "a.example.com", extra_params={"ttl": "3h"})

    updated = pki.write_data("pki/issuer/" + root["issuer_id"], data={
        "issuer_name": "short", "leaf_not_after_behavior": "truncate",
        "issuing_certificates": ["http://127.0.0.1:8200/v1/pki/issuer/short/der"]})["data"]
    assert updated["issuer_name"] == "short" and updated["leaf_not_after_behavior"] == "truncate"
    assert updated["issuing_certificates"] == ["http://127.0.0.1:8200/v1/pki/issuer/short/der"]
    assert updated["ocsp_servers"] is None
    assert pki.secrets.pki.read_issuer("short")["data"] == updated
    cut = pki.secrets.pki.generate_certificate("web", "a.example.com", extra_params={"ttl": "3h"})["data"]
    assert cut["expiration"] == root["expiration"], "truncated at the issuer's notAfter"
    code, text = openssl("x509", "-noout", "-text", stdin=cut["certificate"])
    assert code == 0 and "CA Issuers - URI:http://127.0.0.1:8200/v1/pki/issuer/short/der" in text, text

    for body, error in (
        ({"leaf_not_after_behavior": "bogus"}, "Possible values are `err`, `truncate`, and `permit`."),
        ({"issuer_name": "bad name!"}, "issuer name contained invalid characters"),
        ({"ocsp_servers": ["not a url"]},
         "invalid URL found in Authority Information Access \\(AIA\\) parameter ocsp_servers: not a url"),
    ):
        with pytest.raises(exceptions.InvalidRequest, match=error):
            pki.write_data("pki/issuer/short", data=body)
    with pytest.raises(exceptions.InvalidPath, match="unable to find PKI issuer for reference: nope"):
        pki.write_data("pki/issuer/nope", data={"issuer_name": "x"})
    with pytest.raises(exceptions.InvalidRequest, match="parameter crl_distribution_points: ldap:foo"):
        pki.secrets.pki.set_urls({"crl_distribution_points": ["ldap:foo"]})

    pki.write_data("pki/issuer/short", data={"leaf_not_after_behavior": "permit"})
    long = pki.secrets.pki.generate_certificate("web", "b.example.com", extra_params={"ttl": "3h"})["data"]
    assert long["expiration"] > root["expiration"]

    second = pki.secrets.pki.generate_root("internal", "second", extra_params={"key_type": "ec", "issuer_name": "second"})
    deleted = as_json(pki.adapter.delete("/v1/pki/issuer/short"))
    assert "this was configured as the default issuer" in deleted["warnings"][0], deleted
    assert pki.read("pki/config/issuers")["data"]["default"] == ""
    with pytest.raises(exceptions.InvalidPath):
        pki.secrets.pki.read_issuer("short")
    assert as_json(pki.adapter.delete("/v1/pki/issuer/short"))["warnings"] is None, "deleting again succeeds"
    assert [key for key in pki.secrets.pki.list_issuers()["data"]["keys"]] == [second["data"]["issuer_id"]]

    everything = as_json(pki.adapter.delete("/v1/pki/root"))
    assert "DELETE /root deletes all keys and issuers" in everything["warnings"][0]
    assert pki.list("pki/issuers") is None
    with pytest.raises(exceptions.InvalidRequest, match="no default issuer currently configured"):
        pki.secrets.pki.generate_certificate("web", "c.example.com")
