"""Fixtures that run the real `coffer` binary for the hvac compatibility tests.

Each server gets its own data directory and a free loopback port (127.0.0.1:0);
its address, root token and unseal key are read from what it prints.
"""

import os
import subprocess
import tempfile
import threading

import hvac
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get(
    "COFFER_BIN",
    os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "coffer"),
)

CONFIG = """
storage "raft" {
  path    = "%(data)s"
  node_id = "n1"
}
listener "tcp" {
  address     = "127.0.0.1:0"
  tls_disable = true
}
listener "unix" {
  address = "%(socket)s"
}
api_addr     = "http://127.0.0.1:8200"
cluster_addr = "http://127.0.0.1:0"
"""


class Server:
    def __init__(self, dev, extra_config="", env=None):
        self.env = None if env is None else {**os.environ, **env}
        self.workspace = tempfile.TemporaryDirectory(prefix="coffer-hvac-")
        data = os.path.join(self.workspace.name, "data")
        self.socket = os.path.join(self.workspace.name, "coffer.sock")
        if dev:
            args = ["server", "--dev", "--dev-root-token", "root", "--dev-listen", "127.0.0.1:0", "--data-dir", data,
                    "--dev-unsafe-allow-api-audit-creation"]
        else:
            config = os.path.join(self.workspace.name, "coffer.hcl")
            with open(config, "w") as handle:
                handle.write(CONFIG % {"data": data, "socket": self.socket} + extra_config)
            args = ["server", "--config", config]
        self.args = args
        self.log_path = os.path.join(self.workspace.name, "server.log")
        self.log = open(self.log_path, "a")
        self._spawn()

    def _spawn(self):
        self.process = subprocess.Popen(
            [BINARY, *self.args], stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, text=True,
            env=self.env,
        )
        self.address = None
        self.unseal_key = None
        for line in self.process.stdout:
            line = line.strip()
            if line.startswith("Api Address: "):
                self.address = line.split(": ", 1)[1]
            elif line.startswith("Unseal Key: "):
                self.unseal_key = line.split(": ", 1)[1]
            if self.address and (line.startswith("Root Token: ") or "operator init" in line
                                 or "operator unseal" in line):
                break
        assert self.address, "the server did not print its address"
        # Keep draining stdout so the server never writes into a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def client(self, token=None):
        # "" rather than None: hvac would otherwise take VAULT_TOKEN or
        # ~/.vault-token (which `bao server -dev` writes) for a tokenless client.
        return hvac.Client(url=self.address, token=token or "", timeout=30)

    def restart(self):
        """Kills the process and starts it again on the same data."""
        self.process.kill()
        self.process.wait()
        self._spawn()

    def log_text(self):
        with open(self.log_path) as handle:
            return handle.read()

    def stop(self):
        self.process.kill()
        self.process.wait()
        self.log.close()
        self.workspace.cleanup()


@pytest.fixture(scope="module")
def dev_server():
    server = Server(dev=True)
    yield server
    server.stop()


@pytest.fixture
def root(dev_server):
    return dev_server.client("root")


@pytest.fixture
def configured_server():
    server = Server(dev=False)
    yield server
    server.stop()


@pytest.fixture
def server_with_config():
    """Starts configured servers with extra configuration text (a `seal`
    block); stops them at the end of the test."""
    servers = []

    def start(extra_config, env=None):
        server = Server(dev=False, extra_config=extra_config, env=env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
