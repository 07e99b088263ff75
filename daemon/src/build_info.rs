//! What this binary is: the package version, the git commit it was built
//! from and that commit's date (set by `build.rs`).

/// The package version (the workspace's `version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit's first 12 hex digits, or `unknown` outside a git checkout.
pub const COMMIT: &str = env!("COFFER_BUILD_COMMIT");
/// The commit's date, RFC 3339 in UTC; empty when unknown.
pub const DATE: &str = env!("COFFER_BUILD_DATE");

/// The version with the commit as semver build metadata (`0.1.0+0123abcd4567`),
/// which `sys/seal-status` and `sys/health` report: Vault's clients parse it
/// as a version (`1.15.0+ent` has the same shape).
pub fn version() -> String {
    format!("{VERSION}+{COMMIT}")
}

/// `coffer version`'s line, in the vault CLI's shape.
pub fn line() -> String {
    match DATE {
        "" => format!("coffer v{VERSION} ({COMMIT})"),
        date => format!("coffer v{VERSION} ({COMMIT}), built {date}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_semver_with_the_commit_as_build_metadata() {
        let version = version();
        let (release, commit) = version.split_once('+').unwrap();
        assert_eq!(release, env!("CARGO_PKG_VERSION"));
        assert!(!commit.is_empty());
        assert!(commit.bytes().all(|byte| byte.is_ascii_alphanumeric()));
        assert!(line().starts_with(&format!("coffer v{release} ({commit})")));
    }
}
