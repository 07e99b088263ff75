"""The packages, built once for every packaging test, and /dev/fuse opened
up to services for the tests that start one."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
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
