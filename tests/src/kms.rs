//! An AWS KMS on loopback: moto's server (PyPI `moto[server]`, installed by
//! `scripts/setup` in the test virtualenv), which answers the real KMS JSON
//! protocol with real AES-GCM, keeps its keys in memory, and does not check
//! signatures. Stopping it with SIGSTOP makes a KMS that does not answer
//! while keeping its keys.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{free_port, wait_for};
use crate::send_signal;

pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let venv = std::env::var("COFFER_VENV").unwrap_or_else(|_| "/var/tmp/coffer-venv".into());
        let port = free_port("127.0.0.1");
        let child = Command::new(format!("{venv}/bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server (scripts/setup installs moto[server])");
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_for(Duration::from_secs(30), "moto to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        Moto { child, endpoint }
    }

    /// One KMS call, as the AWS SDK makes it (moto routes by the credential
    /// scope of the Authorization header).
    pub fn call(&self, action: &str, body: Value) -> Result<Value, String> {
        let response = reqwest::blocking::Client::new()
            .post(&self.endpoint)
            .header("Content-Type", "application/x-amz-json-1.1")
            .header("X-Amz-Target", format!("TrentService.{action}"))
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDCOFFERTEST/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00",
            )
            .body(body.to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .map_err(|error| error.to_string())?;
        let status = response.status();
        let text = response.text().map_err(|error| error.to_string())?;
        if !status.is_success() {
            return Err(format!("{action}: {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|error| format!("{action}: {error}: {text}"))
    }

    /// A new symmetric key; returns its id.
    pub fn create_key(&self) -> String {
        let created = self
            .call("CreateKey", json!({"Description": "coffer test"}))
            .expect("CreateKey");
        created["KeyMetadata"]["KeyId"]
            .as_str()
            .expect("KeyId")
            .to_owned()
    }

    /// A `seal "awskms"` block for `key_id` on this server, static keys.
    pub fn seal_block(&self, key_id: &str, disabled: bool) -> String {
        format!(
            "seal \"awskms\" {{\n  region = \"us-east-1\"\n  access_key = \"AKIDCOFFERTEST\"\n  secret_key = \"not-checked\"\n  kms_key_id = \"{key_id}\"\n  endpoint = \"{}\"\n  disabled = \"{disabled}\"\n}}\n",
            self.endpoint
        )
    }

    /// SIGSTOP: connections are accepted by the kernel, nothing answers.
    pub fn pause(&self) {
        assert!(send_signal(self.child.id(), "STOP"));
    }

    pub fn resume(&self) {
        assert!(send_signal(self.child.id(), "CONT"));
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = send_signal(self.child.id(), "CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
