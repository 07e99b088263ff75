"""Fixtures for the gRPC tests: a dev server with every door (HTTP and gRPC on
loopback TCP, both on one Unix socket), started from the real binary."""

import os
import subprocess
import sys
import tempfile
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "hvac"))

BINARY = os.environ.get(
    "COFFER_BIN",
    os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "coffer"),
)


class Server:
    def __init__(self):
        self.workspace = tempfile.TemporaryDirectory(prefix="coffer-grpc-")
        self.socket = os.path.join(self.workspace.name, "coffer.sock")
        args = [
            "server", "--dev", "--dev-root-token", "root", "--dev-listen", "127.0.0.1:0",
            "--dev-grpc-listen", "127.0.0.1:0", "--dev-unix", self.socket,
            "--data-dir", os.path.join(self.workspace.name, "data"),
        ]
        self.log = open(os.path.join(self.workspace.name, "server.log"), "w")
        self.process = subprocess.Popen(
            [BINARY, *args], stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, text=True
        )
        self.address = self.grpc = None
        for line in self.process.stdout:
            line = line.strip()
            if line.startswith("Api Address: "):
                self.address = line.split(": ", 1)[1]
            elif line.startswith("gRPC Address: "):
                self.grpc = line.split(": ", 1)[1]
            if line.startswith("Root Token: "):
                break
        assert self.address and self.grpc, "the server did not print its addresses"
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def log_text(self):
        with open(os.path.join(self.workspace.name, "server.log")) as handle:
            return handle.read()

    def stop(self):
        self.process.kill()
        self.process.wait()
        self.log.close()
        self.workspace.cleanup()


@pytest.fixture(scope="module")
def server():
    running = Server()
    yield running
    running.stop()
