//! Auto-unseal with `seal "static"` and `seal "awskms"` (against moto's KMS
//! on loopback): init with recovery keys, a restart that
//! unseals with no operator, seal-then-unseal with recovery keys, a wrong or
//! missing key that keeps the node sealed until the key is right again, and a
//! 3-node cluster whose nodes all come back by themselves after `kill -9`
//! (the joining ones too).
//!
//! The cluster test starts three servers; the tests here run one at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use coffer_tests::cluster::{Cluster, kv_read, wait_for};
use coffer_tests::kms::Moto;
use coffer_tests::{Api, Server, cli};
use serde_json::{Value, json};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes a 32-byte key as hex into `directory` and returns its path.
fn write_key(directory: &Path, name: &str, byte: u8) -> PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, format!("{}\n", hex::encode([byte; 32]))).unwrap();
    path
}

fn static_seal(key: &Path) -> String {
    format!(
        "seal \"static\" {{\n  current_key_id = \"k1\"\n  current_key = \"file://{}\"\n}}\n",
        key.display()
    )
}

fn single_node_config(seal: &str) -> String {
    format!(
        r#"storage "raft" {{
  path    = "{{data_dir}}"
  node_id = "n1"
}}
listener "tcp" {{
  address     = "127.0.0.1:0"
  tls_disable = true
}}
{seal}"#
    )
}

fn wait_unsealed(api: &Api, timeout: Duration) {
    wait_for(timeout, "the node to unseal itself", || {
        let status = api.get("sys/seal-status");
        (status.body["sealed"] == false).then_some(())
    });
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|item| item.as_str().unwrap().to_owned())
        .collect()
}

/// The value of a Prometheus counter line starting with `series`.
fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

#[test]
fn a_static_seal_inits_with_recovery_keys_and_unseals_itself_after_a_restart() {
    let _serial = serial();
    let keys = tempfile::tempdir().unwrap();
    let key = write_key(keys.path(), "seal.key", 0x11);
    let mut server = Server::with_config(&single_node_config(&static_seal(&key)));
    let api = server.client(None);

    let status = api.get("sys/seal-status").expect(200);
    assert_eq!(status.body["type"], "static");
    assert_eq!(status.body["initialized"], false);
    assert_eq!(status.body["recovery_seal"], true);
    assert_eq!(status.body["recovery_seal_type"], "shamir");

    // Unseal key parameters are refused by name, as Vault does.
    let refused = api
        .call(
            "PUT",
            "sys/init",
            Some(json!({"secret_shares": 3, "secret_threshold": 2})),
        )
        .expect(400);
    assert_eq!(
        refused.errors(),
        ["parameters secret_shares,secret_threshold not applicable to seal type static"]
    );
    let refused = api
        .call(
            "PUT",
            "sys/init",
            Some(json!({"recovery_shares": 3, "recovery_threshold": 1})),
        )
        .expect(400);
    assert!(
        refused.errors()[0].contains("recovery_threshold"),
        "{refused:?}"
    );

    let init = api
        .call(
            "PUT",
            "sys/init",
            Some(json!({"recovery_shares": 3, "recovery_threshold": 2})),
        )
        .expect(200);
    assert_eq!(init.body["keys"], json!([]));
    let recovery = strings(&init.body["recovery_keys"]);
    assert_eq!(recovery.len(), 3);
    assert_eq!(strings(&init.body["recovery_keys_base64"]).len(), 3);
    let root_token = init.body["root_token"].as_str().unwrap().to_owned();
    // Unsealed at once, with the recovery shares as t/n.
    let status = api.get("sys/seal-status").expect(200);
    assert_eq!(status.body["sealed"], false, "{:?}", status.body);
    assert_eq!(
        (status.body["t"].clone(), status.body["n"].clone()),
        (json!(2), json!(3))
    );
    let again = api
        .call(
            "PUT",
            "sys/init",
            Some(json!({"recovery_shares": 1, "recovery_threshold": 1})),
        )
        .expect(400);
    assert!(
        again.errors()[0].contains("already initialized"),
        "{again:?}"
    );

    let root = server.client(Some(&root_token));
    root.post(
        "sys/mounts/secret",
        json!({"type": "kv", "options": {"version": "2"}}),
    )
    .expect(204);
    root.kv_put("app/db", json!({"password": "before-restart"}));

    // Nothing the seal protects is stored in the clear.
    server.terminate();
    let data = server.workspace().join("data");
    assert!(
        !grep_bytes(&data, hex::encode([0x11u8; 32]).as_bytes()),
        "the seal key leaked into the data directory"
    );

    // A restart: unsealed with no operator, one KMS call.
    let started = Instant::now();
    server.restart();
    let api = server.client(None);
    wait_unsealed(&api, Duration::from_secs(20));
    eprintln!("restart to unsealed: {:?}", started.elapsed());
    let root = server.client(Some(&root_token));
    assert_eq!(
        kv_read(&root, "app/db").unwrap()["password"],
        "before-restart"
    );
    let metrics = root.get("sys/metrics?format=prometheus").expect(200).body;
    let metrics = metrics.as_str().unwrap_or_default();
    assert_eq!(
        counter(
            metrics,
            "coffer_seal_kms_calls_total{seal=\"static\",call=\"unwrap\",outcome=\"ok\"}"
        ),
        1,
        "{metrics}"
    );
    assert!(server.log().contains("unsealed with the stored key"));

    // Sealed by an operator: the recovery keys unseal it; a wrong recovery
    // key does not, and says so.
    root.call("PUT", "sys/seal", None).expect(204);
    assert_eq!(api.get("sys/health").status, 503);
    let wrong = hex::encode([0x42u8; 33]);
    api.post("sys/unseal", json!({"key": wrong})).expect(200);
    let refused = api
        .post("sys/unseal", json!({"key": hex::encode([0x43u8; 33])}))
        .expect(400);
    assert!(
        refused.errors()[0].contains("recovery key shares do not match"),
        "{refused:?}"
    );
    assert_eq!(api.get("sys/seal-status").body["sealed"], true);
    let progress = api
        .post("sys/unseal", json!({"key": recovery[2]}))
        .expect(200);
    assert_eq!(progress.body["progress"], 1);
    let done = api
        .post("sys/unseal", json!({"key": recovery[0]}))
        .expect(200);
    assert_eq!(done.body["sealed"], false, "{:?}", done.body);
    assert_eq!(
        kv_read(&root, "app/db").unwrap()["password"],
        "before-restart"
    );

    // A wrong key: the node runs sealed (503), logs why, retries, and
    // unseals by itself once the key is right again.
    server.kill9();
    write_key(keys.path(), "seal.key", 0x22);
    server.restart();
    let api = server.client(None);
    wait_for(
        Duration::from_secs(10),
        "a failed attempt in the log",
        || {
            server
                .log()
                .contains("message authentication failed")
                .then_some(())
        },
    );
    assert_eq!(api.get("sys/health").status, 503);
    assert_eq!(api.get("sys/seal-status").body["sealed"], true);
    let log = server.log();
    assert!(log.contains("failed to unseal with the seal"), "{log}");
    assert!(
        !log.contains(&hex::encode([0x22u8; 32])),
        "the key is in the log"
    );
    write_key(keys.path(), "seal.key", 0x11);
    wait_unsealed(&api, Duration::from_secs(40));

    // A missing key file: the same, with the file named.
    server.kill9();
    std::fs::remove_file(&key).unwrap();
    server.restart();
    wait_for(
        Duration::from_secs(10),
        "the missing key in the log",
        || server.log().contains("cannot be read").then_some(()),
    );
    assert_eq!(server.client(None).get("sys/health").status, 503);
    write_key(keys.path(), "seal.key", 0x11);
    wait_unsealed(&server.client(None), Duration::from_secs(40));
    let root = server.client(Some(&root_token));
    assert_eq!(
        kv_read(&root, "app/db").unwrap()["password"],
        "before-restart"
    );
}

#[test]
fn without_recovery_keys_a_sealed_node_waits_for_a_restart() {
    let _serial = serial();
    let keys = tempfile::tempdir().unwrap();
    let key = write_key(keys.path(), "seal.key", 0x33);
    let mut server = Server::with_config(&single_node_config(&static_seal(&key)));
    let api = server.client(None);
    // The CLI asks for recovery shares when the server has an auto seal.
    let (code, out, err) = cli(&server, None, &["operator", "init", "-recovery-shares=0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("Recovery Key 1"), "{out}");
    let root_token = out
        .lines()
        .find_map(|line| line.strip_prefix("Initial Root Token: "))
        .unwrap_or_else(|| panic!("no root token in {out}"))
        .trim()
        .to_owned();
    let status = api.get("sys/seal-status").expect(200);
    assert_eq!(
        (status.body["t"].clone(), status.body["n"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(status.body["sealed"], false);
    let (code, out, _) = cli(&server, None, &["status"]);
    assert_eq!(code, 0, "{out}");
    for row in ["Seal Type", "static", "Recovery Seal Type", "shamir"] {
        assert!(out.contains(row), "{row} missing from {out}");
    }
    let root = server.client(Some(&root_token));
    root.call("PUT", "sys/seal", None).expect(204);
    let refused = api
        .post("sys/unseal", json!({"key": hex::encode([1u8; 32])}))
        .expect(400);
    assert!(refused.errors()[0].contains("restart it"), "{refused:?}");
    server.restart();
    wait_unsealed(&server.client(None), Duration::from_secs(20));
}

#[test]
fn a_cluster_on_a_static_seal_comes_back_by_itself_after_kill_9() {
    let _serial = serial();
    let keys = tempfile::tempdir().unwrap();
    let key = write_key(keys.path(), "seal.key", 0x44);
    // Every node joins through retry_join and unseals itself.
    let mut cluster = Cluster::start_sealed_by(24, 3, &static_seal(&key));
    cluster.mount_kv();
    cluster
        .root(cluster.leader())
        .kv_put("app/one", json!({"v": "1"}));

    for node in &mut cluster.nodes {
        node.server.kill9();
    }
    let started = Instant::now();
    for node in &mut cluster.nodes {
        node.server.restart();
    }
    for index in 0..3 {
        cluster.unseal_or_wait(index);
        eprintln!(
            "node {}: unsealed {:?} after the restarts began",
            index + 1,
            started.elapsed()
        );
    }
    let leader = cluster.leader();
    cluster.root(leader).kv_put("app/two", json!({"v": "2"}));
    for index in 0..3 {
        let root = cluster.root(index);
        wait_for(
            Duration::from_secs(20),
            "both secrets on every node",
            || {
                let one = kv_read(&root, "app/one")?;
                let two = kv_read(&root, "app/two")?;
                (one["v"] == "1" && two["v"] == "2").then_some(())
            },
        );
    }
    // A fourth node joins through retry_join with no operator.
    let added = cluster.add_node();
    cluster.wait_for_voters(4);
    let root = cluster.root(added);
    wait_for(Duration::from_secs(20), "the data on the new node", || {
        kv_read(&root, "app/two").map(|_| ())
    });
    assert!(
        cluster.nodes[added]
            .server
            .log()
            .contains("unsealed with the stored key")
    );
}

fn unseal_with(api: &Api, keys: &[String], migrate: bool) -> Value {
    let mut last = Value::Null;
    for key in keys {
        last = api
            .post("sys/unseal", json!({"key": key, "migrate": migrate}))
            .expect(200)
            .body;
    }
    last
}

fn wait_migrated(api: &Api, seal_type: &str) {
    wait_for(
        Duration::from_secs(20),
        "the migration to be written",
        || {
            let status = api.get("sys/seal-status").body;
            (status["migration"] == false && status["type"] == seal_type).then_some(())
        },
    );
}

#[test]
fn shamir_to_static_to_awskms_to_shamir_keeps_the_data_and_the_operators_keys() {
    let _serial = serial();
    let keys = tempfile::tempdir().unwrap();
    let key = write_key(keys.path(), "seal.key", 0x55);
    let shamir = single_node_config("");
    let mut server = Server::with_config(&shamir);
    let api = server.client(None);
    let init = api
        .call(
            "PUT",
            "sys/init",
            Some(json!({"secret_shares": 3, "secret_threshold": 2})),
        )
        .expect(200);
    let unseal_keys = strings(&init.body["keys"]);
    let root_token = init.body["root_token"].as_str().unwrap().to_owned();
    unseal_with(&api, &unseal_keys[..2], false);
    let root = server.client(Some(&root_token));
    root.post(
        "sys/mounts/secret",
        json!({"type": "kv", "options": {"version": "2"}}),
    )
    .expect(204);
    root.kv_put("step/shamir", json!({"v": "1"}));

    // Shamir -> static: add the seal block, restart.
    server.set_config(&single_node_config(&static_seal(&key)));
    server.restart();
    let api = server.client(None);
    let status = api.get("sys/seal-status").body;
    assert_eq!(
        (&status["type"], &status["migration"], &status["sealed"]),
        (&json!("static"), &json!(true), &json!(true)),
        "{status}"
    );
    assert_eq!(
        (status["t"].clone(), status["n"].clone()),
        (json!(2), json!(3))
    );
    let refused = api
        .post("sys/unseal", json!({"key": unseal_keys[0]}))
        .expect(400);
    assert_eq!(
        refused.errors(),
        ["migrate option not provided and seal migration is pending"]
    );
    // Restarted mid-migration: nothing changed, the migration is still pending.
    unseal_with(&api, &unseal_keys[..1], true);
    server.restart();
    let api = server.client(None);
    let status = api.get("sys/seal-status").body;
    assert_eq!(
        (&status["migration"], &status["sealed"]),
        (&json!(true), &json!(true))
    );
    let done = unseal_with(&api, &unseal_keys[1..], true);
    assert_eq!(done["sealed"], false, "{done}");
    wait_migrated(&api, "static");
    assert!(server.log().contains("seal migration complete"));
    let root = server.client(Some(&root_token));
    root.kv_put("step/static", json!({"v": "2"}));

    // Now it unseals itself, and the old unseal keys are its recovery keys.
    server.restart();
    let api = server.client(None);
    wait_unsealed(&api, Duration::from_secs(20));
    let status = api.get("sys/seal-status").body;
    assert_eq!(
        (status["t"].clone(), status["n"].clone()),
        (json!(2), json!(3))
    );
    let root = server.client(Some(&root_token));
    root.call("PUT", "sys/seal", None).expect(204);
    let done = unseal_with(&api, &unseal_keys[1..], false);
    assert_eq!(done["sealed"], false, "{done}");

    // static -> awskms: the static block disabled, the KMS block added, the
    // recovery keys with migrate.
    let moto = Moto::start();
    let kms_key = moto.create_key();
    let disabled_static = static_seal(&key).replace("}\n", "  disabled = \"true\"\n}\n");
    server.set_config(&single_node_config(&format!(
        "{disabled_static}{}",
        moto.seal_block(&kms_key, false)
    )));
    server.restart();
    let api = server.client(None);
    let status = api.get("sys/seal-status").body;
    assert_eq!(
        (&status["type"], &status["migration"], &status["sealed"]),
        (&json!("awskms"), &json!(true), &json!(true)),
        "{status}"
    );
    let done = unseal_with(&api, &unseal_keys[..2], true);
    assert_eq!(done["sealed"], false, "{done}");
    wait_migrated(&api, "awskms");
    let root = server.client(Some(&root_token));
    root.kv_put("step/awskms", json!({"v": "3"}));
    // The static key is no longer needed.
    std::fs::remove_file(&key).unwrap();
    server.set_config(&single_node_config(&moto.seal_block(&kms_key, false)));
    server.restart();
    wait_unsealed(&server.client(None), Duration::from_secs(30));

    // awskms -> Shamir: the block disabled, the recovery keys with migrate.
    server.set_config(&single_node_config(&moto.seal_block(&kms_key, true)));
    server.restart();
    let api = server.client(None);
    let status = api.get("sys/seal-status").body;
    assert_eq!(
        (&status["type"], &status["migration"], &status["sealed"]),
        (&json!("shamir"), &json!(true), &json!(true)),
        "{status}"
    );
    let done = unseal_with(
        &api,
        &[unseal_keys[2].clone(), unseal_keys[0].clone()],
        true,
    );
    assert_eq!(done["sealed"], false, "{done}");
    wait_migrated(&api, "shamir");
    let root = server.client(Some(&root_token));
    root.kv_put("step/back", json!({"v": "4"}));

    // The block gone: Shamir keys as at the start, and all the data.
    server.set_config(&shamir);
    server.restart();
    let api = server.client(None);
    let status = api.get("sys/seal-status").body;
    assert_eq!(
        (&status["type"], &status["sealed"]),
        (&json!("shamir"), &json!(true))
    );
    unseal_with(&api, &unseal_keys[..2], false);
    let root = server.client(Some(&root_token));
    for (path, value) in [
        ("step/shamir", "1"),
        ("step/static", "2"),
        ("step/awskms", "3"),
        ("step/back", "4"),
    ] {
        assert_eq!(kv_read(&root, path).unwrap()["v"], value, "{path}");
    }
}

#[test]
fn an_awskms_seal_unseals_itself_and_waits_out_a_kms_that_does_not_answer() {
    let _serial = serial();
    let moto = Moto::start();
    let key_id = moto.create_key();
    let mut server = Server::with_config(&single_node_config(&moto.seal_block(&key_id, false)));
    let api = server.client(None);
    assert_eq!(api.get("sys/seal-status").body["type"], "awskms");
    let init = api
        .call(
            "PUT",
            "sys/init",
            Some(json!({"recovery_shares": 1, "recovery_threshold": 1})),
        )
        .expect(200);
    let root_token = init.body["root_token"].as_str().unwrap().to_owned();
    let recovery = strings(&init.body["recovery_keys"]);
    let root = server.client(Some(&root_token));
    root.post(
        "sys/mounts/secret",
        json!({"type": "kv", "options": {"version": "2"}}),
    )
    .expect(204);
    root.kv_put("app/db", json!({"password": "kms"}));

    // A restart: unsealed by one Decrypt.
    let started = Instant::now();
    server.restart();
    let api = server.client(None);
    wait_unsealed(&api, Duration::from_secs(30));
    eprintln!(
        "awskms (moto): restart to unsealed in {:?}",
        started.elapsed()
    );
    let root = server.client(Some(&root_token));
    assert_eq!(kv_read(&root, "app/db").unwrap()["password"], "kms");
    let metrics = root.get("sys/metrics?format=prometheus").expect(200).body;
    let metrics = metrics.as_str().unwrap_or_default();
    let calls: u64 = ["check", "wrap", "unwrap"]
        .iter()
        .flat_map(|call| {
            ["ok", "error"].map(|outcome| {
                counter(
                    metrics,
                    &format!(
                        "coffer_seal_kms_calls_total{{seal=\"awskms\",call=\"{call}\",outcome=\"{outcome}\"}}"
                    ),
                )
            })
        })
        .sum();
    assert_eq!(calls, 1, "KMS calls in this start: {metrics}");
    // Recovery keys after a manual seal: one more Decrypt.
    root.call("PUT", "sys/seal", None).expect(204);
    let done = unseal_with(&api, &recovery, false);
    assert_eq!(done["sealed"], false, "{done}");

    // The KMS stops answering: the node runs sealed, logs, retries, and
    // unseals by itself once the KMS answers again.
    moto.pause();
    let before = server.log().len();
    server.restart();
    let api = server.client(None);
    wait_for(
        Duration::from_secs(40),
        "a failed attempt in the log",
        || {
            server.log()[before..]
                .contains("failed to unseal with the seal")
                .then_some(())
        },
    );
    assert_eq!(api.get("sys/health").status, 503);
    assert!(server.log().contains(&key_id), "the log names the key");
    moto.resume();
    wait_unsealed(&api, Duration::from_secs(60));

    // The key gone (a KMS that does not hold it): sealed with the KMS's
    // reason, and the recovery keys cannot unseal without it.
    let empty = Moto::start();
    server.set_config(&single_node_config(&empty.seal_block(&key_id, false)));
    let before = server.log().len();
    server.restart();
    let api = server.client(None);
    wait_for(
        Duration::from_secs(30),
        "the KMS's refusal in the log",
        || {
            let log = server.log();
            let log = &log[before..];
            (log.contains("failed to unseal with the seal") && log.contains("Decrypt"))
                .then_some(())
        },
    );
    assert_eq!(api.get("sys/seal-status").body["sealed"], true);
    let refused = api.post("sys/unseal", json!({"key": recovery[0]}));
    assert_eq!(refused.status, 502, "{:?}", refused.body);
    assert_eq!(api.get("sys/seal-status").body["sealed"], true);
    // The right KMS again: unsealed, nothing lost.
    server.set_config(&single_node_config(&moto.seal_block(&key_id, false)));
    server.restart();
    let api = server.client(None);
    wait_unsealed(&api, Duration::from_secs(30));
    let root = server.client(Some(&root_token));
    assert_eq!(kv_read(&root, "app/db").unwrap()["password"], "kms");

    // A key that does not exist: named at start, and init fails with it.
    let fresh = Server::with_config(&single_node_config(&moto.seal_block("alias/nope", false)));
    wait_for(
        Duration::from_secs(30),
        "the failed key check in the log",
        || fresh.log().contains("NotFoundException").then_some(()),
    );
    let refused = fresh.client(None).call(
        "PUT",
        "sys/init",
        Some(json!({"recovery_shares": 1, "recovery_threshold": 1})),
    );
    assert_eq!(refused.status, 502, "{:?}", refused.body);
    assert!(
        refused.errors()[0].contains("alias/nope"),
        "{:?}",
        refused.body
    );
    let status = fresh.client(None).get("sys/seal-status").body;
    assert_eq!(status["initialized"], false, "a failed init writes nothing");
}

#[test]
fn a_cluster_migrates_from_shamir_to_a_static_seal_one_node_at_a_time() {
    let _serial = serial();
    let keys = tempfile::tempdir().unwrap();
    let key = write_key(keys.path(), "seal.key", 0x66);
    let mut cluster = Cluster::start(25, 3);
    cluster.mount_kv();
    cluster
        .root(cluster.leader())
        .kv_put("rolling/0", json!({"v": "0"}));
    let shares = cluster.keys.shares.clone();
    let leader = cluster.leader();
    let mut order = cluster.followers();
    order.push(leader);
    for (step, index) in order.into_iter().enumerate() {
        // The seal block added to this node's configuration, then a restart.
        let server = &mut cluster.nodes[index].server;
        let config = std::fs::read_to_string(server.workspace().join("coffer.hcl")).unwrap();
        server.set_config(&format!("{config}\n{}", static_seal(&key)));
        server.restart();
        let api = cluster.nodes[index].api(None);
        let status = api.get("sys/seal-status").body;
        assert_eq!(
            (&status["migration"], &status["sealed"]),
            (&json!(true), &json!(true)),
            "node {}: {status}",
            index + 1
        );
        let done = unseal_with(&api, &shares[..2], true);
        assert_eq!(done["sealed"], false, "node {}: {done}", index + 1);
        // The cluster serves writes all along, from whichever node leads.
        let writer = cluster.leader();
        cluster
            .root(writer)
            .kv_put(&format!("rolling/{}", step + 1), json!({"v": step + 1}));
    }
    // Once a migrated node leads, the migration is written, everywhere.
    for index in 0..3 {
        wait_migrated(&cluster.nodes[index].api(None), "static");
    }
    // From now on the cluster comes back with no operator.
    for node in &mut cluster.nodes {
        node.server.kill9();
    }
    for node in &mut cluster.nodes {
        node.server.restart();
    }
    for index in 0..3 {
        cluster.wait_self_unsealed(index);
    }
    let root = cluster.root(cluster.leader());
    for step in 0..4 {
        let path = format!("rolling/{step}");
        wait_for(Duration::from_secs(20), "every write", || {
            kv_read(&root, &path).map(|_| ())
        });
    }
    // The old unseal keys are the recovery keys now.
    let status = cluster.nodes[0].api(None).get("sys/seal-status").body;
    assert_eq!(
        (status["t"].clone(), status["n"].clone()),
        (json!(2), json!(3))
    );
}

/// Whether any file under `directory` holds `needle`.
fn grep_bytes(directory: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            return grep_bytes(&path, needle);
        }
        std::fs::read(&path)
            .map(|content| content.windows(needle.len()).any(|window| window == needle))
            .unwrap_or(false)
    })
}
