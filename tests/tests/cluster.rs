//! Raft clusters of real `coffer` processes on 127.0.x.y: forming through
//! `retry_join`, forwarding (AppRole uses spent exactly under concurrent
//! logins on every node), failover under load, quorum loss, a late joiner fed
//! by a snapshot, operator snapshots, and refusals of bad input.
//!
//! The tests in this file run one at a time (a lock): each starts three or four
//! servers, and their timing claims (a leader within 5 s, a 503 within 10 s) are
//! about coffer, not about two cores shared by twelve processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use coffer_tests::cluster::{Cluster, kv_read, wait_for};
use coffer_tests::{Server, cli, curl, openssl};
use serde_json::json;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn three_nodes_form_a_cluster_forward_writes_and_serve_reads_everywhere() {
    let _serial = serial();
    let cluster = Cluster::start(11, 3);
    assert_eq!(
        cluster.members(),
        vec![
            ("n1".to_owned(), true),
            ("n2".to_owned(), true),
            ("n3".to_owned(), true)
        ]
    );
    let leader = cluster.leader();
    let follower = cluster.followers()[0];

    // A mount made through a follower reaches every node's mount table.
    cluster
        .root(follower)
        .post(
            "sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .expect(204);
    // A write on a follower is forwarded; a read right after it on the same
    // follower sees it; every node serves it from its own replica.
    let version = cluster
        .root(follower)
        .kv_put("app/db", json!({"password": "forwarded-1"}));
    assert_eq!(version, 1);
    assert_eq!(
        kv_read(&cluster.root(follower), "app/db").unwrap()["password"],
        "forwarded-1"
    );
    for index in 0..3 {
        let value = wait_for(Duration::from_secs(5), "the write on every node", || {
            kv_read(&cluster.root(index), "app/db")
        });
        assert_eq!(value["password"], "forwarded-1", "node {}", index + 1);
    }
    // A token looked up on every node (and so cached there) stops working
    // everywhere once it is revoked through one of them.
    let token = cluster.root(leader).token_with_policy(
        "reader",
        "path \"secret/data/app/*\" {\n capabilities = [\"read\"]\n}",
    );
    for index in 0..3 {
        wait_for(Duration::from_secs(5), "the token on every node", || {
            (cluster.nodes[index]
                .api(Some(&token))
                .get("secret/data/app/db")
                .status
                == 200)
                .then_some(())
        });
    }
    let other = cluster.followers()[1];
    cluster.nodes[follower]
        .api(Some(&token))
        .call("PUT", "auth/token/revoke-self", None)
        .expect(204);
    cluster.nodes[follower]
        .api(Some(&token))
        .get("secret/data/app/db")
        .expect(403);
    for index in [leader, other] {
        wait_for(
            Duration::from_secs(5),
            "the revocation on every node",
            || {
                (cluster.nodes[index]
                    .api(Some(&token))
                    .get("secret/data/app/db")
                    .status
                    == 403)
                    .then_some(())
            },
        );
    }

    // The client sees the leader's answer, errors included (a CAS mismatch).
    let answer = cluster.root(follower).post(
        "secret/data/app/db",
        json!({"data": {"password": "x"}, "options": {"cas": 0}}),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(answer.errors()[0].contains("check-and-set"), "{answer:?}");

    // Without forwarding, a follower redirects to the leader.
    let (status, location) = {
        let url = cluster.nodes[follower].server.url("secret/data/app/other");
        let output = std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
            ])
            .args(["-X", "POST", "-d", r#"{"data":{"a":"b"}}"#])
            .arg("-H")
            .arg(format!("X-Vault-Token: {}", cluster.keys.root_token))
            .args(["-H", "X-Vault-No-Request-Forwarding: true"])
            .arg(&url)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (status, location) = text.split_once(' ').unwrap_or((&text, ""));
        (status.parse::<u16>().unwrap_or(0), location.to_owned())
    };
    assert_eq!(status, 307);
    assert!(
        location.contains(&format!(
            "{}/v1/secret/data/app/other",
            cluster.nodes[leader].api_addr
        )),
        "{location}"
    );
    assert!(kv_read(&cluster.root(leader), "app/other").is_none());

    // Health and leader on a standby.
    let standby = cluster.nodes[follower].api(None);
    let health = standby.get("sys/health");
    assert_eq!(health.status, 429, "{:?}", health.body);
    assert_eq!(health.body["standby"], true);
    standby.get("sys/health?standbyok=true").expect(200);
    cluster.nodes[leader]
        .api(None)
        .get("sys/health")
        .expect(200);
    let leader_info = standby.get("sys/leader").expect(200);
    assert_eq!(leader_info.body["is_self"], false);
    assert_eq!(
        leader_info.body["leader_address"],
        cluster.nodes[leader].api_addr
    );

    // The CLI lists the peers.
    let (code, stdout, stderr) = cli(
        &cluster.nodes[follower].server,
        Some(&cluster.keys.root_token),
        &["operator", "raft", "list-peers"],
    );
    assert_eq!(code, 0, "{stderr}");
    for name in ["n1", "n2", "n3"] {
        assert!(stdout.contains(name), "{stdout}");
    }
    assert_eq!(stdout.matches("leader").count(), 1, "{stdout}");

    // Joining again is a no-op; a joined node survives a restart (and unseals
    // with the cluster's keys from its own replica).
    let join = cluster.nodes[follower].api(None).call(
        "PUT",
        "sys/storage/raft/join",
        Some(json!({"leader_api_addr": cluster.nodes[leader].api_addr})),
    );
    assert_eq!(join.status, 200, "{:?}", join.body);
    let mut cluster = cluster;
    cluster.nodes[follower].server.restart();
    cluster.unseal(follower);
    assert_eq!(cluster.members().len(), 3);
    cluster
        .root(leader)
        .kv_put("app/after-restart", json!({"k": "v"}));
    let value = wait_for(
        Duration::from_secs(10),
        "the restarted node to catch up",
        || kv_read(&cluster.root(follower), "app/after-restart"),
    );
    assert_eq!(value["k"], "v");

    // A rekey on the leader: every node reports the new shares at once, and
    // a standby sealed afterwards unseals with them.
    let root = cluster.root(leader);
    let started = root
        .call(
            "PUT",
            "sys/rekey/init",
            Some(json!({"secret_shares": 5, "secret_threshold": 3})),
        )
        .expect(200);
    let nonce = started.body["nonce"].as_str().unwrap().to_owned();
    let mut rekeyed = None;
    for share in &cluster.keys.shares[..2] {
        rekeyed = Some(
            root.call(
                "PUT",
                "sys/rekey/update",
                Some(json!({"key": share, "nonce": nonce})),
            )
            .expect(200),
        );
    }
    let new_keys: Vec<String> = rekeyed.unwrap().body["keys"]
        .as_array()
        .expect("new keys")
        .iter()
        .map(|key| key.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(new_keys.len(), 5);
    for index in 0..3 {
        let status = wait_for(Duration::from_secs(5), "the new seal config", || {
            let status = cluster.nodes[index].api(None).get("sys/seal-status");
            (status.body["n"] == 5).then_some(status)
        });
        assert_eq!(status.body["t"], 3, "node {}", index + 1);
    }
    cluster
        .root(follower)
        .call("PUT", "sys/seal", None)
        .expect(204);
    let standby = cluster.nodes[follower].api(None);
    for share in &cluster.keys.shares[..2] {
        standby.post("sys/unseal", json!({"key": share}));
    }
    assert_eq!(standby.get("sys/seal-status").body["sealed"], true);
    standby.call("PUT", "sys/unseal", Some(json!({"reset": true})));
    for share in &new_keys[1..4] {
        standby
            .post("sys/unseal", json!({"key": share}))
            .expect(200);
    }
    wait_for(Duration::from_secs(30), "the standby to unseal", || {
        (standby.get("sys/seal-status").body["sealed"] == false).then_some(())
    });

    // PKI across the cluster: a certificate issued through a standby,
    // revoked through the leader, is on the CRL every node serves.
    let leader = cluster.leader();
    let follower = cluster.followers()[0];
    let root = cluster.root(leader);
    root.post("sys/mounts/pki", json!({"type": "pki"}))
        .expect(204);
    root.post(
        "pki/root/generate/internal",
        json!({"common_name": "cluster root", "key_type": "ec"}),
    )
    .expect(200);
    root.post(
        "pki/roles/web",
        json!({"allow_any_name": true, "key_type": "ec", "ttl": "1h"}),
    )
    .expect(200);
    let issued = cluster
        .root(follower)
        .post("pki/issue/web", json!({"common_name": "svc.example.com"}))
        .expect(200);
    let serial = issued.body["data"]["serial_number"]
        .as_str()
        .unwrap()
        .to_owned();
    root.post("pki/revoke", json!({"serial_number": serial}))
        .expect(200);
    let listed = serial.replace(':', "").to_uppercase();
    for index in 0..3 {
        let crl = wait_for(Duration::from_secs(5), "the CRL on every node", || {
            let answer = cluster.nodes[index].api(None).get("pki/cert/crl");
            let pem = answer.body["data"]["certificate"].as_str()?.to_owned();
            let text = crl_text(&pem);
            text.contains(&listed).then_some(text)
        });
        assert!(
            crl.contains("X509v3 CRL Number"),
            "node {}: {crl}",
            index + 1
        );
    }

    // AppRole: a secret ID with 5 uses, 16 logins at once spread over the
    // three nodes: exactly 5 succeed (each use is a replicated write on the
    // leader), the other 11 get the one answer for a bad secret ID (with the
    // lockout off: 5 failures would lock the role ID out, 403).
    root.post(
        "sys/auth/approle",
        json!({"type": "approle", "config": {"user_lockout_config": {"disable_lockout": true}}}),
    )
    .expect(204);
    root.post(
        "auth/approle/role/batch",
        json!({"secret_id_num_uses": 5, "token_policies": ["default"]}),
    )
    .expect(204);
    let role_id = root.get("auth/approle/role/batch/role-id").expect(200).body["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = root
        .post("auth/approle/role/batch/secret-id", json!({}))
        .expect(200)
        .body["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let outcomes: Vec<(u16, Vec<String>)> = std::thread::scope(|scope| {
        let logins: Vec<_> = (0..16)
            .map(|attempt| {
                let api = cluster.nodes[attempt % 3].api(None);
                let body = json!({"role_id": role_id, "secret_id": secret_id});
                scope.spawn(move || {
                    let answer = api.post("auth/approle/login", body);
                    (answer.status, answer.errors())
                })
            })
            .collect();
        logins
            .into_iter()
            .map(|login| login.join().unwrap())
            .collect()
    });
    let succeeded = outcomes.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(succeeded, 5, "{outcomes:?}");
    for (status, errors) in outcomes.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 400, "{errors:?}");
        assert_eq!(errors, &["invalid role or secret ID"]);
    }
    // Spent everywhere: the secret ID is gone on every node.
    for index in 0..3 {
        cluster.nodes[index]
            .api(None)
            .post(
                "auth/approle/login",
                json!({"role_id": role_id, "secret_id": secret_id}),
            )
            .expect(400);
    }

    // Lockouts are counted where logins run (the leader); every node's
    // sys/locked-users shows them, and an unlock through any node works.
    root.post(
        "sys/auth/userpass",
        json!({"type": "userpass", "config": {"user_lockout_config": {"lockout_threshold": "2"}}}),
    )
    .expect(204);
    root.post("auth/userpass/users/erin", json!({"password": "right"}))
        .expect(204);
    for index in 0..2 {
        cluster.nodes[index]
            .api(None)
            .post("auth/userpass/login/erin", json!({"password": "wrong"}))
            .expect(400);
    }
    cluster.nodes[2]
        .api(None)
        .post("auth/userpass/login/erin", json!({"password": "right"}))
        .expect(403);
    let follower = cluster.followers()[1];
    let locked = cluster.root(follower).get("sys/locked-users").expect(200);
    assert_eq!(locked.body["data"]["total"], 1, "{:?}", locked.body);
    let accessor = locked.body["data"]["by_namespace"][0]["mount_accessors"][0]["mount_accessor"]
        .as_str()
        .unwrap()
        .to_owned();
    cluster
        .root(follower)
        .post(
            &format!("sys/locked-users/{accessor}/unlock/erin"),
            json!({}),
        )
        .expect(204);
    cluster.nodes[follower]
        .api(None)
        .post("auth/userpass/login/erin", json!({"password": "right"}))
        .expect(200);
}

/// `openssl crl -text` of a PEM CRL.
fn crl_text(pem: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("openssl")
        .args(["crl", "-noout", "-text"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Writes `key-<writer>-<n>` through the nodes in `targets` (round robin) until
/// `stop`; returns every write that was acknowledged, with its value.
fn write_load(
    cluster: &Cluster,
    targets: Vec<usize>,
    writers: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<(String, String)>>> {
    (0..writers)
        .map(|writer| {
            let apis: Vec<_> = targets
                .iter()
                .map(|index| {
                    cluster.nodes[*index]
                        .api_with_timeout(Some(&cluster.keys.root_token), Duration::from_secs(15))
                })
                .collect();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let mut count = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("load-{writer}-{count}");
                    let value = format!("value-{writer}-{count}");
                    let api = &apis[count as usize % apis.len()];
                    count += 1;
                    if let Ok(answer) = api.try_call(
                        "POST",
                        &format!("secret/data/{key}"),
                        Some(json!({"data": {"v": value}})),
                    ) && answer.status == 200
                    {
                        acknowledged.push((key, value));
                    }
                }
                acknowledged
            })
        })
        .collect()
}

/// Asserts that every acknowledged write is on node `index` exactly once
/// (version 1), waiting a little for the node to apply what is committed.
fn assert_all_present(cluster: &Cluster, index: usize, writes: &[(String, String)]) {
    let api = cluster.root(index);
    for (key, value) in writes {
        let answer = wait_for(Duration::from_secs(10), "an acknowledged write", || {
            let answer = api.get(&format!("secret/data/{key}"));
            (answer.status == 200).then_some(answer)
        });
        assert_eq!(
            answer.body["data"]["data"]["v"],
            value.as_str(),
            "{key} on node {}",
            index + 1
        );
        assert_eq!(
            answer.body["data"]["metadata"]["version"],
            1,
            "{key} was applied twice on node {}",
            index + 1
        );
    }
}

#[test]
fn killing_the_leader_under_load_elects_a_new_one_and_loses_no_acknowledged_write() {
    let _serial = serial();
    let mut cluster = Cluster::start(12, 3);
    cluster.mount_kv();
    let old_leader = cluster.leader();
    let survivors: Vec<usize> = (0..3).filter(|index| *index != old_leader).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let writers = write_load(&cluster, (0..3).collect(), 4, stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    let killed = Instant::now();
    cluster.nodes[old_leader].server.kill9();
    let new_leader = wait_for(Duration::from_secs(10), "a new leader", || {
        cluster.leader_among(&survivors)
    });
    let election = killed.elapsed();
    // The first write that succeeds after the kill.
    let probe = cluster.root(new_leader);
    wait_for(Duration::from_secs(10), "a write after the kill", || {
        let answer = probe.try_call(
            "POST",
            "secret/data/probe",
            Some(json!({"data": {"v": "after-failover"}})),
        );
        answer
            .ok()
            .filter(|answer| answer.status == 200)
            .map(|_| ())
    });
    let failover = killed.elapsed();
    println!("new leader after {election:?}; first write after {failover:?}");
    assert!(
        election < Duration::from_secs(5),
        "no new leader within 5 s ({election:?})"
    );
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let acknowledged: Vec<(String, String)> = writers
        .into_iter()
        .flat_map(|writer| writer.join().unwrap())
        .collect();
    assert!(
        acknowledged.len() > 50,
        "too few writes to mean anything: {}",
        acknowledged.len()
    );
    for index in &survivors {
        assert_all_present(&cluster, *index, &acknowledged);
    }

    // The old leader comes back and catches up.
    cluster.nodes[old_leader].server.restart();
    cluster.unseal(old_leader);
    assert_all_present(&cluster, old_leader, &acknowledged);
    assert_eq!(
        kv_read(&cluster.root(old_leader), "probe").unwrap()["v"],
        "after-failover"
    );
}

#[test]
fn without_a_quorum_writes_fail_fast_reads_go_on_and_the_cluster_heals() {
    let _serial = serial();
    let cluster = Cluster::start(13, 3);
    cluster.mount_kv();
    let survivor = cluster.followers()[0];
    let stopped: Vec<usize> = (0..3).filter(|index| *index != survivor).collect();
    let api = cluster.root(survivor);
    let mut before = Vec::new();
    for count in 0..20 {
        api.kv_put(
            &format!("before-{count}"),
            json!({"v": format!("b{count}")}),
        );
        before.push((format!("before-{count}"), format!("b{count}")));
    }
    // Let the survivor apply everything before its peers go quiet.
    for (key, _) in &before {
        wait_for(Duration::from_secs(5), "the survivor to apply", || {
            kv_read(&api, key)
        });
    }

    for index in &stopped {
        cluster.nodes[*index].server.pause();
    }
    let started = Instant::now();
    let answer = cluster.nodes[survivor]
        .api_with_timeout(Some(&cluster.keys.root_token), Duration::from_secs(30))
        .post("secret/data/during", json!({"data": {"v": "d"}}));
    let elapsed = started.elapsed();
    println!(
        "without a quorum, a write failed after {elapsed:?}: {:?}",
        answer.body
    );
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert!(!answer.errors().is_empty(), "a 503 says why");
    assert!(
        elapsed < Duration::from_secs(10),
        "the write took {elapsed:?} to fail"
    );
    // Reads keep working from the survivor's replica.
    assert_eq!(kv_read(&api, "before-3").unwrap()["v"], "b3");
    cluster.nodes[survivor]
        .api(None)
        .get("sys/health?standbyok=true")
        .expect(200);

    for index in &stopped {
        cluster.nodes[*index].server.resume();
    }
    // Healed: writes succeed again, on every node.
    wait_for(Duration::from_secs(20), "writes to succeed again", || {
        let answer = api
            .try_call(
                "POST",
                "secret/data/after",
                Some(json!({"data": {"v": "a"}})),
            )
            .ok()?;
        (answer.status == 200).then_some(())
    });
    for index in 0..3 {
        assert_all_present(&cluster, index, &before);
        let after = wait_for(Duration::from_secs(10), "the healed write", || {
            kv_read(&cluster.root(index), "after")
        });
        assert_eq!(after["v"], "a");
        // The write refused with 503 may or may not have reached a log before the
        // pause (a 503 promises only that it was not committed in time), but
        // it is never applied twice.
        let during = cluster.root(index).get("secret/metadata/during");
        if during.status == 200 {
            assert_eq!(during.body["data"]["current_version"], 1);
        }
    }
}

#[test]
fn a_fourth_node_joining_after_ten_thousand_writes_gets_them_through_a_snapshot() {
    let _serial = serial();
    let mut cluster = Cluster::start(14, 3);
    cluster
        .root(cluster.leader())
        .post("sys/mounts/kv", json!({"type": "kv"}))
        .expect(204);
    let leader = cluster.leader();
    let total = 10_000;
    // Two writers: each write is its own log entry (the batcher merges only
    // what waits), so the log passes the snapshot threshold and is purged.
    let threads = 2;
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let api = cluster.root(leader);
            std::thread::spawn(move || {
                for count in (thread..total).step_by(threads) {
                    api.post(&format!("kv/item-{count}"), json!({"v": count}))
                        .expect(204);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }

    let newcomer = cluster.add_node();
    cluster.wait_for_voters(4);
    let api = cluster.root(newcomer);
    for count in (0..total).step_by(97).chain([total - 1]) {
        let answer = api.get(&format!("kv/item-{count}")).expect(200);
        assert_eq!(answer.body["data"]["v"], count);
    }
    assert!(
        cluster.nodes[newcomer]
            .server
            .log()
            .contains("installing a snapshot from the leader"),
        "the new node was not sent a snapshot:\n{}",
        cluster.nodes[newcomer].server.log()
    );
}

/// `coffer operator raft snapshot restore [-force] FILE` against `server`:
/// (exit code, stderr).
fn restore(server: &Server, token: &str, file: &std::path::Path, force: bool) -> (i32, String) {
    let mut args = vec!["operator", "raft", "snapshot", "restore"];
    if force {
        args.push("-force");
    }
    args.push(file.to_str().unwrap());
    let (code, _, stderr) = cli(server, Some(token), &args);
    (code, stderr)
}

/// A one-node cluster from a config file, initialized and unsealed, with its
/// first key share.
fn single_node(net: u8) -> (Cluster, String) {
    let cluster = Cluster::start(net, 1);
    let key = cluster.keys.shares[0].clone();
    (cluster, key)
}

#[test]
fn a_snapshot_restored_on_a_fresh_cluster_holds_all_data_and_unseals_with_the_original_keys() {
    let _serial = serial();
    let (original, _) = single_node(15);
    original.mount_kv();
    let root = original.root(0);
    let mut written = BTreeMap::new();
    for count in 0..50 {
        let value = format!("secret-{count}");
        root.kv_put(&format!("app/{count}"), json!({"v": value}));
        written.insert(count, value);
    }
    let reader = root.token_with_policy(
        "reader",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    );
    let file = original.nodes[0].server.workspace().join("backup.snap");
    let (code, _, stderr) = cli(
        &original.nodes[0].server,
        Some(&original.keys.root_token),
        &[
            "operator",
            "raft",
            "snapshot",
            "save",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let snapshot = std::fs::read(&file).unwrap();
    assert!(
        !snapshot.windows(9).any(|window| window == b"secret-17"),
        "the snapshot holds a plaintext value"
    );

    let (fresh, _) = single_node(16);
    fresh.mount_kv();
    fresh.root(0).kv_put("only-here", json!({"v": "fresh"}));
    let server = &fresh.nodes[0].server;

    // Damaged snapshots are refused and change nothing.
    let mut corrupt = snapshot.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x01;
    let truncated = snapshot[..snapshot.len() - 100].to_vec();
    for (bad, expected) in [
        (corrupt, "checksum"),
        (truncated, "snapshot"),
        (b"not a snapshot".to_vec(), "not a coffer snapshot"),
    ] {
        let path = server.workspace().join("bad.snap");
        std::fs::write(&path, bad).unwrap();
        let (code, stderr) = restore(server, &fresh.keys.root_token, &path, true);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("Code: 400"), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
    // Another cluster's snapshot needs -force.
    let (code, stderr) = restore(server, &fresh.keys.root_token, &file, false);
    assert_eq!(code, 2);
    assert!(stderr.contains("another cluster"), "{stderr}");
    assert_eq!(
        kv_read(&fresh.root(0), "only-here").unwrap()["v"],
        "fresh",
        "a refused restore changed the data"
    );

    let (code, stderr) = restore(server, &fresh.keys.root_token, &file, true);
    assert_eq!(code, 0, "{stderr}");
    // The fresh cluster now holds the original's keys: it seals, and the
    // original's key share unseals it.
    wait_for(Duration::from_secs(10), "the restored node to seal", || {
        let status = server.client(None).get("sys/seal-status");
        (status.body["sealed"] == true).then_some(())
    });
    let unsealer = server.client(None);
    unsealer
        .post("sys/unseal", json!({"key": fresh.keys.shares[0]}))
        .expect(200);
    let unseal = unsealer.post("sys/unseal", json!({"key": fresh.keys.shares[1]}));
    assert_eq!(
        unseal.status, 400,
        "the fresh cluster's own keys no longer open it: {:?}",
        unseal.body
    );
    assert_eq!(unsealer.get("sys/seal-status").body["sealed"], true);
    let mut restored = fresh;
    restored.keys = original.keys.clone();
    restored.unseal(0);
    let api = restored.root(0);
    for (count, value) in &written {
        assert_eq!(kv_read(&api, &format!("app/{count}")).unwrap()["v"], *value);
    }
    assert!(kv_read(&api, "only-here").is_none());
    // Tokens came along: the original's reader token reads, and is still bound
    // by its policy.
    let reader_api = restored.nodes[0].api(Some(&reader));
    assert_eq!(kv_read(&reader_api, "app/3").unwrap()["v"], "secret-3");
    reader_api
        .post("secret/data/app/3", json!({"data": {"v": "x"}}))
        .expect(403);
    // And it keeps taking writes.
    api.kv_put("after-restore", json!({"v": "ok"}));
}

#[test]
fn bad_joins_and_non_members_are_refused_and_change_nothing() {
    let _serial = serial();
    let mut cluster = Cluster::start(17, 3);
    cluster.mount_kv();
    let leader = cluster.leader();

    // A node that is not initialized, asked to join nowhere.
    let lone = Server::with_config(&format!(
        "storage \"raft\" {{\n  path = \"{{data_dir}}\"\n  node_id = \"lone\"\n}}\nlistener \"tcp\" {{\n  address = \"127.0.17.50:{}\"\n  tls_disable = true\n}}\n",
        coffer_tests::cluster::free_port("127.0.17.50")
    ));
    let api = lone.client(None);
    for (body, expected) in [
        (json!({}), "leader_api_addr is required"),
        (
            json!({"leader_api_addr": "127.0.0.1:8200"}),
            "not an http:// or https:// URL",
        ),
        (
            json!({"leader_api_addr": "http://127.0.17.99:1"}),
            "cannot reach the leader",
        ),
        (
            json!({"leader_api_addr": cluster.nodes[leader].api_addr, "leader_ca_cert": "junk"}),
            "CA certificate",
        ),
    ] {
        let answer = api.call("PUT", "sys/storage/raft/join", Some(body));
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert!(answer.errors()[0].contains(expected), "{:?}", answer.body);
        let status = api.get("sys/seal-status").expect(200);
        assert_eq!(
            status.body["initialized"], false,
            "a refused join changed state"
        );
    }

    // The leader's bootstrap endpoints refuse nonsense.
    let leader_api = cluster.nodes[leader].api(None);
    leader_api
        .post(
            "sys/storage/raft/bootstrap/challenge",
            json!({"server_id": "bad id;"}),
        )
        .expect(400);
    leader_api
        .post(
            "sys/storage/raft/bootstrap/challenge",
            json!({"server_id": "intruder"}),
        )
        .expect(200);
    let answer = leader_api.post(
        "sys/storage/raft/bootstrap/answer",
        json!({
            "server_id": "intruder",
            "answer": "AAAA",
            "public_key": base64_point(),
            "cluster_addr": "127.0.17.60:9",
        }),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(answer.errors()[0].contains("does not match"), "{answer:?}");
    assert_eq!(cluster.members().len(), 3, "a wrong answer added a member");
    // The answer is checked before anything is resolved: a wrong answer
    // naming a host gets the same refusal at once, and no DNS lookup.
    let started = Instant::now();
    let answer = leader_api.post(
        "sys/storage/raft/bootstrap/answer",
        json!({
            "server_id": "intruder",
            "answer": "AAAA",
            "public_key": base64_point(),
            "cluster_addr": "https://no-such-node.invalid:8201",
        }),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(answer.errors()[0].contains("does not match"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(1));

    // The cluster listener speaks only mutual TLS with the cluster's CA: no
    // certificate, or one from elsewhere, is refused in the handshake.
    let cluster_url = format!(
        "https://{}/v1/raft/append",
        cluster.nodes[leader].cluster_address
    );
    let (status, _) = curl(&["-k", "-X", "POST", "-d", "{}", &cluster_url]);
    assert_eq!(status, 0, "a client without a certificate got an answer");
    let workspace = lone.workspace();
    let key = workspace.join("intruder.key");
    let certificate = workspace.join("intruder.pem");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=node-0000000000000001.coffer",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        certificate.to_str().unwrap(),
    ]);
    let (status, _) = curl(&[
        "-k",
        "--cert",
        certificate.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "-H",
        "X-Coffer-Node: 1",
        "-X",
        "POST",
        "-d",
        "{}",
        &cluster_url,
    ]);
    assert_eq!(status, 0, "a certificate from another CA got an answer");

    // A removed member keeps running and campaigning, but its RPCs are refused:
    // the others go on committing without disruption.
    let removed = cluster.followers()[0];
    let removed_name = cluster.nodes[removed].name.clone();
    cluster
        .root(leader)
        .post(
            "sys/storage/raft/remove-peer",
            json!({"server_id": removed_name}),
        )
        .expect(204);
    assert_eq!(cluster.members().len(), 2);
    cluster
        .root(leader)
        .post(
            "sys/storage/raft/remove-peer",
            json!({"server_id": "no-such-node"}),
        )
        .expect(400);
    let api = cluster.root(leader);
    let started = Instant::now();
    let mut count = 0;
    while started.elapsed() < Duration::from_secs(5) {
        api.kv_put(&format!("after-removal-{count}"), json!({"v": count}));
        count += 1;
    }
    assert!(count > 10, "only {count} writes in 5 s");
    assert_eq!(
        cluster.leader(),
        leader,
        "the removed node disrupted the leader"
    );
    assert!(
        kv_read(&cluster.root(removed), "after-removal-5").is_none(),
        "a removed member still receives the log"
    );
    drop(cluster.nodes.remove(removed));

    // After all those refusals, the lone node joins by hand through the CLI and
    // unseals with the cluster's key shares.
    let leader = cluster.leader();
    let (code, stdout, stderr) = cli(
        &lone,
        None,
        &["operator", "raft", "join", &cluster.nodes[leader].api_addr],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("true"), "{stdout}");
    for share in &cluster.keys.shares[..cluster.keys.threshold] {
        lone.client(None)
            .post("sys/unseal", json!({"key": share}))
            .expect(200);
    }
    wait_for(Duration::from_secs(30), "the lone node to unseal", || {
        (lone.client(None).get("sys/seal-status").body["sealed"] == false).then_some(())
    });
    assert!(
        cluster.members().iter().any(|(name, _)| name == "lone"),
        "{:?}",
        cluster.members()
    );
    let api = lone.client(Some(&cluster.keys.root_token));
    assert_eq!(kv_read(&api, "after-removal-5").unwrap()["v"], 5);
}

/// A valid uncompressed P-256 point (the curve's generator), base64.
fn base64_point() -> String {
    use base64::Engine as _;
    let point = hex::decode(
        "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
    )
    .unwrap();
    base64::engine::general_purpose::STANDARD.encode(point)
}

/// Concurrent `sys/rotate` calls during writes leave every node with one
/// keyring: every value reads on every node, and after all three restart.
#[test]
fn concurrent_rotations_during_writes_leave_every_value_readable_everywhere() {
    let _serial = serial();
    let mut cluster = Cluster::start(18, 3);
    cluster.mount_kv();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = write_load(&cluster, (0..3).collect(), 3, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let rotations: Vec<_> = (0..8)
        .map(|index| {
            let api = cluster.root(index % 3);
            std::thread::spawn(move || api.call("PUT", "sys/rotate", None).status)
        })
        .collect();
    for rotation in rotations {
        assert_eq!(rotation.join().unwrap(), 204);
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let acknowledged: Vec<(String, String)> = writers
        .into_iter()
        .flat_map(|writer| writer.join().unwrap())
        .collect();
    assert!(acknowledged.len() > 20, "{} writes", acknowledged.len());
    let term = cluster
        .root(cluster.leader())
        .get("sys/key-status")
        .expect(200)
        .body["term"]
        .clone();
    assert_eq!(term, 9, "eight rotations, eight new terms");
    for index in 0..3 {
        assert_all_present(&cluster, index, &acknowledged);
    }
    for index in 0..3 {
        cluster.nodes[index].server.restart();
    }
    for index in 0..3 {
        cluster.unseal(index);
    }
    wait_for(Duration::from_secs(30), "a leader", || {
        cluster.leader_among(&[0, 1, 2])
    });
    for index in 0..3 {
        assert_all_present(&cluster, index, &acknowledged);
    }
}
