"""The .deb under a real systemd: a Debian 12 root (debootstrap, kept in
/var/tmp/coffer-nspawn-root between runs) booted with systemd-nspawn, the
package installed, the unit started by systemd itself (its syscall filter,
capabilities, no_new_privs, Type=notify), initialized and unsealed, and a
secret read through /secrets from outside the container: through
/proc/<its PID 1>/root, which sees the service's mount only because the unit
makes no private mount namespace. Needs root."""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOTFS = Path(os.environ.get("COFFER_NSPAWN_ROOT", "/var/tmp/coffer-nspawn-root"))
MIRROR = "http://deb.debian.org/debian"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="boots a container: needs root")


@pytest.fixture(scope="module")
def rootfs():
    complete = ROOTFS / ".coffer-complete"
    if not complete.exists():
        shutil.rmtree(ROOTFS, ignore_errors=True)
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=systemd,systemd-sysv,dbus,fuse3",
             "bookworm", str(ROOTFS), MIRROR],
            capture_output=True, text=True, check=False,
        )
        output = result.stdout + result.stderr
        if result.returncode != 0 and ("Failed getting release file" in output
                                       or "Couldn't download" in output):
            pytest.skip(f"no Debian mirror to build the container from: {output[-300:]}")
        assert result.returncode == 0, output[-2000:]
        complete.touch()
    return ROOTFS


def container_init(nspawn_pid, timeout=30):
    """The host pid of the container's PID 1 (a descendant of systemd-nspawn)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
            nspid = fields.get("NSpid", "").split()
            if len(nspid) > 1 and nspid[-1] == "1" and descends_from(int(entry.name), nspawn_pid):
                return int(entry.name)
        time.sleep(0.1)
    pytest.fail("the container's init did not start")


def descends_from(pid, ancestor):
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        pid = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("PPid:")))
    return False


def test_the_unit_under_systemd_serves_secrets_the_host_side_can_read(
        rootfs, packages, fuse_device_for_services, tmp_path):
    log = open(tmp_path / "container.log", "w+")
    container = subprocess.Popen(
        ["systemd-nspawn", "--directory", str(rootfs), "--ephemeral", "--register=no",
         "--keep-unit", "--boot", "--private-network", "--bind=/dev/fuse",
         # nspawn's default bounding set lacks CAP_IPC_LOCK, which hosts have.
         "--capability=CAP_IPC_LOCK",
         f"--bind-ro={packages['deb']}:/root/coffer.deb"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        init = container_init(container.pid)

        def inside(*command, stdin=None, check=True):
            result = subprocess.run(["nsenter", "-t", str(init), "-a", *command],
                                    input=stdin, capture_output=True, text=True, check=False)
            if check:
                assert result.returncode == 0, (command, result.stdout, result.stderr)
            return result.stdout

        def show(*properties):
            output = inside("systemctl", "show", "coffer", *(f"--property={p}" for p in properties))
            return dict(line.split("=", 1) for line in output.splitlines())

        deadline = time.monotonic() + 60
        while inside("systemctl", "is-system-running", check=False).strip() not in (
                "running", "degraded"):
            assert time.monotonic() < deadline, log.name
            time.sleep(0.2)

        inside("env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "-i", "/root/coffer.deb")
        inside("systemctl", "start", "coffer")  # returns at READY=1 (Type=notify)
        state = show("ActiveState", "StatusText", "InactiveExitTimestampMonotonic",
                     "ActiveEnterTimestampMonotonic")
        assert state["ActiveState"] == "active", state
        assert state["StatusText"].startswith("uninitialized"), state
        ready_ms = (int(state["ActiveEnterTimestampMonotonic"])
                    - int(state["InactiveExitTimestampMonotonic"])) / 1000
        print(f"\nsystemctl start to READY=1 under systemd: {ready_ms:.0f} ms")

        init_output = json.loads(inside("coffer", "operator", "init", "-key-shares=1",
                                        "-key-threshold=1", "-format=json"))
        token = init_output["root_token"]
        inside("coffer", "operator", "unseal", stdin=init_output["unseal_keys_b64"][0] + "\n")
        deadline = time.monotonic() + 30
        while not show("StatusText")["StatusText"].endswith("/secrets mounted"):
            assert time.monotonic() < deadline, show("StatusText")
            time.sleep(0.1)

        as_root = ("env", f"COFFER_TOKEN={token}", "coffer")
        inside(*as_root, "secrets", "enable", "-path=secret", "-version=2", "kv")
        inside(*as_root, "kv", "put", "secret/app/db", "password=under-systemd")
        inside(*as_root, "policy", "write", "app", "-",
               stdin='path "secret/data/app/*" { capabilities = ["read"] }\n')
        inside(*as_root, "write", "auth/local/role/host", "bound_uids=0", "policies=app")

        # From outside: the container's PID 1 sees the service's mount.
        secret = Path(f"/proc/{init}/root/secrets/secret/app/db/password")
        assert secret.read_text() == "under-systemd"

        journal = [json.loads(line) for line in
                   inside("journalctl", "-u", "coffer", "-o", "json").splitlines()]
        mounted = [entry for entry in journal if entry.get("MESSAGE") == "mounted /secrets"]
        assert mounted and mounted[0]["COFFER_MOUNT_POINT"] == "/secrets", journal[-5:]
        assert not any(entry.get("TARGET", "").startswith("openraft") for entry in journal)

        inside("systemctl", "stop", "coffer")
        assert show("ActiveState")["ActiveState"] == "inactive"
        stopped = inside("journalctl", "-u", "coffer", "-o", "cat")
        assert "failed" not in stopped.lower(), stopped[-2000:]
        mountinfo = Path(f"/proc/{init}/mountinfo").read_text()
        assert " /secrets " not in mountinfo
    finally:
        container.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to halt
        try:
            container.wait(timeout=60)
        except subprocess.TimeoutExpired:
            container.kill()
            container.wait()
