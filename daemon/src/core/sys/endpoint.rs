//! The `sys/` endpoints, parsed once: each says whether it needs a token (and
//! sudo), whether it runs on this node whatever the leader, and the label
//! metrics give it. The pipeline asks the endpoint; no list of paths elsewhere
//! has to agree with another.

/// One `sys/` endpoint. `rest` fields are the path after `sys/`, which the
/// endpoint's own route reads further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint<'a> {
    Health,
    SealStatus,
    Init,
    Unseal,
    Leader,
    Metrics,
    RaftJoin,
    BootstrapChallenge,
    BootstrapAnswer,
    Seal,
    /// `sys/generate-root/...`: the part after `sys/`.
    GenerateRoot(&'a str),
    /// `sys/rekey/...`: the part after `sys/`.
    Rekey(&'a str),
    Rotate,
    RotateConfig,
    KeyStatus,
    Mounts(&'a str),
    /// `sys/wrapping/<action>`: the action.
    Wrapping(&'a str),
    /// `sys/remount`: moves a secrets engine to another path.
    Remount,
    /// `sys/remount/status/<migration id>`.
    RemountStatus(&'a str),
    Auth(&'a str),
    /// `sys/policies/password...`: the part after `policies/password`.
    PasswordPolicies(&'a str),
    Policies(&'a str),
    /// The legacy `sys/policy` API.
    Policy(&'a str),
    CapabilitiesSelf,
    Capabilities,
    CapabilitiesAccessor,
    /// `sys/storage/...` other than join and bootstrap.
    Storage(&'a str),
    Audit(&'a str),
    AuditHash(&'a str),
    /// `sys/leases/...` and the legacy `sys/renew`, `sys/revoke*`.
    Leases(&'a str),
    /// `sys/quotas/...`: the part after `sys/`.
    Quotas(&'a str),
    /// `sys/locked-users[/<accessor>/unlock/<user>]`: the part after `sys/`.
    LockedUsers(&'a str),
    /// `sys/raw`: not served, but refused only to callers with sudo.
    Raw,
    /// `sys/internal/ui/mounts/<path>`: the part after `ui/mounts/`.
    UiMounts(&'a str),
    /// `sys/internal/fs/<path>`: the part after `fs` (empty or `/...`).
    Files(&'a str),
    /// No such endpoint.
    Unknown,
}

/// What a caller needs before an endpoint runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Nothing: it answers sealed and without a token.
    Open,
    /// A token whose policies allow the operation on the path (and `sudo`).
    Token { sudo: bool },
    /// A token; the endpoint checks each path it stands for by that path's rules.
    ByTarget,
    /// A token with sudo, or a trusted caller on this host (root or the
    /// daemon's user on the Unix socket): what the unseal-key holders use.
    KeyHolders,
    /// A response-wrapping token, in the body or as the request's token: the
    /// token itself is the credential, not an ACL.
    Possession,
}

impl<'a> Endpoint<'a> {
    /// The endpoint of `path`, or `None` when `path` is not under `sys/`. A
    /// trailing slash (a LIST) names the same endpoint.
    pub fn parse(path: &'a str) -> Option<Endpoint<'a>> {
        let rest = match path.strip_prefix("sys/") {
            Some(rest) => rest,
            None if path == "sys" => return Some(Endpoint::Unknown),
            None => return None,
        };
        let (first, tail) = match rest.split_once('/') {
            Some((first, tail)) if !tail.is_empty() => (first, Some(tail)),
            Some((first, _)) => (first, None),
            None => (rest, None),
        };
        Some(match (first, tail) {
            ("health", None) => Endpoint::Health,
            ("seal-status", None) => Endpoint::SealStatus,
            ("init", None) => Endpoint::Init,
            ("unseal", None) => Endpoint::Unseal,
            ("leader", None) => Endpoint::Leader,
            ("metrics", None) => Endpoint::Metrics,
            ("seal", None) => Endpoint::Seal,
            // OpenBao's CLI calls its token-only variant `generate-root-token`.
            ("generate-root" | "generate-root-token", Some(_)) => Endpoint::GenerateRoot(rest),
            ("rekey", Some(_)) => Endpoint::Rekey(rest),
            ("rotate", None) => Endpoint::Rotate,
            ("rotate", Some("config")) => Endpoint::RotateConfig,
            ("key-status", None) => Endpoint::KeyStatus,
            ("storage", Some("raft/join")) => Endpoint::RaftJoin,
            ("storage", Some("raft/bootstrap/challenge")) => Endpoint::BootstrapChallenge,
            ("storage", Some("raft/bootstrap/answer")) => Endpoint::BootstrapAnswer,
            ("storage", _) => Endpoint::Storage(rest),
            ("mounts", _) => Endpoint::Mounts(rest),
            ("remount", None) => Endpoint::Remount,
            ("wrapping", Some(action)) if !action.contains('/') => Endpoint::Wrapping(action),
            ("remount", Some(tail)) if tail.starts_with("status/") => {
                Endpoint::RemountStatus(&tail["status/".len()..])
            }
            ("auth", _) => Endpoint::Auth(rest),
            ("policies", _) if rest.starts_with("policies/password") => {
                Endpoint::PasswordPolicies(&rest["policies/password".len()..])
            }
            ("policies", _) => Endpoint::Policies(rest),
            ("policy", _) => Endpoint::Policy(rest),
            ("capabilities-self", None) => Endpoint::CapabilitiesSelf,
            ("capabilities", None) => Endpoint::Capabilities,
            ("capabilities-accessor", None) => Endpoint::CapabilitiesAccessor,
            ("audit", _) => Endpoint::Audit(rest),
            ("audit-hash", _) => Endpoint::AuditHash(rest),
            ("leases" | "renew" | "revoke" | "revoke-prefix" | "revoke-force", _) => {
                Endpoint::Leases(rest)
            }
            ("quotas", _) => Endpoint::Quotas(rest),
            ("locked-users", _) => Endpoint::LockedUsers(rest),
            ("raw", _) => Endpoint::Raw,
            ("internal", Some(tail)) if tail.starts_with("ui/mounts") => {
                Endpoint::UiMounts(tail["ui/mounts".len()..].trim_start_matches('/'))
            }
            ("internal", Some(tail)) if tail == "fs" || tail.starts_with("fs/") => {
                Endpoint::Files(&tail["fs".len()..])
            }
            _ => Endpoint::Unknown,
        })
    }

    /// What the caller needs; `open_metrics` is the configuration's
    /// `unauthenticated_metrics_access`.
    pub fn access(self, open_metrics: bool) -> Access {
        match self {
            Endpoint::Health
            | Endpoint::SealStatus
            | Endpoint::Init
            | Endpoint::Unseal
            | Endpoint::Leader
            | Endpoint::RaftJoin
            | Endpoint::BootstrapChallenge
            | Endpoint::BootstrapAnswer => Access::Open,
            Endpoint::Metrics if open_metrics => Access::Open,
            Endpoint::UiMounts(_) | Endpoint::Files(_) => Access::ByTarget,
            Endpoint::GenerateRoot(_) | Endpoint::Rekey(_) => Access::KeyHolders,
            Endpoint::Wrapping("unwrap" | "lookup" | "rewrap") => Access::Possession,
            Endpoint::Seal
            | Endpoint::Rotate
            | Endpoint::RotateConfig
            | Endpoint::Audit(_)
            | Endpoint::Remount
            | Endpoint::Raw => Access::Token { sudo: true },
            // Enabling, disabling, reading and tuning a method: Vault's
            // `sys/auth/*` needs sudo; the list does not.
            Endpoint::Auth(rest) => Access::Token {
                sudo: rest.trim_end_matches('/') != "auth",
            },
            Endpoint::AuditHash(rest) => Access::Token {
                sudo: rest.starts_with("audit-hash/"),
            },
            Endpoint::Storage(rest) => Access::Token {
                sudo: rest.starts_with("storage/raft/"),
            },
            Endpoint::Leases(rest) => Access::Token {
                sudo: rest == "leases"
                    || [
                        "leases/revoke-prefix/",
                        "leases/revoke-force/",
                        "leases/lookup/",
                        "revoke-prefix/",
                        "revoke-force/",
                    ]
                    .iter()
                    .any(|prefix| rest.starts_with(prefix)),
            },
            _ => Access::Token { sudo: false },
        }
    }

    /// Whether the endpoint is about this node (its seal, its health, its
    /// joining): it runs here, never on the leader.
    pub fn on_this_node(self) -> bool {
        matches!(
            self,
            Endpoint::Health
                | Endpoint::SealStatus
                | Endpoint::Init
                | Endpoint::Unseal
                | Endpoint::Leader
                | Endpoint::Seal
                | Endpoint::Metrics
                | Endpoint::RaftJoin
        )
    }

    /// Whether even a read of the endpoint runs on the leader: what it shows
    /// is kept only there (the lockout counters of the node that runs logins).
    pub fn on_the_leader(self) -> bool {
        matches!(self, Endpoint::LockedUsers(_))
    }

    /// The route label metrics give the endpoint: one per endpoint, and one
    /// for every unknown path, so made-up paths make no new series.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Health => "sys/health",
            Endpoint::SealStatus => "sys/seal-status",
            Endpoint::Init => "sys/init",
            Endpoint::Unseal => "sys/unseal",
            Endpoint::Leader => "sys/leader",
            Endpoint::Metrics => "sys/metrics",
            Endpoint::RaftJoin => "sys/storage/raft/join",
            Endpoint::BootstrapChallenge => "sys/storage/raft/bootstrap/challenge",
            Endpoint::BootstrapAnswer => "sys/storage/raft/bootstrap/answer",
            Endpoint::Seal => "sys/seal",
            Endpoint::GenerateRoot(_) => "sys/generate-root",
            Endpoint::Rekey(_) => "sys/rekey",
            Endpoint::Rotate | Endpoint::RotateConfig => "sys/rotate",
            Endpoint::KeyStatus => "sys/key-status",
            Endpoint::Mounts(_) => "sys/mounts",
            Endpoint::Remount | Endpoint::RemountStatus(_) => "sys/remount",
            Endpoint::Wrapping(_) => "sys/wrapping",
            Endpoint::Auth(_) => "sys/auth",
            Endpoint::PasswordPolicies(_) | Endpoint::Policies(_) => "sys/policies",
            Endpoint::Policy(_) => "sys/policy",
            Endpoint::CapabilitiesSelf => "sys/capabilities-self",
            Endpoint::Capabilities => "sys/capabilities",
            Endpoint::CapabilitiesAccessor => "sys/capabilities-accessor",
            Endpoint::Storage(_) => "sys/storage",
            Endpoint::Audit(_) => "sys/audit",
            Endpoint::AuditHash(_) => "sys/audit-hash",
            Endpoint::Leases(_) => "sys/leases",
            Endpoint::Quotas(_) => "sys/quotas",
            Endpoint::LockedUsers(_) => "sys/locked-users",
            Endpoint::UiMounts(_) => "sys/internal",
            Endpoint::Files(_) => "sys/internal/fs",
            Endpoint::Raw | Endpoint::Unknown => "sys/other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Access, Endpoint};

    fn check(path: &str, endpoint: Option<Endpoint<'_>>, access: Option<Access>, here: bool) {
        let parsed = Endpoint::parse(path);
        assert_eq!(parsed, endpoint, "{path}");
        if let (Some(parsed), Some(access)) = (parsed, access) {
            assert_eq!(parsed.access(false), access, "{path}");
            assert_eq!(parsed.on_this_node(), here, "{path}");
        }
    }

    #[test]
    fn paths_parse_into_endpoints_that_know_their_rules() {
        let token = Some(Access::Token { sudo: false });
        let sudo = Some(Access::Token { sudo: true });
        let open = Some(Access::Open);
        check("secret/data/x", None, None, false);
        check("sysx/health", None, None, false);
        check("sys/health", Some(Endpoint::Health), open, true);
        check("sys/health/", Some(Endpoint::Health), open, true);
        check("sys/seal", Some(Endpoint::Seal), sudo, true);
        check("sys/seal/x", Some(Endpoint::Unknown), token, false);
        check("sys/unseal", Some(Endpoint::Unseal), open, true);
        check(
            "sys/storage/raft/join",
            Some(Endpoint::RaftJoin),
            open,
            true,
        );
        check(
            "sys/storage/raft/bootstrap/answer",
            Some(Endpoint::BootstrapAnswer),
            open,
            false,
        );
        check(
            "sys/storage/raft/snapshot",
            Some(Endpoint::Storage("storage/raft/snapshot")),
            sudo,
            false,
        );
        check(
            "sys/rotate/config",
            Some(Endpoint::RotateConfig),
            sudo,
            false,
        );
        check(
            "sys/mounts/secret",
            Some(Endpoint::Mounts("mounts/secret")),
            token,
            false,
        );
        let key_holders = Some(Access::KeyHolders);
        check(
            "sys/generate-root/attempt",
            Some(Endpoint::GenerateRoot("generate-root/attempt")),
            key_holders,
            false,
        );
        check(
            "sys/rekey/update",
            Some(Endpoint::Rekey("rekey/update")),
            key_holders,
            false,
        );
        check("sys/rekey", Some(Endpoint::Unknown), token, false);
        let possession = Some(Access::Possession);
        check(
            "sys/wrapping/unwrap",
            Some(Endpoint::Wrapping("unwrap")),
            possession,
            false,
        );
        check(
            "sys/wrapping/lookup",
            Some(Endpoint::Wrapping("lookup")),
            possession,
            false,
        );
        check(
            "sys/wrapping/wrap",
            Some(Endpoint::Wrapping("wrap")),
            token,
            false,
        );
        check("sys/wrapping/a/b", Some(Endpoint::Unknown), token, false);
        check("sys/remount", Some(Endpoint::Remount), sudo, false);
        check(
            "sys/remount/status/abc",
            Some(Endpoint::RemountStatus("abc")),
            token,
            false,
        );
        check("sys/remount/other", Some(Endpoint::Unknown), token, false);
        check("sys/auth", Some(Endpoint::Auth("auth")), token, false);
        check("sys/auth/", Some(Endpoint::Auth("auth/")), token, false);
        check(
            "sys/auth/userpass",
            Some(Endpoint::Auth("auth/userpass")),
            sudo,
            false,
        );
        check(
            "sys/auth/userpass/tune",
            Some(Endpoint::Auth("auth/userpass/tune")),
            sudo,
            false,
        );
        check(
            "sys/policies/password/p",
            Some(Endpoint::PasswordPolicies("/p")),
            token,
            false,
        );
        check(
            "sys/policies/acl/",
            Some(Endpoint::Policies("policies/acl/")),
            token,
            false,
        );
        check("sys/audit", Some(Endpoint::Audit("audit")), sudo, false);
        check(
            "sys/audit-hash",
            Some(Endpoint::AuditHash("audit-hash")),
            token,
            false,
        );
        check(
            "sys/audit-hash/f",
            Some(Endpoint::AuditHash("audit-hash/f")),
            sudo,
            false,
        );
        check("sys/leases", Some(Endpoint::Leases("leases")), sudo, false);
        check(
            "sys/leases/renew",
            Some(Endpoint::Leases("leases/renew")),
            token,
            false,
        );
        check(
            "sys/leases/lookup/database/",
            Some(Endpoint::Leases("leases/lookup/database/")),
            sudo,
            false,
        );
        check(
            "sys/revoke-force/x",
            Some(Endpoint::Leases("revoke-force/x")),
            sudo,
            false,
        );
        check("sys/raw/core", Some(Endpoint::Raw), sudo, false);
        check(
            "sys/quotas/rate-limit/q",
            Some(Endpoint::Quotas("quotas/rate-limit/q")),
            token,
            false,
        );
        check(
            "sys/locked-users/auth_userpass_1/unlock/alice",
            Some(Endpoint::LockedUsers(
                "locked-users/auth_userpass_1/unlock/alice",
            )),
            token,
            false,
        );
        assert!(Endpoint::LockedUsers("locked-users").on_the_leader());
        assert!(!Endpoint::Quotas("quotas").on_the_leader());
        check(
            "sys/internal/ui/mounts/secret/x",
            Some(Endpoint::UiMounts("secret/x")),
            Some(Access::ByTarget),
            false,
        );
        check(
            "sys/internal/fs",
            Some(Endpoint::Files("")),
            Some(Access::ByTarget),
            false,
        );
        check(
            "sys/internal/fs/a/b",
            Some(Endpoint::Files("/a/b")),
            Some(Access::ByTarget),
            false,
        );
        check("sys/internal/fsx", Some(Endpoint::Unknown), token, false);
        check("sys/made-up", Some(Endpoint::Unknown), token, false);
        check("sys", Some(Endpoint::Unknown), token, false);
        assert_eq!(
            Endpoint::Metrics.access(true),
            Access::Open,
            "open metrics need no token"
        );
        assert_eq!(
            Endpoint::Metrics.access(false),
            Access::Token { sudo: false }
        );
        assert_eq!(
            Endpoint::parse("sys/x/y").map(Endpoint::label),
            Some("sys/other")
        );
    }
}
