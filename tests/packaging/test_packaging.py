"""The packages as an operator meets them: the unit's hardening, the .deb
installed with dpkg, the server started the way the unit starts it (its user,
capabilities, limits and NOTIFY_SOCKET), upgraded, removed and purged; lintian;
the .rpm's payload, scriptlets and config flags; and the .deb under a real
systemd booted in systemd-nspawn.

Installing needs root (CI runs as root): those tests are skipped otherwise.
The packages are built from the binary the test build already made
(`scripts/package --profile dev`)."""

import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "coffer.service"
API = "http://127.0.0.1:8200"
MARKER = Path("/etc/coffer/.installed-by-coffer-tests")
ROOTFS = Path(os.environ.get("COFFER_NSPAWN_ROOT", "/var/tmp/coffer-nspawn-root"))
MIRROR = "http://deb.debian.org/debian"

# Every option that gives a service its own mount namespace (systemd's
# exec_needs_mount_namespace(), listed in the reference packaging.md): any of
# them hides the /secrets mount from every other process on the host.
PRIVATE_MOUNT_NAMESPACE = {
    "PrivateTmp", "PrivateDevices", "PrivateMounts", "ProtectSystem", "ProtectHome",
    "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
    "ProtectControlGroups", "ProtectProc", "ProcSubset", "PrivateIPC",
    "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "ExecPaths", "NoExecPaths",
    "BindPaths", "BindReadOnlyPaths", "TemporaryFileSystem", "RootDirectory",
    "RootImage", "MountImages", "ExtensionImages", "ExtensionDirectories",
    "LogNamespace", "PrivateNetwork", "NetworkNamespacePath",
    # Also fatal to a visible mount: CAP_SYS_ADMIN only in a user namespace,
    # and DynamicUser's own namespace for its directories.
    "PrivateUsers", "DynamicUser",
}

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="installs packages: needs root")


def unit_options(text):
    """The unit's options: {key: [values]} (a key may repeat)."""
    options = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        options.setdefault(key.strip(), []).append(value.strip())
    return options


def mount_namespace_options(options):
    """The options that would give the service a private mount namespace."""
    found = sorted(key for key in options if key in PRIVATE_MOUNT_NAMESPACE)
    found += [f"MountFlags={v}" for v in options.get("MountFlags", []) if v != "shared"]
    return found


def test_the_unit_makes_no_private_mount_namespace():
    options = unit_options(UNIT.read_text())
    assert mount_namespace_options(options) == []
    # The check sees an option slipped in (it can fail).
    assert mount_namespace_options(unit_options(UNIT.read_text() + "\nProtectSystem=strict\n")) == [
        "ProtectSystem"
    ]
    assert mount_namespace_options(unit_options("[Service]\nMountFlags=slave\n")) == [
        "MountFlags=slave"
    ]
    # And what the issue asks of it.
    assert options["Type"] == ["notify"]
    assert options["LimitCORE"] == ["0"]
    assert options["MemorySwapMax"] == ["0"]
    assert options["NoNewPrivileges"] == ["yes"]
    assert set(options["CapabilityBoundingSet"][0].split()) == {"CAP_SYS_ADMIN", "CAP_IPC_LOCK"}
    assert options["User"] == ["coffer"]


def test_the_unit_scores_at_most_4_0_in_systemd_analyze_security():
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNIT)],
        capture_output=True, text=True, check=False,
    )
    match = re.search(r"Overall exposure level for coffer\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    score = float(match.group(1))
    print(f"\nsystemd-analyze security --offline=yes: {score}")
    assert score <= 4.0


def test_the_syscall_filter_allows_what_the_server_needs():
    """@system-service keeps the calls coffer makes at start (memory locking,
    limits, mounts); the deny list takes none of them back."""
    def expand(groups, seen=None):
        seen = set() if seen is None else seen
        calls = set()
        listing = subprocess.run(
            ["systemd-analyze", "syscall-filter", *groups], capture_output=True, text=True,
            check=True,
        ).stdout
        for line in listing.splitlines():
            name = line.strip()
            if not name or name.startswith("#") or line[0] not in " \t":
                continue
            if name.startswith("@"):
                if name not in seen:
                    seen.add(name)
                    calls |= expand([name], seen)
            else:
                calls.add(name)
        return calls

    options = unit_options(UNIT.read_text())
    allowed = set()
    denied = set()
    for value in options["SystemCallFilter"]:
        if value.startswith("~"):
            denied |= expand(value[1:].split())
        else:
            allowed |= expand(value.split())
    needed = {"mlockall", "prctl", "setrlimit", "prlimit64", "mount", "umount2", "fsync",
              "fdatasync", "pidfd_open", "accept4", "epoll_wait", "getrandom", "statx"}
    assert needed <= allowed - denied, needed - (allowed - denied)


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    out = tmp_path_factory.mktemp("packages")
    for revision in ("1", "2"):
        subprocess.run(
            [str(ROOT / "scripts/package"), "--profile", "dev", "--revision", revision,
             "--out", str(out), "--fast"],
            check=True,
        )
    debs = sorted(out.glob("coffer_*.deb"))
    rpms = sorted(out.glob("coffer-*-1.*.rpm"))
    assert len(debs) == 2 and len(rpms) == 1, list(out.iterdir())
    for package in [*debs, *rpms]:
        print(f"\n{package.name}: {package.stat().st_size / 2**20:.1f} MiB")
    return {"deb": debs[0], "deb_upgrade": debs[1], "rpm": rpms[0]}


@pytest.fixture
def fuse_device_for_services():
    """The kernel makes /dev/fuse 0666; this sandbox makes it 0600, which no
    unprivileged service can open. Opened up for the test, then put back."""
    mode = os.stat("/dev/fuse").st_mode & 0o777
    os.chmod("/dev/fuse", mode | 0o666)
    yield
    os.chmod("/dev/fuse", mode)


def dpkg(*arguments):
    return subprocess.run(
        ["dpkg", *arguments], capture_output=True, text=True, check=False,
        stdin=subprocess.DEVNULL, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def installed_version():
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status} ${Version}", "coffer"],
        capture_output=True, text=True, check=False,
    )
    fields = result.stdout.split()
    return fields[-1] if result.returncode == 0 and "installed" in fields[:3] else None


def api(method, path, body=None, token=None, expect=200):
    request = urllib.request.Request(
        API + "/v1/" + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"X-Vault-Token": token} if token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    assert status == expect, (method, path, status, text)
    return json.loads(text) if text else None


class Started:
    """`coffer` started the way the installed unit starts it: ExecStart as
    User= with AmbientCapabilities=, CapabilityBoundingSet=, NoNewPrivileges=,
    UMask=, LimitCORE=, LimitNOFILE= and RuntimeDirectory=, with NOTIFY_SOCKET
    on a datagram socket this test reads, and a watchdog."""

    def __init__(self, unit, scratch):
        options = {key: values[-1] for key, values in unit_options(unit.read_text()).items()}
        self.options = options
        user = options["User"]
        def caps(key):
            return ",".join("+" + cap.lower().removeprefix("cap_") for cap in options[key].split())
        runtime = Path("/run") / options["RuntimeDirectory"]
        runtime.mkdir(mode=0o755, exist_ok=True)
        shutil.chown(runtime, user, options["Group"])
        os.chmod(runtime, int(options["RuntimeDirectoryMode"], 8))

        # Where the unit's user can reach the socket (pytest's tmp_path is 0700).
        self.socket_dir = Path(tempfile.mkdtemp(prefix="coffer-notify-", dir="/run"))
        os.chmod(self.socket_dir, 0o755)
        self.notify_path = self.socket_dir / "notify"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        os.chmod(self.notify_path, 0o666)
        scratch.mkdir(parents=True, exist_ok=True)
        self.stdout = open(scratch / "stdout", "w+")
        self.stderr = open(scratch / "stderr", "w+")

        command = ["setpriv", f"--reuid={user}", f"--regid={options['Group']}", "--init-groups",
                   f"--inh-caps=-all,{caps('AmbientCapabilities')}",
                   f"--ambient-caps=-all,{caps('AmbientCapabilities')}",
                   f"--bounding-set=-all,{caps('CapabilityBoundingSet')}"]
        if options.get("NoNewPrivileges") == "yes":
            command.append("--no-new-privs")
        command += ["--", *shlex.split(options["ExecStart"])]
        umask = int(options["UMask"], 8)
        # LimitNOFILE= as far as this sandbox lets even root raise it.
        limits = {resource.RLIMIT_CORE: int(options["LimitCORE"]),
                  resource.RLIMIT_NOFILE: min(int(options["LimitNOFILE"]),
                                              resource.getrlimit(resource.RLIMIT_NOFILE)[1])}

        def as_the_unit():
            os.umask(umask)
            for limit, value in limits.items():
                resource.setrlimit(limit, (value, value))

        watchdog = int(options["WatchdogSec"].removesuffix("s"))
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            command, cwd="/", stdin=subprocess.DEVNULL, stdout=self.stdout, stderr=self.stderr,
            preexec_fn=as_the_unit,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                 "NOTIFY_SOCKET": str(self.notify_path),
                 # Shorter than the unit's, to see it fed within the test.
                 "WATCHDOG_USEC": str(min(watchdog, 1) * 1_000_000)},
        )

    def next_message(self, timeout):
        """The next notification as {key: value}."""
        self.notify.settimeout(timeout)
        try:
            data = self.notify.recv(4096).decode()
        except TimeoutError:
            pytest.fail(f"no notification in {timeout}s; stderr:\n{self.log()}")
        return dict(line.split("=", 1) for line in data.splitlines() if "=" in line)

    def wait_for(self, predicate, timeout=30):
        """Notifications until one satisfies `predicate`: (it, all seen)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            message = self.next_message(max(0.1, deadline - time.monotonic()))
            seen.append(message)
            if predicate(message):
                return message, seen

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read()

    def stop(self):
        """SIGTERM; the notifications until the process is gone, and its code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.notify.settimeout(0.1)
        messages = []
        while True:
            try:
                data = self.notify.recv(4096).decode()
            except (TimeoutError, BlockingIOError):
                break
            messages.append(dict(line.split("=", 1) for line in data.splitlines() if "=" in line))
        return code, messages

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.notify.close()
        shutil.rmtree(self.socket_dir, ignore_errors=True)


def coffer_mounts():
    """/secrets as another process sees it (its own read of mountinfo)."""
    mountinfo = subprocess.run(["cat", "/proc/self/mountinfo"], capture_output=True, text=True,
                               check=True).stdout
    return [line for line in mountinfo.splitlines() if line.split(" ")[4] == "/secrets"]


@pytest.fixture
def clean_machine():
    """No coffer installed: a leftover of an interrupted run is purged; a
    real installation is refused, not destroyed."""
    if installed_version() is not None:
        assert MARKER.exists(), "coffer is installed on this machine: the test would purge it"
        dpkg("--purge", "coffer")
    yield
    if installed_version() is not None:
        dpkg("--purge", "coffer")


def git_commit():
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()


@needs_root
def test_install_start_upgrade_remove_and_purge(packages, clean_machine, fuse_device_for_services,
                                                tmp_path):
    # Install.
    result = dpkg("-i", str(packages["deb"]))
    assert result.returncode == 0, result.stdout + result.stderr
    MARKER.write_text("the packaging test installed this coffer\n")
    assert installed_version() == "0.1.0-1"

    user = subprocess.run(["getent", "passwd", "coffer"], capture_output=True, text=True,
                          check=True).stdout.strip().split(":")
    assert user[5] == "/var/lib/coffer" and user[6] == "/usr/sbin/nologin"
    uid = int(user[2])
    assert uid < 1000, "a system user"

    conffiles = subprocess.run(["dpkg-query", "--control-show", "coffer", "conffiles"],
                               capture_output=True, text=True, check=True).stdout.split()
    assert "/etc/coffer/coffer.hcl" in conffiles and "/etc/logrotate.d/coffer" in conffiles

    def mode(path):
        stat = os.stat(path)
        return (oct(stat.st_mode & 0o7777), stat.st_uid, stat.st_gid)

    gid = int(user[3])
    assert mode("/var/lib/coffer") == ("0o700", uid, gid)
    assert mode("/var/log/coffer") == ("0o750", uid, gid)
    assert mode("/etc/coffer") == ("0o750", 0, gid)
    assert mode("/etc/coffer/coffer.hcl") == ("0o640", 0, gid)
    assert mode("/usr/bin/coffer") == ("0o755", 0, 0)
    assert os.path.isdir("/secrets")

    unit = Path("/usr/lib/systemd/system/coffer.service")
    assert unit.read_text() == UNIT.read_text()
    assert os.path.islink("/etc/systemd/system/multi-user.target.wants/coffer.service"), "enabled"
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, check=False)
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    for path in ["/usr/lib/sysusers.d/coffer.conf", "/usr/lib/tmpfiles.d/coffer.conf",
                 "/usr/share/man/man1/coffer-server.1.gz", "/usr/share/man/man1/coffer.1.gz",
                 "/usr/share/bash-completion/completions/coffer",
                 "/usr/share/zsh/vendor-completions/_coffer",
                 "/usr/share/fish/vendor_completions.d/coffer.fish",
                 "/usr/share/doc/coffer/copyright", "/etc/logrotate.d/coffer"]:
        assert os.path.getsize(path) > 0, path
    version = subprocess.run(["/usr/bin/coffer", "version"], capture_output=True, text=True,
                             check=True).stdout
    assert version.startswith(f"coffer v0.1.0 ({git_commit()})"), version

    # Start it as the unit does: READY=1 once the listener answers, sealed.
    server = Started(unit, tmp_path / "first")
    try:
        ready, seen = server.wait_for(lambda message: message.get("READY") == "1")
        ready_after = time.monotonic() - server.started
        status = api("GET", "sys/seal-status")
        print(f"\nemulated start to READY=1: {ready_after * 1000:.0f} ms")
        assert status["initialized"] is False and status["sealed"] is True
        assert status["version"] == f"0.1.0+{git_commit()}"
        assert ready["STATUS"].startswith("uninitialized")
        assert coffer_mounts() == [], "nothing to mount while sealed"

        init = api("PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1})
        key, token = init["keys"][0], init["root_token"]
        api("PUT", "sys/unseal", {"key": key})
        mounted, seen = server.wait_for(lambda message: "/secrets" in message.get("STATUS", ""))
        assert mounted["STATUS"] == "unsealed, active node; /secrets mounted", mounted
        if not any(message.get("WATCHDOG") == "1" for message in seen):
            server.wait_for(lambda message: message.get("WATCHDOG") == "1", timeout=3)

        # /secrets, seen and read by another process (uid nobody, by its role).
        mounts = coffer_mounts()
        assert len(mounts) == 1 and " - fuse" in mounts[0] and "allow_other" in mounts[0], mounts
        api("POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}, token,
            expect=204)
        api("POST", "secret/data/app/db", {"data": {"password": "from-the-package"}}, token)
        api("POST", "sys/policies/acl/app",
            {"policy": 'path "secret/data/app/*" { capabilities = ["read"] }'}, token, expect=204)
        api("POST", "auth/local/role/app", {"bound_uids": [65534], "policies": ["app"]}, token,
            expect=204)
        read = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat",
             "/secrets/secret/app/db/password"],
            capture_output=True, text=True, check=False,
        )
        assert read.returncode == 0 and read.stdout == "from-the-package", read.stderr

        # The audit log, and SIGHUP (ExecReload=, logrotate) reopening it.
        audit = Path("/var/log/coffer/audit.log")
        assert mode(audit)[0] == "0o600" and mode(audit)[1] == uid
        assert "from-the-package" not in audit.read_text(), "secrets are HMAC'd"
        audit.rename("/var/log/coffer/audit.log.1")
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not audit.exists() and time.monotonic() < deadline:
            api("GET", "secret/data/app/db", token=token)
            time.sleep(0.1)
        assert audit.exists() and "secret/data/app/db" in audit.read_text()

        # SIGTERM: STOPPING=1, unmounted, exit 0.
        code, last = server.stop()
        assert code == 0, server.log()
        assert any(message.get("STOPPING") == "1" for message in last), last
        assert coffer_mounts() == []
        assert "ERROR" not in server.log() and "WARN" not in server.log(), server.log()
    finally:
        server.kill()

    # Upgrade: an edited config and the data stay.
    config = Path("/etc/coffer/coffer.hcl")
    edited = config.read_text() + '\nlog_level = "info"  # edited by the operator\n'
    config.write_text(edited)
    result = dpkg("-i", str(packages["deb_upgrade"]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed_version() == "0.1.0-2"
    assert config.read_text() == edited
    assert mode("/etc/coffer/coffer.hcl") == ("0o640", 0, gid)
    server = Started(unit, tmp_path / "upgraded")
    try:
        ready, _ = server.wait_for(lambda message: message.get("READY") == "1")
        assert ready["STATUS"] == "sealed: run `coffer operator unseal`"
        api("PUT", "sys/unseal", {"key": key})
        read = api("GET", "secret/data/app/db", token=token)
        assert read["data"]["data"] == {"password": "from-the-package"}
        server.wait_for(lambda message: message.get("STATUS", "").endswith("/secrets mounted"))
        # A crash leaves a dead mount; the restart (Restart=on-failure) clears it.
        server.process.kill()
        server.process.wait()
        assert len(coffer_mounts()) == 1, "the dead mount stays"
        with pytest.raises(OSError) as dead:
            os.stat("/secrets/secret")
        assert dead.value.errno == 107, dead.value  # ENOTCONN
    finally:
        server.kill()
    server = Started(unit, tmp_path / "restarted")
    try:
        server.wait_for(lambda message: message.get("READY") == "1")
        api("PUT", "sys/unseal", {"key": key})
        server.wait_for(lambda message: message.get("STATUS", "").endswith("/secrets mounted"))
        assert len(coffer_mounts()) == 1
        read = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat",
             "/secrets/secret/app/db/password"],
            capture_output=True, text=True, check=False,
        )
        assert read.stdout == "from-the-package", read.stderr
        assert "detached a coffer mount left by an earlier run" in server.log()
        code, _ = server.stop()
        assert code == 0, server.log()
        assert coffer_mounts() == []
    finally:
        server.kill()

    # Remove keeps the config and the data; purge deletes them.
    result = dpkg("-r", "coffer")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not os.path.exists("/usr/bin/coffer")
    assert config.read_text() == edited
    assert os.listdir("/var/lib/coffer"), "the data stays on remove"
    result = dpkg("--purge", "coffer")
    assert result.returncode == 0, result.stdout + result.stderr
    for path in ["/etc/coffer", "/var/lib/coffer", "/var/log/coffer",
                 "/etc/systemd/system/multi-user.target.wants/coffer.service"]:
        assert not os.path.lexists(path), path


def test_lintian_finds_no_errors(packages):
    result = subprocess.run(["lintian", "--fail-on", "error", str(packages["deb"])],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\nE: " not in "\n" + result.stdout


def test_the_rpm_holds_the_same_payload_scriptlets_and_config(packages, tmp_path):
    rpm = str(packages["rpm"])

    def query(*arguments):
        return subprocess.run(["rpm", "-qp", *arguments, rpm], capture_output=True, text=True,
                              check=True).stdout

    files = set(query("-l").split())
    cpio = subprocess.run(f"rpm2cpio {shlex.quote(rpm)} | cpio -t --quiet", shell=True,
                          capture_output=True, text=True, check=True).stdout
    assert {"/" + name.removeprefix("./") for name in cpio.split()} == files
    deb = subprocess.run(["dpkg-deb", "-c", str(packages["deb"])], capture_output=True,
                         text=True, check=True).stdout
    deb_files = {line.split()[-1].removeprefix(".") for line in deb.splitlines()
                 if not line.startswith("d")}
    # The same files as the .deb, but for the places each family keeps them.
    differences = {"/usr/share/zsh/vendor-completions/_coffer", "/usr/share/zsh/site-functions/_coffer",
                   "/usr/share/doc/coffer/changelog.Debian.gz"}
    assert files ^ deb_files <= differences, files ^ deb_files

    flags = dict(
        reversed(line.split(" ", 1)) for line in
        query("--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]").splitlines()
    )
    assert flags["/etc/coffer/coffer.hcl"] == "cn", "%config(noreplace)"
    listing = query("-lv")
    assert re.search(r"-rw-r-----\s+1 root\s+coffer\s+\d+ .* /etc/coffer/coffer.hcl", listing)
    assert re.search(r"-rwxr-xr-x\s+1 root\s+root\s+\d+ .* /usr/bin/coffer", listing)

    requires = query("-R")
    assert re.search(r"^fuse3\s*$", requires, re.M), requires
    scripts = query("--scripts")
    assert "useradd -r -g coffer" in scripts
    assert 'if [ "$1" -eq 0 ]; then\n    systemctl --no-reload disable --now coffer.service' in scripts
    assert "systemctl try-restart coffer.service" in scripts
    assert "rm -rf" not in scripts, "an erase keeps the data"


# The .deb under a real systemd: a Debian 12 root (debootstrap, kept in
# /var/tmp/coffer-nspawn-root between runs) booted with systemd-nspawn, the
# package installed, the unit started by systemd itself (its syscall filter,
# capabilities, no_new_privs, Type=notify), initialized and unsealed, and a
# secret read through /secrets from outside the container: through
# /proc/<its PID 1>/root, which sees the service's mount only because the unit
# makes no private mount namespace.

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


@needs_root
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
                   inside("journalctl", "-b", "-u", "coffer", "-o", "json").splitlines()]
        mounted = [entry for entry in journal
                   if entry.get("MESSAGE") == "mounted the FUSE filesystem"]
        assert mounted and mounted[0]["COFFER_MOUNT_POINT"] == "/secrets", journal[-5:]
        assert not any(entry.get("TARGET", "").startswith("openraft") for entry in journal)

        inside("systemctl", "stop", "coffer")
        assert show("ActiveState")["ActiveState"] == "inactive"
        stopped = inside("journalctl", "-b", "-u", "coffer", "-o", "cat")
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
