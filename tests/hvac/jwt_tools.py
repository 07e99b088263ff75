"""Signing JWTs and serving keys for the jwt and kubernetes auth tests: RS256
and ES256 tokens signed with python `cryptography`, JWKS documents, a loopback
HTTP(S) server that answers from a table and records what it was asked, and a
self-signed certificate for 127.0.0.1."""

import base64
import datetime
import http.server
import json
import ssl
import tempfile
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def sign(claims, key, alg=None, kid=None):
    """A compact JWS of `claims`; alg "none" gives an unsigned token."""
    alg = alg or ("ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256")
    header = {"alg": alg, "typ": "JWT"}
    if kid:
        header["kid"] = kid
    message = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())).encode()
    if alg == "none":
        return message.decode() + "."
    if alg == "RS256":
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return message.decode() + "." + b64(signature)


def verify_rs256(token, public_key):
    """The claims of an RS256 compact JWS signed by `public_key`, else None."""
    try:
        header, claims, signature = token.split(".")
        if json.loads(base64.urlsafe_b64decode(header + "==")).get("alg") != "RS256":
            return None
        public_key.verify(base64.urlsafe_b64decode(signature + "=="), f"{header}.{claims}".encode(),
                          padding.PKCS1v15(), hashes.SHA256())
        return json.loads(base64.urlsafe_b64decode(claims + "=="))
    except Exception:
        return None


def jwk(key, kid):
    numbers = key.public_key().public_numbers()
    if isinstance(key, rsa.RSAPrivateKey):
        length = (numbers.n.bit_length() + 7) // 8
        return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                "n": b64(numbers.n.to_bytes(length, "big")), "e": b64(numbers.e.to_bytes(3, "big"))}
    return {"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
            "x": b64(numbers.x.to_bytes(32, "big")), "y": b64(numbers.y.to_bytes(32, "big"))}


def self_signed(name="127.0.0.1"):
    """(CA certificate PEM, (server certificate chain PEM, server key PEM))
    for a server at 127.0.0.1: a CA of its own and a leaf it signed (a CA
    certificate cannot serve TLS itself)."""
    import ipaddress
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, leaf_key = ec_key(), ec_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake cluster CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256()))
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(name))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256()))
    pem = lambda certificate: certificate.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
    return pem(ca), (pem(leaf), key_pem)


class Fake:
    """A loopback HTTP(S) server: `answer(method, path, headers, body)` gives
    (status, JSON document); every request is kept in `requests`."""

    def __init__(self, answer, tls=None):
        self.requests = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def handle_one(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.requests.append({"method": method, "path": self.path,
                                      "headers": {key.lower(): value for key, value in self.headers.items()}, "body": body})
                status, document = answer(method, self.path, self.headers, body)
                payload = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self.handle_one("GET")

            def do_POST(self):
                self.handle_one("POST")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls:
            certificate, key = tls
            self.files = tempfile.TemporaryDirectory(prefix="coffer-fake-")
            with open(self.files.name + "/cert.pem", "w") as handle:
                handle.write(certificate)
            with open(self.files.name + "/key.pem", "w") as handle:
                handle.write(key)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.files.name + "/cert.pem", self.files.name + "/key.pem")
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
