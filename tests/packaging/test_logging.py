"""What an operator's log shows: coffer's own events, one line each, with
dependencies kept at warn; the journal's structured fields when stderr is the
journal (JOURNAL_STREAM); Vault's JSON lines with log_format json."""

import json
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COFFER = os.environ.get("COFFER_BIN", "/var/tmp/coffer-target/debug/coffer")


def dev_server(*arguments, env=None, stderr=subprocess.PIPE):
    return subprocess.Popen(
        [*arguments, COFFER, "server", "--dev", "--dev-listen", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        env={"PATH": os.environ["PATH"], **(env or {})}, text=True,
    )


def json_lines(*options):
    """The dev server's stderr, as JSON objects, until its `ready` event."""
    server = subprocess.Popen(
        [COFFER, "server", "--dev", "--dev-listen", "127.0.0.1:0", "--log-format", "json",
         *options],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={"PATH": os.environ["PATH"]},
    )
    lines = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = server.stderr.readline()
            assert line, f"stderr closed; so far: {lines}"
            lines.append(json.loads(line))
            if lines[-1]["@message"] == "ready":
                return lines
        pytest.fail(f"no ready event: {lines}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)


def test_json_lines_carry_vaults_keys_and_dependencies_stay_at_warn():
    lines = json_lines()
    for line in lines:
        assert {"@level", "@message", "@module", "@timestamp"} <= line.keys(), line
        assert line["@timestamp"].endswith("Z")
        assert line["@module"].startswith("coffer") or line["@level"] in ("warn", "error"), line
    ready = lines[-1]
    assert ready["@level"] == "info" and ready["@module"] == "coffer_daemon::service"
    assert ready["status"] == "unsealed, active node"
    assert isinstance(ready["after_ms"], int)


def test_log_level_debug_opens_the_dependencies_up():
    lines = json_lines("--log-level", "debug")
    assert any(line["@module"].startswith("openraft") for line in lines), lines[:5]


def journal_entries(data):
    """The journal's native protocol: KEY=value lines, or KEY, a 64-bit
    little-endian length and the bytes, for values with newlines."""
    entry = {}
    while data:
        line, _, rest = data.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            entry[key.decode()] = value.decode()
            data = rest
        else:
            (size,) = struct.unpack("<Q", rest[:8])
            entry[line.decode()] = rest[8:8 + size].decode()
            data = rest[8 + size + 1:]
    return entry


@pytest.mark.skipif(os.geteuid() != 0, reason="a private mount namespace needs root")
def test_with_stderr_on_the_journal_events_carry_its_fields(tmp_path):
    # coffer runs in its own mount namespace with a tmpfs over /run/systemd,
    # where this test binds the journal's socket (through /proc/PID/root).
    stderr = open(tmp_path / "stderr", "w+")
    stat = os.fstat(stderr.fileno())
    script = ("mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/journal && "
              "while [ ! -S /run/systemd/journal/socket ]; do sleep 0.02; done && exec \"$@\"")
    server = dev_server("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                        env={"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}, stderr=stderr)
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        directory = Path(f"/proc/{server.pid}/root/run/systemd/journal")
        deadline = time.monotonic() + 10
        while not directory.is_dir():
            assert time.monotonic() < deadline and server.poll() is None, "no namespace"
            time.sleep(0.02)
        journal.bind(str(directory / "socket"))
        journal.settimeout(30)
        entries = []
        while not any(entry.get("MESSAGE") == "ready" for entry in entries):
            entries.append(journal_entries(journal.recv(65536)))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        journal.close()

    ready = next(entry for entry in entries if entry.get("MESSAGE") == "ready")
    assert ready["PRIORITY"] == "5", "info is the journal's notice"
    assert ready["SYSLOG_IDENTIFIER"] == "coffer"
    assert ready["TARGET"] == "coffer_daemon::service"
    assert ready["COFFER_STATUS"] == "unsealed, active node"
    assert "CODE_FILE" in ready and "CODE_LINE" in ready
    assert not any(entry.get("TARGET", "").startswith("openraft") for entry in entries)
    stderr.seek(0)
    assert stderr.read() == "", "nothing is written twice"
