//! Build information for `coffer version` and `sys/seal-status`: the git
//! commit and its date, or `COFFER_BUILD_COMMIT` / `COFFER_BUILD_DATE` when set
//! (a build from a source archive has no git to ask).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .env("TZ", "UTC")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}

/// Rebuilds when `HEAD` moves or the branch it names does; only files that
/// exist are named (cargo reruns a script that names a missing one every time).
fn watch_head() {
    let mut paths = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        paths.push(git(&["rev-parse", "--git-path", &reference]));
    }
    paths.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in paths.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=COFFER_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=COFFER_BUILD_DATE");
    watch_head();
    let commit = std::env::var("COFFER_BUILD_COMMIT")
        .ok()
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let date = std::env::var("COFFER_BUILD_DATE")
        .ok()
        .or_else(|| {
            git(&[
                "show",
                "-s",
                "--format=%cd",
                "--date=format-local:%Y-%m-%dT%H:%M:%SZ",
                "HEAD",
            ])
        })
        .unwrap_or_default();
    println!("cargo:rustc-env=COFFER_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=COFFER_BUILD_DATE={date}");
}
