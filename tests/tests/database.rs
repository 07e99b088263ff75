//! The database engine and leases against real PostgreSQL and MariaDB servers:
//! users that log in with exactly the granted rights and are dropped on time,
//! across restarts, leader failover and a database that is down at expiry;
//! static roles; renewals; and bad input that creates nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use coffer_tests::cluster::{Cluster, wait_for};
use coffer_tests::databases::{MariaDb, Postgres};
use coffer_tests::{Api, Server};
use serde_json::json;

/// The tests share two cores with database servers: one at a time keeps the
/// timing checks honest.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const CREATE_PG: &str = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON items TO "{{name}}";"#;

/// A PostgreSQL server with a readable `items` table and a `payroll` table
/// nobody is granted.
fn postgres() -> Postgres {
    let postgres = Postgres::start();
    postgres.admin(
        "CREATE TABLE items (id int PRIMARY KEY, name text); \
         INSERT INTO items VALUES (1, 'one'), (2, 'two'); \
         CREATE TABLE payroll (salary int); INSERT INTO payroll VALUES (100);",
    );
    postgres
}

/// Mounts `database/` and configures connection `pg` with role `app`.
fn configure_postgres(api: &Api, postgres: &Postgres, ttl: &str, max_ttl: &str) {
    postgres.mount_connection(api, &["app", "static-app", "broken"]);
    api.post(
        "database/roles/app",
        json!({
            "db_name": "pg",
            "creation_statements": [CREATE_PG],
            "default_ttl": ttl,
            "max_ttl": max_ttl,
        }),
    )
    .expect(204);
}

struct Credentials {
    username: String,
    password: String,
    lease_id: String,
    lease_duration: u64,
}

fn credentials(api: &Api, role: &str) -> Credentials {
    let answer = api.get(&format!("database/creds/{role}")).expect(200);
    let body = &answer.body;
    Credentials {
        username: body["data"]["username"].as_str().unwrap().to_owned(),
        password: body["data"]["password"].as_str().unwrap().to_owned(),
        lease_id: body["lease_id"].as_str().unwrap().to_owned(),
        lease_duration: body["lease_duration"].as_u64().unwrap(),
    }
}

/// Waits until `role` no longer exists in PostgreSQL; returns how long after
/// `expiry` that was (negative: before).
fn wait_dropped(postgres: &Postgres, role: &str, expiry: Instant, limit: Duration) -> f64 {
    wait_for(limit, &format!("role {role} to be dropped"), || {
        (!postgres.role_exists(role)).then_some(())
    });
    let now = Instant::now();
    if now >= expiry {
        (now - expiry).as_secs_f64()
    } else {
        -(expiry - now).as_secs_f64()
    }
}

#[test]
fn postgres_users_have_exactly_the_granted_rights_and_are_dropped_on_time() {
    let _serial = serial();
    let postgres = postgres();
    let server = Server::dev();
    let api = server.root();
    configure_postgres(&api, &postgres, "3s", "1m");

    let issued = Instant::now();
    let creds = credentials(&api, "app");
    assert!(
        creds.lease_id.starts_with("database/creds/app/"),
        "{}",
        creds.lease_id
    );
    assert_eq!(creds.lease_duration, 3);
    assert!(
        creds.username.starts_with("v-root-app-"),
        "{}",
        creds.username
    );
    assert!(creds.username.len() <= 63);
    assert_eq!(
        postgres
            .query_as(
                &creds.username,
                &creds.password,
                "SELECT name FROM items WHERE id = 2"
            )
            .unwrap()
            .as_deref(),
        Some("two")
    );
    let refused = postgres
        .query_as(
            &creds.username,
            &creds.password,
            "SELECT salary::text FROM payroll",
        )
        .unwrap_err();
    assert!(refused.contains("permission denied"), "{refused}");
    let refused = postgres
        .query_as(
            &creds.username,
            &creds.password,
            "INSERT INTO items VALUES (3, 'x') RETURNING 'x'",
        )
        .unwrap_err();
    assert!(refused.contains("permission denied"), "{refused}");
    let lookup = api
        .call(
            "PUT",
            "sys/leases/lookup",
            Some(json!({"lease_id": creds.lease_id})),
        )
        .expect(200);
    assert_eq!(lookup.body["data"]["id"], creds.lease_id.as_str());
    assert!(lookup.body["data"]["ttl"].as_u64().unwrap() <= 3);

    // An open session of the user is ended with it.
    let mut session = postgres.session(&creds.username, &creds.password);
    let late = wait_dropped(
        &postgres,
        &creds.username,
        issued + Duration::from_secs(3),
        Duration::from_secs(10),
    );
    assert!(late > -0.5, "dropped {late:.2}s before the lease ended");
    assert!(late < 2.5, "dropped {late:.2}s after the lease ended");
    let still_open = coffer_tests::databases::runtime().block_on(async {
        sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&mut session)
            .await
    });
    assert!(
        still_open.is_err(),
        "the revoked user's session still answers"
    );
    let login = postgres.query_as(&creds.username, &creds.password, "SELECT 'x'");
    assert!(login.is_err(), "a revoked user still logs in");
    api.call(
        "PUT",
        "sys/leases/lookup",
        Some(json!({"lease_id": creds.lease_id})),
    )
    .expect(400);
    let log = server.log();
    assert!(
        !log.contains(&creds.password),
        "a password is in the server log"
    );
    assert!(
        !log.contains(&postgres.password),
        "the admin password is in the server log"
    );
}

#[test]
fn renewals_extend_within_max_ttl_and_are_capped_then_refused() {
    let _serial = serial();
    let postgres = postgres();
    let server = Server::dev();
    let api = server.root();
    configure_postgres(&api, &postgres, "3s", "6s");
    let issued = Instant::now();
    let creds = credentials(&api, "app");

    std::thread::sleep(Duration::from_secs(2));
    let renewed = api
        .call(
            "PUT",
            "sys/leases/renew",
            Some(json!({"lease_id": creds.lease_id, "increment": 3})),
        )
        .expect(200);
    assert_eq!(renewed.body["lease_id"], creds.lease_id.as_str());
    assert!(renewed.body["renewable"].as_bool().unwrap());
    let duration = renewed.body["lease_duration"].as_u64().unwrap();
    assert!((2..=3).contains(&duration), "renewed for {duration}s");
    // Past the original 3 s the user still works: the renewal moved VALID UNTIL.
    std::thread::sleep(Duration::from_millis(1_800));
    assert!(issued.elapsed() > Duration::from_secs(3));
    postgres
        .query_as(&creds.username, &creds.password, "SELECT 'ok'")
        .expect("a renewed user logs in past its first TTL");

    // Asking past max_ttl is capped at it, with Vault's warning.
    let capped = api
        .call(
            "PUT",
            "sys/leases/renew",
            Some(json!({"lease_id": creds.lease_id, "increment": "1h"})),
        )
        .expect(200);
    let duration = capped.body["lease_duration"].as_u64().unwrap();
    assert!(duration <= 3, "capped at max_ttl, got {duration}s");
    let warnings = capped.body["warnings"].to_string();
    assert!(warnings.contains("capped"), "{warnings}");

    // The CLI sees the same lease.
    let token = server.root_token.as_deref();
    let (code, out, err) = coffer_tests::cli(
        &server,
        token,
        &["lease", "lookup", "-format=json", &creds.lease_id],
    );
    assert_eq!(code, 0, "{err}");
    let looked_up: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(looked_up["data"]["id"], creds.lease_id.as_str());
    let (code, out, err) = coffer_tests::cli(&server, token, &["lease", "renew", &creds.lease_id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&creds.lease_id), "{out}");

    // At max_ttl it is revoked, and renewing is refused.
    wait_dropped(
        &postgres,
        &creds.username,
        issued + Duration::from_secs(6),
        Duration::from_secs(10),
    );
    let refused = api
        .call(
            "PUT",
            "sys/leases/renew",
            Some(json!({"lease_id": creds.lease_id})),
        )
        .expect(400);
    assert!(!refused.errors().is_empty());
}

#[test]
fn mariadb_users_have_exactly_the_granted_rights_and_are_revoked() {
    let _serial = serial();
    let mariadb = MariaDb::start();
    let server = Server::dev();
    let api = server.root();
    api.post("sys/mounts/db", json!({"type": "database"}))
        .expect(204);
    api.post(
        "db/config/maria",
        json!({
            "plugin_name": "mysql-database-plugin",
            "connection_url": mariadb.template(),
            "username": "admin",
            "password": mariadb.password,
            "allowed_roles": "reader",
        }),
    )
    .expect(204);
    let config = api.get("db/config/maria").expect(200);
    assert!(
        !config.body.to_string().contains(&mariadb.password),
        "a read returned the password"
    );
    assert_eq!(
        config.body["data"]["connection_details"]["username"],
        "admin"
    );
    api.post(
        "db/roles/reader",
        json!({
            "db_name": "maria",
            "creation_statements": "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON app.* TO '{{name}}'@'%';",
            "default_ttl": 3,
            "max_ttl": 60,
        }),
    )
    .expect(204);

    let first = {
        let answer = api.get("db/creds/reader").expect(200);
        (
            answer.body["data"]["username"].as_str().unwrap().to_owned(),
            answer.body["data"]["password"].as_str().unwrap().to_owned(),
            answer.body["lease_id"].as_str().unwrap().to_owned(),
        )
    };
    assert!(first.0.len() <= 32, "{} is too long for MySQL", first.0);
    assert_eq!(
        mariadb
            .query_as(
                &first.0,
                &first.1,
                "SELECT CAST(COUNT(*) AS CHAR) FROM app.items"
            )
            .unwrap()
            .as_deref(),
        Some("2")
    );
    let refused = mariadb
        .query_as(&first.0, &first.1, "SELECT user FROM mysql.user LIMIT 1")
        .unwrap_err();
    assert!(refused.contains("denied"), "{refused}");
    let refused = mariadb
        .query_as(&first.0, &first.1, "CREATE DATABASE other")
        .unwrap_err();
    assert!(refused.contains("denied"), "{refused}");

    // A synchronous revoke drops the user before it answers.
    api.call(
        "PUT",
        "sys/leases/revoke",
        Some(json!({"lease_id": first.2})),
    )
    .expect(204);
    assert_eq!(mariadb.user_count(&first.0), 0);
    assert!(mariadb.query_as(&first.0, &first.1, "SELECT 'x'").is_err());

    // Expiry drops the next one (MariaDB has no expiry of its own).
    let answer = api.get("db/creds/reader").expect(200);
    let username = answer.body["data"]["username"].as_str().unwrap().to_owned();
    assert_eq!(mariadb.user_count(&username), 1);
    wait_for(
        Duration::from_secs(8),
        "the MariaDB user to be dropped",
        || (mariadb.user_count(&username) == 0).then_some(()),
    );
}

#[test]
fn leases_survive_a_restart_and_are_revoked_on_time() {
    let _serial = serial();
    let postgres = postgres();
    let mut server = Server::dev();
    let api = server.root();
    configure_postgres(&api, &postgres, "6s", "1m");
    let issued = Instant::now();
    let creds: Vec<Credentials> = (0..3).map(|_| credentials(&api, "app")).collect();

    server.restart();
    let unseal_key = server.unseal_key.clone().unwrap();
    server
        .client(None)
        .call("PUT", "sys/unseal", Some(json!({"key": unseal_key})))
        .expect(200);
    for creds in &creds {
        assert!(postgres.role_exists(&creds.username));
    }
    for creds in &creds {
        let late = wait_dropped(
            &postgres,
            &creds.username,
            issued + Duration::from_secs(6),
            Duration::from_secs(15),
        );
        assert!(late < 2.5, "dropped {late:.2}s after the lease ended");
    }
    assert!(server.log().contains("loaded the lease schedule"));
}

#[test]
fn a_new_leader_revokes_on_time_after_the_leader_is_killed() {
    let _serial = serial();
    let postgres = postgres();
    let mut cluster = Cluster::start(21, 3);
    let leader = cluster.leader();
    let api = cluster.root(leader);
    configure_postgres(&api, &postgres, "5s", "1m");
    // Credentials asked of a standby are issued by the leader.
    let follower = cluster.followers()[0];
    let issued = Instant::now();
    let through_standby = credentials(&cluster.root(follower), "app");
    let direct = credentials(&api, "app");

    cluster.nodes[leader].server.kill9();
    for creds in [&through_standby, &direct] {
        let late = wait_dropped(
            &postgres,
            &creds.username,
            issued + Duration::from_secs(5),
            Duration::from_secs(20),
        );
        assert!(late < 4.0, "dropped {late:.2}s after the lease ended");
    }
    let survivors: Vec<usize> = (0..3).filter(|index| *index != leader).collect();
    let new_leader = cluster.leader_among(&survivors).expect("a new leader");
    cluster
        .root(new_leader)
        .call(
            "PUT",
            "sys/leases/lookup",
            Some(json!({"lease_id": direct.lease_id})),
        )
        .expect(400);
}

#[test]
fn revocation_retries_while_the_database_is_down_and_succeeds_once_it_is_back() {
    let _serial = serial();
    let mut postgres = postgres();
    let server = Server::dev();
    let api = server.root();
    configure_postgres(&api, &postgres, "2s", "1m");
    let creds = credentials(&api, "app");

    postgres.stop();
    // Asking meanwhile is the database's fault, not the client's: 502.
    let refused = api.get("database/creds/app").expect(502);
    assert!(!refused.errors().is_empty());
    // Past expiry the lease is kept while attempts fail (each waits out the
    // pool's 5 s connect timeout).
    wait_for(Duration::from_secs(20), "a failed revocation", || {
        server
            .log()
            .contains("revocation failed; retrying")
            .then_some(())
    });
    let lookup = api
        .call(
            "PUT",
            "sys/leases/lookup",
            Some(json!({"lease_id": creds.lease_id})),
        )
        .expect(200);
    assert_eq!(lookup.body["data"]["ttl"], 0);
    assert!(server.log().contains("revocation failed; retrying"));
    postgres.start_again();
    wait_dropped(
        &postgres,
        &creds.username,
        Instant::now(),
        Duration::from_secs(40),
    );
    wait_for(Duration::from_secs(5), "the lease to be gone", || {
        (api.call(
            "PUT",
            "sys/leases/lookup",
            Some(json!({"lease_id": creds.lease_id})),
        )
        .status
            == 400)
            .then_some(())
    });
}

#[test]
fn static_roles_rotate_on_schedule_and_on_demand() {
    let _serial = serial();
    let postgres = postgres();
    postgres.admin("CREATE ROLE reporting WITH LOGIN PASSWORD 'initial-password'; GRANT SELECT ON items TO reporting;");
    let server = Server::dev();
    let api = server.root();
    configure_postgres(&api, &postgres, "1h", "2h");
    api.post(
        "database/static-roles/static-app",
        json!({"db_name": "pg", "username": "reporting", "rotation_period": "6s"}),
    )
    .expect(204);
    let read = |api: &Api| {
        let answer = api.get("database/static-creds/static-app").expect(200);
        assert_eq!(answer.body["data"]["username"], "reporting");
        (
            answer.body["data"]["password"].as_str().unwrap().to_owned(),
            answer.body["data"]["ttl"].as_u64().unwrap(),
        )
    };
    let (first, ttl) = read(&api);
    assert_ne!(
        first, "initial-password",
        "creating a static role rotates it"
    );
    assert!(ttl <= 6);
    assert!(
        postgres
            .query_as("reporting", "initial-password", "SELECT 'x'")
            .is_err()
    );
    postgres
        .query_as("reporting", &first, "SELECT 'x'")
        .expect("the rotated password works");

    // On schedule.
    let second = wait_for(Duration::from_secs(12), "a scheduled rotation", || {
        let (password, _) = read(&api);
        (password != first).then_some(password)
    });
    assert!(
        postgres
            .query_as("reporting", &first, "SELECT 'x'")
            .is_err()
    );
    postgres
        .query_as("reporting", &second, "SELECT 'x'")
        .expect("the new password works");

    // On demand.
    api.post("database/rotate-role/static-app", json!({}))
        .expect(204);
    let (third, _) = read(&api);
    assert_ne!(third, second);
    assert!(
        postgres
            .query_as("reporting", &second, "SELECT 'x'")
            .is_err()
    );
    postgres
        .query_as("reporting", &third, "SELECT 'x'")
        .expect("the password after rotate-role works");
    assert!(!server.log().contains(&third));
}

#[test]
fn rotate_root_leaves_a_password_only_coffer_knows() {
    let _serial = serial();
    let postgres = postgres();
    let server = Server::dev();
    let api = server.root();
    configure_postgres(&api, &postgres, "1m", "1h");
    postgres.admin("CREATE ROLE vaultadmin WITH LOGIN SUPERUSER PASSWORD 'first-admin-password'");
    api.post(
        "database/config/pg",
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": postgres.template(),
            "username": "vaultadmin",
            "password": "first-admin-password",
            "allowed_roles": ["app"],
        }),
    )
    .expect(204);
    api.post("database/rotate-root/pg", json!({})).expect(204);
    assert!(
        postgres
            .query_as("vaultadmin", "first-admin-password", "SELECT 'x'")
            .is_err(),
        "the old admin password still works"
    );
    let creds = credentials(&api, "app");
    postgres
        .query_as(&creds.username, &creds.password, "SELECT 'x'")
        .expect("credentials after rotate-root");
    api.post("database/reset/pg", json!({})).expect(204);
    credentials(&api, "app");
}

#[test]
fn revoking_a_token_or_a_prefix_revokes_its_leases() {
    let _serial = serial();
    let postgres = postgres();
    let server = Server::dev();
    let api = server.root();
    configure_postgres(&api, &postgres, "1h", "2h");
    let token = api.token_with_policy(
        "creds",
        r#"path "database/creds/app" { capabilities = ["read"] }"#,
    );
    let holder = api.with_token(&token);
    let held = credentials(&holder, "app");
    assert!(
        held.username.starts_with("v-token-app-"),
        "{}",
        held.username
    );
    let kept = credentials(&api, "app");
    api.post("auth/token/revoke", json!({"token": token}))
        .expect(204);
    wait_dropped(
        &postgres,
        &held.username,
        Instant::now(),
        Duration::from_secs(5),
    );
    assert!(
        postgres.role_exists(&kept.username),
        "another token's lease was revoked"
    );

    let more: Vec<Credentials> = (0..2).map(|_| credentials(&api, "app")).collect();
    api.list("sys/leases/lookup/database/creds/app/")
        .expect(200)
        .body["data"]["keys"]
        .as_array()
        .map(|keys| assert_eq!(keys.len(), 3))
        .unwrap();
    let (code, out, err) = coffer_tests::cli(
        &server,
        server.root_token.as_deref(),
        &["lease", "revoke", "-prefix", "database/creds/app"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Success"), "{out}");
    for creds in more.iter().chain([&kept]) {
        assert!(!postgres.role_exists(&creds.username));
    }
    // A token without sudo may not revoke by prefix.
    let plain = api.token_with_policy(
        "prefix",
        r#"path "sys/leases/revoke-prefix/*" { capabilities = ["update"] }"#,
    );
    api.with_token(&plain)
        .post("sys/leases/revoke-prefix/database/", json!({}))
        .expect(403);
}

#[test]
fn bad_input_gets_clear_errors_and_creates_nothing() {
    let _serial = serial();
    let postgres = postgres();
    let server = Server::dev();
    let api = server.root();
    configure_postgres(&api, &postgres, "1m", "1h");
    let users_before = postgres.roles_like("v-");

    // A creation statement the database refuses: its message, no password, no user.
    api.post(
        "database/roles/broken",
        json!({
            "db_name": "pg",
            "creation_statements": [r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'; GRANT SELECT ON missing_table TO "{{name}}";"#],
        }),
    )
    .expect(204);
    let refused = api.get("database/creds/broken").expect(400);
    let message = refused.errors().join(" ");
    assert!(message.contains("missing_table"), "{message}");
    assert_eq!(
        postgres.roles_like("v-"),
        users_before,
        "a user was left behind"
    );

    // Unknown role, unknown connection, a role not allowed on its connection.
    let message = api
        .get("database/creds/nobody")
        .expect(400)
        .errors()
        .join(" ");
    assert!(message.contains("nobody"), "{message}");
    api.post(
        "database/roles/orphan",
        json!({"db_name": "nowhere", "creation_statements": [CREATE_PG]}),
    )
    .expect(400);
    api.post(
        "database/roles/outsider",
        json!({"db_name": "pg", "creation_statements": [CREATE_PG]}),
    )
    .expect(204);
    let message = api
        .get("database/creds/outsider")
        .expect(400)
        .errors()
        .join(" ");
    assert!(message.contains("allowed_roles"), "{message}");

    // SQL in a role name never reaches a statement.
    for name in [r#"x";DROP TABLE items;--"#, "x'%20OR%20'1'='1", "a%20b"] {
        let answer = api.post(
            &format!("database/roles/{name}"),
            json!({"db_name": "pg", "creation_statements": [CREATE_PG]}),
        );
        assert_eq!(answer.status, 400, "{name}: {:?}", answer.body);
    }
    assert_eq!(
        postgres
            .query_as(
                "postgres",
                &postgres.password,
                "SELECT count(*)::text FROM items"
            )
            .unwrap()
            .as_deref(),
        Some("2")
    );

    // A wrong admin password with verify_connection: 400, and the password is
    // not echoed.
    let answer = api.post(
        "database/config/wrong",
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": postgres.template(),
            "username": "postgres",
            "password": "Wrong-Password-123",
            "verify_connection": true,
        }),
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(!answer.body.to_string().contains("Wrong-Password-123"));
    api.get("database/config/wrong").expect(404);

    // Malformed fields and unknown plugins.
    for body in [
        json!({"plugin_name": "oracle-database-plugin", "connection_url": "x"}),
        json!({"plugin_name": "postgresql-database-plugin"}),
        json!({"plugin_name": "postgresql-database-plugin", "connection_url": postgres.template(), "max_open_connections": "many"}),
    ] {
        let answer = api.post("database/config/bad", body);
        assert_eq!(answer.status, 400, "{:?}", answer.body);
    }
    api.post(
        "database/roles/app",
        json!({"db_name": "pg", "creation_statements": [CREATE_PG], "default_ttl": "soon"}),
    )
    .expect(400);
    api.post("database/roles/empty", json!({"db_name": "pg"}))
        .expect(400);
    let answer = api.call("PUT", "sys/leases/lookup", Some(json!({})));
    assert_eq!(answer.status, 400);
    let answer = api.call(
        "PUT",
        "sys/leases/renew",
        Some(json!({"lease_id": "database/creds/app/nope"})),
    );
    assert_eq!(answer.status, 400);
    assert_eq!(postgres.roles_like("v-"), users_before);
}

#[test]
fn passwords_follow_the_connections_password_policy() {
    let _serial = serial();
    let postgres = postgres();
    let server = Server::dev();
    let api = server.root();
    configure_postgres(&api, &postgres, "1m", "1h");
    let policy = "length = 32\nrule \"charset\" {\n  charset = \"abcdef0123456789\"\n  min-chars = 4\n}\nrule \"charset\" {\n  charset = \"!#%\"\n  min-chars = 2\n}\n";
    api.call(
        "PUT",
        "sys/policies/password/hexish",
        Some(json!({"policy": policy})),
    )
    .expect(204);
    assert_eq!(
        api.get("sys/policies/password/hexish").expect(200).body["data"]["policy"],
        policy
    );
    let list = api.list("sys/policies/password").expect(200);
    assert_eq!(list.body["data"]["keys"], json!(["hexish"]));
    let generated = api.get("sys/policies/password/hexish/generate").expect(200);
    let password = generated.body["data"]["password"].as_str().unwrap();
    assert_eq!(password.len(), 32);
    assert!(
        password.chars().all(|c| "abcdef0123456789!#%".contains(c)),
        "{password}"
    );
    assert!(password.chars().filter(|c| "!#%".contains(*c)).count() >= 2);

    // A connection that names it makes passwords with it.
    api.post("database/config/pg", json!({"password_policy": "hexish"}))
        .expect(204);
    assert_eq!(
        api.get("database/config/pg").expect(200).body["data"]["password_policy"],
        "hexish"
    );
    let creds = credentials(&api, "app");
    assert_eq!(creds.password.len(), 32);
    assert!(
        creds
            .password
            .chars()
            .all(|c| "abcdef0123456789!#%".contains(c)),
        "{}",
        creds.password
    );
    postgres
        .query_as(&creds.username, &creds.password, "SELECT 'x'")
        .expect("a user with a policy password logs in");

    // Bad input: an unknown policy, a policy with a quote, a malformed one.
    let answer = api.post("database/config/pg", json!({"password_policy": "nope"}));
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    for bad in [
        "length = 10\nrule \"charset\" { charset = \"ab'\" }",
        "length = 2\nrule \"charset\" { charset = \"ab\" }",
        "length = ",
    ] {
        let answer = api.call(
            "PUT",
            "sys/policies/password/bad",
            Some(json!({"policy": bad})),
        );
        assert_eq!(answer.status, 400, "{bad}: {:?}", answer.body);
    }
    api.get("sys/policies/password/bad").expect(404);
    api.get("sys/policies/password/nope/generate").expect(400);
    api.delete("sys/policies/password/hexish").expect(204);
    // The connection now names a policy that is gone: a clear 400, no user.
    let before = postgres.roles_like("v-");
    let message = api.get("database/creds/app").expect(400).errors().join(" ");
    assert!(message.contains("hexish"), "{message}");
    assert_eq!(postgres.roles_like("v-"), before);
}

/// sqlx logs every statement at DEBUG and slow ones at WARN, passwords and
/// all: the server at `debug` must still write no password, token, unseal key
/// or KV value, and a password written into `connection_url` reads back hidden.
#[test]
fn no_secret_reaches_the_log_even_at_debug() {
    let _serial = serial();
    let postgres = postgres();
    let server = Server::dev_logging("debug");
    let api = server.root();
    configure_postgres(&api, &postgres, "1m", "1h");
    // A slow creation statement: sqlx would log it at WARN.
    let slow = format!("SELECT pg_sleep(1.2); {CREATE_PG}");
    api.post(
        "database/roles/slow",
        json!({"db_name": "pg", "creation_statements": [slow], "default_ttl": "1m"}),
    )
    .expect(204);
    api.post(
        "database/config/pg",
        json!({"allowed_roles": ["app", "slow"]}),
    )
    .expect(204);
    let creds = credentials(&api, "slow");
    assert!(postgres.role_exists(&creds.username));
    let other = credentials(&api, "app");
    api.kv_put("logged", json!({"value": "kv-value-never-logged"}));
    let token = api
        .post("auth/token/create", json!({"policies": ["default"]}))
        .expect(200)
        .body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .client(Some(&token))
        .get("auth/token/lookup-self")
        .expect(200);

    // A password inside the URL is hidden when read back.
    api.post(
        "database/config/literal",
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": postgres.admin_url(),
            "verify_connection": true,
        }),
    )
    .expect(204);
    let read = api.get("database/config/literal").expect(200);
    let url = read.body["data"]["connection_details"]["connection_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(url.contains(":*****@"), "{url}");
    assert!(!read.body.to_string().contains(&postgres.password));

    let log = server.log();
    assert!(log.contains("DEBUG"), "the server logged at debug");
    for secret in [
        creds.password.as_str(),
        other.password.as_str(),
        "kv-value-never-logged",
        token.as_str(),
        postgres.password.as_str(),
        server.unseal_key.as_deref().unwrap(),
    ] {
        assert!(!log.contains(secret), "{secret:?} is in the server's log");
    }
}

/// `rotate-root` stores the new password before it changes the database: a
/// server killed between any two steps comes back knowing the database's
/// password (`reset` settles it), and the leases it issued still revoke.
#[test]
fn a_root_rotation_cut_short_by_kill_9_loses_no_password() {
    let _serial = serial();
    let postgres = postgres();
    postgres.admin("CREATE ROLE rotadmin WITH LOGIN SUPERUSER PASSWORD 'rot-admin-initial';");
    let mut server =
        Server::dev_with_environment(&[("COFFER_TEST_PAUSE_ROTATION", "after-pending")]);
    let api = server.root();
    api.post("sys/mounts/database", json!({"type": "database"}))
        .expect(204);
    api.post(
        "database/config/rot",
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": postgres.template(),
            "username": "rotadmin",
            "password": "rot-admin-initial",
            "allowed_roles": ["app"],
        }),
    )
    .expect(204);
    api.post(
        "database/roles/app",
        json!({"db_name": "rot", "creation_statements": [CREATE_PG], "default_ttl": "1h"}),
    )
    .expect(204);
    let before = credentials(&api, "app");

    let unseal = |server: &Server| {
        let key = server.unseal_key.clone().unwrap();
        server
            .client(None)
            .call("PUT", "sys/unseal", Some(json!({"key": key})))
            .expect(200);
    };
    // Killed at each step in turn: before the database changed, then after.
    for (step, next) in [
        ("after-pending", Some("after-database")),
        ("after-database", None),
    ] {
        let rotating = server.client(Some("root"));
        std::thread::spawn(move || rotating.try_call("POST", "database/rotate-root/rot", None));
        wait_for(Duration::from_secs(20), "the rotation to pause", || {
            server.log().contains("pausing a rotation").then_some(())
        });
        server.kill9();
        // The next run pauses at the next step (or not at all).
        match next {
            Some(next) => server.set_environment(&[("COFFER_TEST_PAUSE_ROTATION", next)]),
            None => server.clear_environment(),
        }
        server.restart();
        unseal(&server);
        let api = server.root();
        api.post("database/reset/rot", json!({})).expect(204);
        let creds = credentials(&api, "app");
        assert!(postgres.role_exists(&creds.username), "{step}");
        api.post("sys/leases/revoke", json!({"lease_id": creds.lease_id}))
            .expect(204);
        wait_for(Duration::from_secs(10), "the new user dropped", || {
            (!postgres.role_exists(&creds.username)).then_some(())
        });
        // Clear the log's marker for the next round.
        std::fs::write(server.workspace().join("server.log"), "").unwrap();
    }
    // The first lease, issued before both crashes, still revokes.
    let api = server.root();
    api.post("sys/leases/revoke", json!({"lease_id": before.lease_id}))
        .expect(204);
    wait_for(Duration::from_secs(10), "the first user dropped", || {
        (!postgres.role_exists(&before.username)).then_some(())
    });
    // The admin's password was rotated: the initial one no longer logs in.
    assert!(
        postgres
            .query_as("rotadmin", "rot-admin-initial", "SELECT 1")
            .is_err()
    );
}

/// A static role's rotation cut short by kill -9 after the database changed
/// (its new password known only there) is rotated again once the server is
/// back: the password it hands out logs in.
#[test]
fn a_static_rotation_cut_short_by_kill_9_is_done_again() {
    let _serial = serial();
    let postgres = postgres();
    postgres.admin("CREATE ROLE cutshort WITH LOGIN PASSWORD 'initial-password';");
    let mut server =
        Server::dev_with_environment(&[("COFFER_TEST_PAUSE_ROTATION", "after-static")]);
    let api = server.root();
    configure_postgres(&api, &postgres, "1h", "2h");
    let creating = server.client(Some("root"));
    std::thread::spawn(move || {
        creating.try_call(
            "POST",
            "database/static-roles/static-app",
            Some(json!({"db_name": "pg", "username": "cutshort", "rotation_period": "1h"})),
        )
    });
    wait_for(Duration::from_secs(20), "the rotation to pause", || {
        let log = server.log();
        assert!(!log.contains("refused the rotation"), "{log}");
        log.contains("pausing a rotation").then_some(())
    });
    // The database has a password no record holds.
    assert!(
        postgres
            .query_as("cutshort", "initial-password", "SELECT 1")
            .is_err()
    );
    server.kill9();
    server.clear_environment();
    server.restart();
    let key = server.unseal_key.clone().unwrap();
    server
        .client(None)
        .call("PUT", "sys/unseal", Some(json!({"key": key})))
        .expect(200);
    let api = server.root();
    let password = wait_for(Duration::from_secs(15), "the rotation done again", || {
        let answer = api.get("database/static-creds/static-app");
        let password = answer.body["data"]["password"].as_str()?.to_owned();
        postgres
            .query_as("cutshort", &password, "SELECT 'x'")
            .ok()
            .map(|_| password)
    });
    assert_ne!(password, "initial-password");
}
