//! Table tests for the policy language: parsing, precedence, globs, `+`, deny and
//! parameter constraints. Each case is one `check(policies, path, capability,
//! data, expected)` line.

use serde_json::{Map, Value, json};

use super::acl::Capability::{self, Create, Delete, List, Patch, Read, Update};
use super::*;

fn acl(policies: &[&str]) -> Acl {
    let parsed: Vec<Policy> = policies
        .iter()
        .enumerate()
        .map(|(index, text)| parse(&format!("p{index}"), text).unwrap())
        .collect();
    Acl::new(false, parsed.iter())
}

fn data(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[track_caller]
fn check(policies: &[&str], path: &str, capability: Capability, body: Value, expected: bool) {
    let decision = acl(policies).check(path, capability, &data(body));
    assert_eq!(
        decision.allowed, expected,
        "{capability:?} {path} under {policies:?}"
    );
}

const KV_READ: &str = r#"path "secret/data/app/*" { capabilities = ["read", "list"] }"#;

#[test]
fn exact_and_glob_matching() {
    check(&[KV_READ], "secret/data/app/db", Read, json!({}), true);
    check(
        &[KV_READ],
        "secret/data/app/db/nested",
        Read,
        json!({}),
        true,
    );
    check(&[KV_READ], "secret/data/app/", Read, json!({}), true);
    check(&[KV_READ], "secret/data/app", Read, json!({}), false);
    check(&[KV_READ], "secret/data/other", Read, json!({}), false);
    check(&[KV_READ], "secret/data/app/db", Update, json!({}), false);
    check(
        &[r#"path "secret/data/exact" { capabilities = ["read"] }"#],
        "secret/data/exact",
        Read,
        json!({}),
        true,
    );
    check(
        &[r#"path "secret/data/exact" { capabilities = ["read"] }"#],
        "secret/data/exact/x",
        Read,
        json!({}),
        false,
    );
    check(
        &[r#"path "secret/data/exact" { capabilities = ["read"] }"#],
        "secret/data/exac",
        Read,
        json!({}),
        false,
    );
    // A glob inside a segment matches by prefix.
    check(
        &[r#"path "secret/data/app*" { capabilities = ["read"] }"#],
        "secret/data/apple",
        Read,
        json!({}),
        true,
    );
    check(
        &[r#"path "*" { capabilities = ["read"] }"#],
        "anything/at/all",
        Read,
        json!({}),
        true,
    );
    // A leading slash in the pattern is ignored.
    check(
        &[r#"path "/secret/data/x" { capabilities = ["read"] }"#],
        "secret/data/x",
        Read,
        json!({}),
        true,
    );
}

#[test]
fn the_most_specific_pattern_wins() {
    let policies = [
        r#"path "secret/*" { capabilities = ["read"] }"#,
        r#"path "secret/data/*" { capabilities = ["update"] }"#,
    ];
    // The longer glob governs alone: capabilities of different patterns do not add up.
    check(&policies, "secret/data/x", Update, json!({}), true);
    check(&policies, "secret/data/x", Read, json!({}), false);
    check(&policies, "secret/other", Read, json!({}), true);

    // An exact pattern beats any glob, even a longer-looking one.
    let exact_over_glob = [
        r#"path "secret/data/x" { capabilities = ["read"] }"#,
        r#"path "secret/data/x*" { capabilities = ["update"] }"#,
    ];
    check(&exact_over_glob, "secret/data/x", Read, json!({}), true);
    check(&exact_over_glob, "secret/data/x", Update, json!({}), false);
    check(&exact_over_glob, "secret/data/xy", Update, json!({}), true);

    // A later first wildcard is more specific than an earlier one.
    let later_wildcard = [
        r#"path "secret/+/app/db" { capabilities = ["read"] }"#,
        r#"path "secret/data/+/db" { capabilities = ["update"] }"#,
    ];
    check(
        &later_wildcard,
        "secret/data/app/db",
        Update,
        json!({}),
        true,
    );
    check(
        &later_wildcard,
        "secret/data/app/db",
        Read,
        json!({}),
        false,
    );

    // With the wildcard at the same place, a non-glob beats a glob...
    let glob_vs_plain = [
        r#"path "secret/data/+/db*" { capabilities = ["update"] }"#,
        r#"path "secret/data/+/db" { capabilities = ["read"] }"#,
    ];
    check(&glob_vs_plain, "secret/data/app/db", Read, json!({}), true);
    check(
        &glob_vs_plain,
        "secret/data/app/db",
        Update,
        json!({}),
        false,
    );
    check(
        &glob_vs_plain,
        "secret/data/app/dbx",
        Update,
        json!({}),
        true,
    );

    // ...then fewer `+` segments beat more.
    let fewer_wildcards = [
        r#"path "secret/+/+/db" { capabilities = ["update"] }"#,
        r#"path "secret/+/app/db" { capabilities = ["read"] }"#,
    ];
    check(
        &fewer_wildcards,
        "secret/data/app/db",
        Read,
        json!({}),
        true,
    );
    check(
        &fewer_wildcards,
        "secret/data/app/db",
        Update,
        json!({}),
        false,
    );

    // ...then the longer pattern.
    let longer = [
        r#"path "secret/data/+/d*" { capabilities = ["update"] }"#,
        r#"path "secret/data/+/db*" { capabilities = ["read"] }"#,
    ];
    check(&longer, "secret/data/app/dbx", Read, json!({}), true);
    check(&longer, "secret/data/app/dbx", Update, json!({}), false);

    // A plain glob with a later end beats an earlier `+`.
    let glob_vs_segment = [
        r#"path "secret/+/app/*" { capabilities = ["update"] }"#,
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    ];
    check(&glob_vs_segment, "secret/data/app/x", Read, json!({}), true);
    check(
        &glob_vs_segment,
        "secret/data/app/x",
        Update,
        json!({}),
        false,
    );
    check(
        &glob_vs_segment,
        "secret/meta/app/x",
        Update,
        json!({}),
        true,
    );
}

#[test]
fn segment_wildcards_match_exactly_one_segment() {
    let plus = [r#"path "secret/data/+/config" { capabilities = ["create", "update"] }"#];
    check(&plus, "secret/data/web/config", Create, json!({}), true);
    check(&plus, "secret/data/web/config", Read, json!({}), false);
    check(&plus, "secret/data/a/b/config", Create, json!({}), false);
    check(&plus, "secret/data/config", Create, json!({}), false);
    check(&plus, "secret/data/web/config/x", Create, json!({}), false);
    let plus_glob = [r#"path "secret/+/team/*" { capabilities = ["read"] }"#];
    check(&plus_glob, "secret/data/team/a/b", Read, json!({}), true);
    check(&plus_glob, "secret/data/other/a", Read, json!({}), false);
    let trailing_plus = [r#"path "secret/metadata/+" { capabilities = ["list"] }"#];
    check(&trailing_plus, "secret/metadata/app", List, json!({}), true);
    check(
        &trailing_plus,
        "secret/metadata/app/x",
        List,
        json!({}),
        false,
    );
}

#[test]
fn equal_patterns_union_across_policies_and_deny_wins() {
    let union = [
        r#"path "secret/data/x" { capabilities = ["read"] }"#,
        r#"path "secret/data/x" { capabilities = ["update"] }"#,
    ];
    check(&union, "secret/data/x", Read, json!({}), true);
    check(&union, "secret/data/x", Update, json!({}), true);
    check(&union, "secret/data/x", Delete, json!({}), false);

    let denied = [
        r#"path "secret/*" { capabilities = ["read", "update"] }"#,
        r#"path "secret/*" { capabilities = ["deny"] }"#,
    ];
    check(&denied, "secret/data/x", Read, json!({}), false);
    // deny in the same rule as other capabilities clears them.
    check(
        &[r#"path "a/b" { capabilities = ["read", "deny"] }"#],
        "a/b",
        Read,
        json!({}),
        false,
    );
    // A more specific deny carves a hole out of a broad grant.
    let hole = [
        r#"path "secret/*" { capabilities = ["read"] }"#,
        r#"path "secret/data/admin" { capabilities = ["deny"] }"#,
    ];
    check(&hole, "secret/data/admin", Read, json!({}), false);
    check(&hole, "secret/data/user", Read, json!({}), true);
}

#[test]
fn list_matches_an_exact_rule_without_the_trailing_slash() {
    let policies = [r#"path "secret/metadata/app" { capabilities = ["list"] }"#];
    check(&policies, "secret/metadata/app/", List, json!({}), true);
    check(&policies, "secret/metadata/app/", Read, json!({}), false);
}

#[test]
fn patch_and_old_style_policy_levels() {
    check(
        &[r#"path "a" { capabilities = ["patch"] }"#],
        "a",
        Patch,
        json!({}),
        true,
    );
    check(
        &[r#"path "a" { capabilities = ["update"] }"#],
        "a",
        Patch,
        json!({}),
        false,
    );
    check(
        &[r#"path "a" { policy = "read" }"#],
        "a",
        List,
        json!({}),
        true,
    );
    check(
        &[r#"path "a" { policy = "write" }"#],
        "a",
        Delete,
        json!({}),
        true,
    );
    check(
        &[r#"path "a" { policy = "deny" }"#],
        "a",
        Read,
        json!({}),
        false,
    );
    let sudo = acl(&[r#"path "sys/rotate" { policy = "sudo" }"#]);
    assert!(sudo.check("sys/rotate", Update, &Map::new()).sudo);
    let no_sudo = acl(&[r#"path "sys/rotate" { capabilities = ["update"] }"#]);
    let decision = no_sudo.check("sys/rotate", Update, &Map::new());
    assert!(decision.allowed && !decision.sudo);
}

#[test]
fn parameter_constraints() {
    let allowed = [r#"path "secret/data/x" {
        capabilities = ["create", "update", "read"]
        allowed_parameters = { "data" = [], "options" = [] }
    }"#];
    check(
        &allowed,
        "secret/data/x",
        Update,
        json!({"data": {"a": 1}}),
        true,
    );
    check(
        &allowed,
        "secret/data/x",
        Update,
        json!({"data": {}, "extra": 1}),
        false,
    );
    check(&allowed, "secret/data/x", Update, json!({}), true);

    let values = [r#"path "auth/token/create" {
        capabilities = ["update"]
        allowed_parameters = { "policies" = ["web", "db-*"], "ttl" = [] }
    }"#];
    check(
        &values,
        "auth/token/create",
        Update,
        json!({"policies": "web"}),
        true,
    );
    check(
        &values,
        "auth/token/create",
        Update,
        json!({"policies": "db-read"}),
        true,
    );
    check(
        &values,
        "auth/token/create",
        Update,
        json!({"policies": "admin"}),
        false,
    );
    check(
        &values,
        "auth/token/create",
        Update,
        json!({"POLICIES": "web", "ttl": "1h"}),
        true,
    );

    let denied = [r#"path "sys/mounts/*" {
        capabilities = ["update"]
        denied_parameters = { "type" = ["kv"], "local" = [] }
    }"#];
    check(
        &denied,
        "sys/mounts/x",
        Update,
        json!({"type": "database"}),
        true,
    );
    check(
        &denied,
        "sys/mounts/x",
        Update,
        json!({"type": "kv"}),
        false,
    );
    check(
        &denied,
        "sys/mounts/x",
        Update,
        json!({"local": false}),
        false,
    );

    let deny_all =
        ["path \"x\" {\n capabilities = [\"update\"]\n denied_parameters = { \"*\" = [] }\n}"];
    check(&deny_all, "x", Update, json!({"a": 1}), false);
    check(&deny_all, "x", Update, json!({}), true);

    let allow_star = [r#"path "x" {
        capabilities = ["update"]
        allowed_parameters = { "*" = [], "mode" = ["ro"] }
    }"#];
    check(
        &allow_star,
        "x",
        Update,
        json!({"anything": 1, "mode": "ro"}),
        true,
    );
    check(&allow_star, "x", Update, json!({"mode": "rw"}), false);

    let required =
        ["path \"x\" {\n capabilities = [\"create\"]\n required_parameters = [\"owner\"]\n}"];
    check(&required, "x", Create, json!({"owner": "me"}), true);
    check(&required, "x", Create, json!({"other": "me"}), false);
    // Parameter rules do not apply to delete or list.
    check(&required, "x", Delete, json!({"other": "me"}), false);

    let non_string =
        ["path \"x\" {\n capabilities = [\"update\"]\n allowed_parameters = { n = [1, true] }\n}"];
    check(&non_string, "x", Update, json!({"n": 1}), true);
    check(&non_string, "x", Update, json!({"n": true}), true);
    check(&non_string, "x", Update, json!({"n": 2}), false);

    // Parameter lists merge across policies: an empty list absorbs.
    let merged = [
        "path \"x\" {\n capabilities = [\"update\"]\n allowed_parameters = { a = [\"1\"] }\n}",
        "path \"x\" {\n capabilities = [\"update\"]\n allowed_parameters = { a = [\"2\"], b = [] }\n}",
    ];
    check(&merged, "x", Update, json!({"a": "2", "b": "z"}), true);
    check(&merged, "x", Update, json!({"a": "3"}), false);
}

#[test]
fn root_and_empty_acls() {
    let root = Acl::new(true, std::iter::empty());
    assert!(root.check("anything", Delete, &Map::new()).allowed);
    assert_eq!(root.capabilities("x"), vec!["root"]);
    let empty = Acl::new(false, std::iter::empty());
    assert!(!empty.check("anything", Read, &Map::new()).allowed);
    assert_eq!(empty.capabilities("x"), vec!["deny"]);
}

#[test]
fn capabilities_report() {
    let acl = acl(&[r#"path "secret/*" { capabilities = ["update", "read", "sudo"] }"#]);
    assert_eq!(acl.capabilities("secret/x"), vec!["read", "sudo", "update"]);
    assert_eq!(acl.capabilities("other"), vec!["deny"]);
}

#[test]
fn the_default_policy_lets_a_token_manage_itself_only() {
    let default = parse(DEFAULT_POLICY, DEFAULT_POLICY_TEXT).unwrap();
    let acl = Acl::new(false, [&default]);
    assert!(
        acl.check("auth/token/lookup-self", Read, &Map::new())
            .allowed
    );
    assert!(
        acl.check("auth/token/renew-self", Update, &Map::new())
            .allowed
    );
    assert!(
        acl.check("auth/token/revoke-self", Update, &Map::new())
            .allowed
    );
    assert!(
        acl.check("sys/capabilities-self", Update, &Map::new())
            .allowed
    );
    assert!(!acl.check("auth/token/create", Update, &Map::new()).allowed);
    assert!(!acl.check("secret/data/x", Read, &Map::new()).allowed);
    assert!(
        !acl.check("sys/policies/acl/default", Update, &Map::new())
            .allowed
    );
}

#[test]
fn mount_visibility() {
    let acl = acl(&[r#"path "secret/data/app/*" { capabilities = ["read"] }"#]);
    assert!(acl.has_access_under("secret/"));
    assert!(!acl.has_access_under("other/"));
    let wildcard = self::acl(&[r#"path "+/data/x" { capabilities = ["read"] }"#]);
    assert!(wildcard.has_access_under("kv/"));

    // A deny below a broad grant hides what it covers, unless a narrower
    // grant under it gives something back.
    let denied = self::acl(&[
        r#"path "secret/*" { capabilities = ["read", "list"] }"#,
        r#"path "secret/data/private/*" { capabilities = ["deny"] }"#,
        r#"path "secret/data/private/shared/*" { capabilities = ["read"] }"#,
        r#"path "secret/metadata/private/*" { capabilities = ["deny"] }"#,
    ]);
    assert!(denied.has_access_under("secret/"));
    assert!(denied.has_access_under("secret/data/public/"));
    assert!(!denied.has_access_under("secret/metadata/private/"));
    assert!(!denied.has_access_under("secret/data/private/other/"));
    assert!(denied.has_access_under("secret/data/private/"));
    assert!(denied.has_access_under("secret/data/private/shared/"));
}

#[track_caller]
fn parse_error(text: &str, line: usize, fragment: &str) {
    let error = parse("p", text).unwrap_err().to_string();
    assert!(
        error.contains(&format!("line {line}")) && error.contains(fragment),
        "{text:?} gave {error:?}"
    );
}

#[test]
fn invalid_policies_are_refused_with_a_line() {
    parse_error(
        "path \"a\" {\n  capabilities = [\"reed\"]\n}\n",
        2,
        "invalid capability \"reed\"",
    );
    parse_error(
        "path \"a/*/b\" {\n  capabilities = [\"read\"]\n}\n",
        1,
        "only allowed at the end",
    );
    parse_error(
        "\npath \"a\" {\n  capabilites = [\"read\"]\n}\n",
        3,
        "unknown key \"capabilites\"",
    );
    parse_error(
        "path \"a\" {\n  capabilities = \"read\"\n}\n",
        2,
        "must be a list of strings",
    );
    parse_error("paths \"a\" {}\n", 1, "unknown block");
    parse_error("path \"a\" \"b\" {}\n", 1, "exactly one path");
    parse_error(
        "path \"a\" {\n  policy = \"admin\"\n}\n",
        2,
        "invalid policy level",
    );
    parse_error(
        "path \"a\" {\n  allowed_parameters = { x = \"y\" }\n}\n",
        2,
        "must be a list",
    );
    parse_error(
        "path \"a\" {\n  control_group = {}\n}\n",
        2,
        "not supported",
    );
    parse_error(
        "path \"a\" {\n capabilities = [\"read\"]\n",
        2,
        "syntax error",
    );
    parse_error(
        "path \"a\" { capabilities = [\"${x}\"] }",
        1,
        "interpolation",
    );
    for bad in ["bad/name", "", "a,b", "a b", "..", "a\nb"] {
        assert!(
            matches!(parse(bad, ""), Err(ParseError::Name(_))),
            "{bad:?}"
        );
    }
    // Vault takes brackets and the like; so does coffer.
    assert_eq!(normalize_name("Team[Ops]:v=2").unwrap(), "team[ops]:v=2");
    assert!(parse("p", "{ not json").is_err());
}

#[test]
fn json_policies_parse_like_hcl() {
    let from_json = parse(
        "j",
        r#"{"path": {"secret/data/*": {"capabilities": ["read"], "allowed_parameters": {"version": []}}}}"#,
    )
    .unwrap();
    let from_hcl = parse(
        "j",
        r#"path "secret/data/*" {
             capabilities = ["read"]
             allowed_parameters = { version = [] }
           }"#,
    )
    .unwrap();
    assert_eq!(from_json.rules, from_hcl.rules);
}

#[test]
fn names_are_lowercased() {
    assert_eq!(parse("MyPolicy", "").unwrap().name, "mypolicy");
}

#[test]
fn hostile_input_does_not_panic() {
    for text in [
        "",
        "{",
        "}",
        "path",
        "path \"\" {}",
        "path \"*\" {}",
        "path \"+\" {}",
        "path \"++\" {}",
        "path \"a\" { capabilities = [1] }",
        "path \"a\" { allowed_parameters = [] }",
        "\u{0}",
        "path \"\u{0}\" { capabilities = [\"read\"] }",
        "{\"path\": 3}",
        "[]",
        "path \"a\" { capabilities = [\"read\"] } path \"a\" { capabilities = [\"deny\"] }",
    ] {
        if let Ok(policy) = parse("p", text) {
            let acl = Acl::new(false, [&policy]);
            let _ = acl.check("a", Read, &Map::new());
            let _ = acl.check("", List, &Map::new());
            let _ = acl.capabilities("+");
        }
    }
}
