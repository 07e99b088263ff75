"""A fake Google Cloud KMS on loopback, answering the REST calls Google's own
client makes (get the key, testIamPermissions, encrypt, decrypt; see
../shared/reference/auto-unseal.md) and the OAuth JWT-bearer token grant.
Encryption is real AES-256-GCM under a key the fake keeps in memory, so it can
be stopped and started again on the same port with the same key. Tokens are
checked: a call without one the fake issued gets 401."""

import base64
import http.server
import json
import os
import threading
import urllib.parse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import jwt_tools


class FakeCloudKms:
    def __init__(self, key_name):
        self.key_name = key_name
        self.aead = AESGCM(os.urandom(32))
        self.account_key = jwt_tools.rsa_key()
        self.tokens = set()
        self.requests = []
        self.garbage = False
        self.port = 0
        self.server = None
        self.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def credentials(self):
        """A service account key whose token_uri is this fake."""
        pem = self.account_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {"type": "service_account", "project_id": "coffer-test", "client_email": "coffer@coffer-test.iam",
                "private_key": pem, "token_uri": self.url + "/token"}

    def calls(self, suffix):
        """The requests made to the key with this suffix (`:decrypt`, ...)."""
        return [r for r in self.requests if r["path"].split("?")[0] == f"/v1/{self.key_name}{suffix}"]

    def start(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self, status, document):
                payload = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def error(self, code, status, message):
                self.answer(code, {"error": {"code": code, "message": message, "status": status}})

            def serve(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                fake.requests.append({"method": method, "path": path})
                if path == "/token":
                    form = urllib.parse.parse_qs(body.decode())
                    assertion = form.get("assertion", [""])[0]
                    claims = jwt_tools.verify_rs256(assertion, fake.account_key.public_key())
                    if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"] or claims is None \
                            or claims.get("aud") != fake.url + "/token":
                        return self.error(400, "invalid_grant", "bad assertion")
                    token = "ya29." + base64.urlsafe_b64encode(os.urandom(24)).decode()
                    fake.tokens.add(token)
                    return self.answer(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})
                bearer = self.headers.get("Authorization", "")
                if not bearer.startswith("Bearer ") or bearer[7:] not in fake.tokens:
                    return self.error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
                key_path = "/v1/" + fake.key_name
                if not path.startswith(key_path):
                    return self.error(404, "NOT_FOUND", f"{path[4:]} not found.")
                action = path[len(key_path):]
                request = json.loads(body or b"{}")
                if method == "GET" and action == "":
                    return self.answer(200, {"name": fake.key_name, "purpose": "ENCRYPT_DECRYPT",
                                             "primary": {"name": fake.key_name + "/cryptoKeyVersions/1",
                                                         "state": "ENABLED"}})
                if action == ":testIamPermissions":
                    return self.answer(200, {"permissions": request.get("permissions", [])})
                if action == ":encrypt":
                    nonce = os.urandom(12)
                    plaintext = base64.b64decode(request["plaintext"])
                    ciphertext = nonce + fake.aead.encrypt(nonce, plaintext, fake.key_name.encode())
                    return self.answer(200, {"name": fake.key_name + "/cryptoKeyVersions/1",
                                             "ciphertext": base64.b64encode(ciphertext).decode(),
                                             "ciphertextCrc32c": "0", "protectionLevel": "SOFTWARE"})
                if action == ":decrypt":
                    if fake.garbage:
                        return self.answer(200, {"plaintext": base64.b64encode(os.urandom(32)).decode()})
                    ciphertext = base64.b64decode(request["ciphertext"])
                    try:
                        plaintext = fake.aead.decrypt(ciphertext[:12], ciphertext[12:], fake.key_name.encode())
                    except Exception:
                        return self.error(400, "INVALID_ARGUMENT", "Decryption failed: the ciphertext is invalid.")
                    return self.answer(200, {"plaintext": base64.b64encode(plaintext).decode(), "usedPrimary": True})
                return self.error(404, "NOT_FOUND", "no such method")

            def do_GET(self):
                self.serve("GET")

            def do_POST(self):
                self.serve("POST")

            def log_message(self, *args):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
