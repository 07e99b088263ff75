# coffer: a single-node server. `man coffer-server` and
# /usr/share/doc/coffer/README.md describe every setting.
#
# After `systemctl start coffer`:
#   coffer operator init      # prints the unseal keys and the root token, once
#   coffer operator unseal    # as many times as the key threshold
# The server starts sealed on every boot until enough keys are given (or
# configure a `seal` block: "awskms", "gcpckms" or "static").

storage "raft" {
  path = "/var/lib/coffer"
  # node_id defaults to the host name; give each node of a cluster its own.
  # retry_join { leader_api_addr = "https://10.0.0.1:8200" }
}

# Plain HTTP on loopback only. Before listening on another address, give it
# a certificate (tls_cert_file, tls_key_file) and remove tls_disable.
listener "tcp" {
  address     = "127.0.0.1:8200"
  tls_disable = true
}

# Local programs reach the API here without a token: the kernel names their
# uid, and auth/local roles map uids to policies.
listener "unix" {
  address = "/run/coffer/coffer.sock"
}

# Secrets as files, each reader seeing what its uid may read; mounted once
# the server is unsealed.
fuse {
  mount_point = "/secrets"
}

# Every request and response, secrets HMAC'd. logrotate reopens it (SIGHUP).
audit "file" "file" {
  file_path = "/var/log/coffer/audit.log"
}
