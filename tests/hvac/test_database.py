"""hvac's database secrets engine and lease calls against coffer and a real
PostgreSQL server (initialized in a temp dir, private port, scram-sha-256)."""

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import hvac.exceptions
import pytest

CREATE = (
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; "
    'GRANT SELECT ON items TO "{{name}}";'
)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def as_postgres(argv):
    if os.geteuid() == 0:
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]
    return argv


class Postgres:
    def __init__(self):
        self.bin = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
        self.dir = tempfile.mkdtemp(prefix="coffer-hvac-pg-")
        self.password = "hvac-admin-%d" % os.getpid()
        pwfile = os.path.join(self.dir, "pwfile")
        with open(pwfile, "w") as handle:
            handle.write(self.password)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        data = os.path.join(self.dir, "data")
        subprocess.run(
            as_postgres(
                [
                    os.path.join(self.bin, "initdb"), "-D", data, "-U", "postgres",
                    "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                    "--pwfile=" + pwfile, "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "postgres.log"), "w")
        self.process = subprocess.Popen(
            as_postgres(
                [
                    os.path.join(self.bin, "postgres"), "-D", data, "-p", str(self.port),
                    "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + data,
                    "-c", "fsync=off",
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.time() + 60
        while self.psql("postgres", self.password, "SELECT 1").returncode != 0:
            assert time.time() < deadline, "PostgreSQL did not start"
            time.sleep(0.2)
        self.admin("CREATE TABLE items (id int); INSERT INTO items VALUES (1), (2); CREATE TABLE payroll (salary int);")

    def psql(self, user, password, sql):
        return subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", user, "-d", "postgres",
             "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"},
            capture_output=True,
            text=True,
        )

    def admin(self, sql):
        result = self.psql("postgres", self.password, sql)
        assert result.returncode == 0, result.stderr

    def role_exists(self, name):
        result = self.psql("postgres", self.password, "SELECT count(*) FROM pg_roles WHERE rolname = '%s'" % name)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip() == "1"

    def template(self):
        return "postgresql://{{username}}:{{password}}@127.0.0.1:%d/postgres" % self.port

    def stop(self):
        # SIGINT is PostgreSQL's fast shutdown: it does not wait for clients
        # (coffer's pool) to disconnect.
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    server = Postgres()
    yield server
    server.stop()


@pytest.fixture
def database(root, postgres):
    root.sys.enable_secrets_engine("database", path="database")
    root.secrets.database.configure(
        name="pg",
        plugin_name="postgresql-database-plugin",
        verify_connection=True,
        allowed_roles=["app", "reporting"],
        connection_url=postgres.template(),
        username="postgres",
        password=postgres.password,
    )
    root.secrets.database.create_role(
        name="app", db_name="pg", creation_statements=[CREATE], default_ttl="1h", max_ttl="2h"
    )
    yield root
    root.sys.disable_secrets_engine("database")


def test_generated_credentials_log_in_with_exactly_the_granted_rights(database, postgres):
    creds = database.secrets.database.generate_credentials(name="app")
    username, password = creds["data"]["username"], creds["data"]["password"]
    assert creds["lease_id"].startswith("database/creds/app/")
    assert creds["renewable"] is True
    assert creds["lease_duration"] == 3600
    result = postgres.psql(username, password, "SELECT count(*) FROM items")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
    result = postgres.psql(username, password, "SELECT * FROM payroll")
    assert result.returncode != 0 and "permission denied" in result.stderr
    result = postgres.psql(username, password, "INSERT INTO items VALUES (3)")
    assert result.returncode != 0 and "permission denied" in result.stderr

    lease = database.sys.read_lease(lease_id=creds["lease_id"])
    assert lease["data"]["id"] == creds["lease_id"]
    assert 0 < lease["data"]["ttl"] <= 3600
    listed = database.sys.list_leases(prefix="database/creds/app/")
    assert creds["lease_id"].rsplit("/", 1)[1] in listed["data"]["keys"]
    renewed = database.sys.renew_lease(lease_id=creds["lease_id"], increment=600)
    assert renewed["lease_id"] == creds["lease_id"]
    assert 590 <= renewed["lease_duration"] <= 600

    database.sys.revoke_lease(lease_id=creds["lease_id"])
    assert not postgres.role_exists(username)
    assert postgres.psql(username, password, "SELECT 1").returncode != 0
    with pytest.raises(hvac.exceptions.InvalidRequest):
        database.sys.read_lease(lease_id=creds["lease_id"])


def test_connection_and_roles_read_back_without_the_password(database, postgres):
    connection = database.secrets.database.read_connection(name="pg")
    assert connection["data"]["plugin_name"] == "postgresql-database-plugin"
    assert connection["data"]["connection_details"]["username"] == "postgres"
    assert postgres.password not in str(connection)
    assert "pg" in database.secrets.database.list_connections()["data"]["keys"]
    role = database.secrets.database.read_role(name="app")
    assert role["data"]["db_name"] == "pg"
    assert role["data"]["default_ttl"] == 3600
    assert "app" in database.secrets.database.list_roles()["data"]["keys"]
    with pytest.raises(hvac.exceptions.InvalidRequest):
        database.secrets.database.generate_credentials(name="missing")


def test_revoke_prefix_and_static_roles(database, postgres):
    users = [database.secrets.database.generate_credentials(name="app")["data"]["username"] for _ in range(2)]
    assert all(postgres.role_exists(user) for user in users)
    database.sys.revoke_prefix(prefix="database/creds/app")
    assert not any(postgres.role_exists(user) for user in users)

    postgres.admin("DROP ROLE IF EXISTS reporting; CREATE ROLE reporting WITH LOGIN PASSWORD 'start-password'")
    database.secrets.database.create_static_role(
        name="reporting", db_name="pg", username="reporting", rotation_statements=[], rotation_period=3600
    )
    first = database.secrets.database.get_static_credentials(name="reporting")["data"]
    assert first["username"] == "reporting"
    assert 3590 <= first["ttl"] <= 3600
    assert postgres.psql("reporting", first["password"], "SELECT 1").returncode == 0
    database.secrets.database.rotate_static_role_credentials(name="reporting")
    second = database.secrets.database.get_static_credentials(name="reporting")["data"]
    assert second["password"] != first["password"]
    assert postgres.psql("reporting", first["password"], "SELECT 1").returncode != 0
    assert postgres.psql("reporting", second["password"], "SELECT 1").returncode == 0


def test_a_lease_count_quota_caps_the_credentials_alive_under_a_path(database, postgres):
    database.adapter.post("/v1/sys/quotas/lease-count/app", json={"max_leases": 2, "path": "database/creds/app"})
    try:
        quota = database.adapter.get("/v1/sys/quotas/lease-count/app")["data"]
        assert (quota["max_leases"], quota["path"], quota["counter"]) == (2, "database/creds/app", 0)
        first, second = (database.secrets.database.generate_credentials(name="app") for _ in range(2))
        assert database.adapter.get("/v1/sys/quotas/lease-count/app")["data"]["counter"] == 2
        users = {row["data"]["username"] for row in (first, second)}
        before = dynamic_users(postgres)
        with pytest.raises(hvac.exceptions.RateLimitExceeded, match="lease count quota exceeded"):
            database.secrets.database.generate_credentials(name="app")
        # Refused before the engine ran: no third user was made.
        assert dynamic_users(postgres) == before
        assert users <= before
        # Revoking one makes room for one.
        database.sys.revoke_lease(lease_id=first["lease_id"])
        third = database.secrets.database.generate_credentials(name="app")
        assert third["data"]["username"] not in users
        with pytest.raises(hvac.exceptions.RateLimitExceeded):
            database.secrets.database.generate_credentials(name="app")
    finally:
        database.adapter.delete("/v1/sys/quotas/lease-count/app")
    database.sys.revoke_prefix(prefix="database/creds/app")


def dynamic_users(postgres):
    result = postgres.psql("postgres", postgres.password, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-%'")
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_the_cli_reads_credentials_and_manages_their_leases(database, postgres, dev_server):
    from test_bao_cli import Cli, table

    cli = Cli(dev_server)
    creds = cli.json("read", "database/creds/app")
    username, password, lease_id = creds["data"]["username"], creds["data"]["password"], creds["lease_id"]
    assert lease_id.startswith("database/creds/app/") and creds["lease_duration"] == 3600
    assert postgres.psql(username, password, "SELECT count(*) FROM items").stdout.strip() == "2"
    rows = table(cli.run("read", "database/creds/app"))
    assert rows["lease_duration"] == "1h" and rows["username"].startswith("v-")

    looked_up = cli.json("lease lookup", lease_id)["data"]
    assert looked_up["id"] == lease_id and looked_up["renewable"] is True
    renewed = cli.json("lease renew", "-increment=10m", lease_id)
    assert renewed["lease_id"] == lease_id and 590 <= renewed["lease_duration"] <= 600
    # The CLI asks for a revocation in the background (`sync: false`).
    assert "All revocation operations queued successfully" in cli.run("lease", "revoke", lease_id)
    wait_until(lambda: not postgres.role_exists(username))
    assert "Code: 400" in cli.run("lease", "lookup", lease_id, expect=2)

    remaining = rows["username"]
    assert postgres.role_exists(remaining)
    assert "All revocation operations queued successfully" in cli.run(
        "lease", "revoke", "-prefix", "database/creds/app"
    )
    wait_until(lambda: not postgres.role_exists(remaining))


def wait_until(check, seconds=10):
    deadline = time.time() + seconds
    while not check():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)
