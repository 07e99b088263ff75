//! Property tests for the parsers that take outside input: policy HCL (and its
//! JSON form), the configuration file, password policies, database statement
//! templates, `bound_units` and durations. Any input gets an answer (a value or
//! an error), never a panic. `scripts/fuzz` runs them with many more cases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_daemon::database::plugin::{self, Values};
use coffer_daemon::policy::acl::Capability;
use coffer_daemon::policy::{self, Acl};
use coffer_daemon::{config, duration, hcl, local_auth, password_policy};
use proptest::prelude::*;
use serde_json::Map;

/// Text built from the pieces these languages are made of, so that cases
/// reach deep into the parsers rather than failing at the first byte.
fn hcl_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("path ".to_owned()),
        Just("\"secret/*\"".to_owned()),
        Just("\"+/data/x\"".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("capabilities = ".to_owned()),
        Just("[\"read\", \"list\", \"deny\", \"sudo\"]".to_owned()),
        Just("allowed_parameters = { \"a\" = [] }".to_owned()),
        Just("denied_parameters = { \"*\" = [\"x\"] }".to_owned()),
        Just("required_parameters = [\"a\"]".to_owned()),
        Just("policy = \"write\"".to_owned()),
        Just("storage \"raft\" { path = \"/d\" node_id = \"n\" }".to_owned()),
        Just("listener \"tcp\" { address = \"127.0.0.1:0\" tls_disable = true }".to_owned()),
        Just("listener \"unix\" { address = \"/run/x.sock\" mode = \"0600\" }".to_owned()),
        Just("audit \"file\" \"f\" { file_path = \"/tmp/a\" }".to_owned()),
        Just("fuse { mount_point = \"/secrets\" }".to_owned()),
        Just("length = 20".to_owned()),
        Just("rule \"charset\" { charset = \"abc\" min-chars = 1 }".to_owned()),
        Just("default_lease_ttl = \"1h\"".to_owned()),
        Just("= ".to_owned()),
        Just("\n".to_owned()),
        Just("#".to_owned()),
        Just("${x}".to_owned()),
        Just("<<EOF\nx\nEOF\n".to_owned()),
        "[ -~]{0,12}",
        "\\PC{0,4}",
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.join(" "))
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![hcl_like(), "\\PC{0,64}", ".{0,64}"]
}

fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("secret"),
            Just("data"),
            Just("metadata"),
            Just("private"),
            Just("+"),
            Just("*"),
            Just(""),
            Just(".."),
            Just("x"),
        ],
        0..6,
    )
    .prop_map(|segments| segments.join("/"))
}

proptest! {
    #[test]
    fn policies_parse_or_refuse_and_evaluate_without_panicking(
        text in any_text(),
        paths in proptest::collection::vec(path(), 1..8),
    ) {
        if let Ok(parsed) = policy::parse("fuzz", &text) {
            let acl = Acl::new(false, [&parsed]);
            for path in &paths {
                for capability in [Capability::Read, Capability::List, Capability::Update] {
                    let _ = acl.check(path, capability, &Map::new());
                }
                let _ = acl.capabilities(path);
                let _ = acl.has_access_under(path);
            }
        }
        // The JSON form goes through the same parser.
        let _ = policy::parse("fuzz", &format!("{{\"path\": {{\"a\": {text:?}}}}}"));
    }

    #[test]
    fn configurations_parse_or_refuse_with_a_line(text in any_text()) {
        if let Err(error) = config::Config::parse(&text) {
            prop_assert!(!error.to_string().is_empty());
        }
        let _ = hcl::parse(&text);
    }

    #[test]
    fn password_policies_parse_and_generate(text in any_text()) {
        if let Ok(parsed) = password_policy::parse(&text) {
            let password = parsed.generate().unwrap();
            prop_assert!(!password.contains('\''), "a quote could break out of SQL");
        }
    }

    #[test]
    fn statement_templates_render_only_what_they_were_given(
        template in "[ -~]{0,80}",
        name in "[a-z0-9-]{1,20}",
        password in "[A-Za-z0-9-]{1,20}",
    ) {
        let values = Values { name: &name, password: Some(&password), expiration: None };
        let rendered = plugin::render(std::slice::from_ref(&template), &values);
        for statement in &rendered {
            let _ = plugin::split(statement);
        }
        let _ = plugin::redact_url(&template);
    }

    #[test]
    fn unit_bindings_and_durations_never_panic(text in any_text(), unit in "(/[a-z@.-]{0,12}){0,4}") {
        if local_auth::valid_unit_binding(&text) {
            let _ = local_auth::unit_matches(&text, &unit);
        }
        let _ = duration::parse_seconds(&text);
    }
}
