//! The `fuse` block: the `/secrets` filesystem.

use std::path::PathBuf;

use super::{boolean, string, unknown};
use crate::hcl;

/// `threads`: threads serving FUSE requests.
pub const DEFAULT_THREADS: usize = 8;

/// `fuse { mount_point = "/secrets" }`: the `/secrets` filesystem. It is mounted
/// once the server is unsealed and unmounted at shutdown; while the server is
/// sealed again, opens fail with `EAGAIN`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fuse {
    /// `mount_point`: an empty directory (created if missing). A coffer mount
    /// left there by a crash is detached first.
    pub mount_point: PathBuf,
    /// `threads`: threads serving FUSE requests (default 8). An open that
    /// creates a database user holds one for as long as that takes.
    pub threads: usize,
    /// `revoke_unused_leases`: revoke a dynamic credential's lease once nobody
    /// has opened its files for 2/3 of its TTL and none is open (default false:
    /// it is left to expire).
    pub revoke_unused_leases: bool,
}

impl Fuse {
    pub fn at(mount_point: PathBuf) -> Self {
        Fuse {
            mount_point,
            threads: DEFAULT_THREADS,
            revoke_unused_leases: false,
        }
    }
}

pub(super) fn parse_fuse(block: &hcl::Block) -> Result<Fuse, hcl::Error> {
    if !block.labels.is_empty() {
        return Err(hcl::Error::new(block.line, "fuse takes no label"));
    }
    let mut mount_point = None;
    let mut fuse = Fuse::at(PathBuf::new());
    for attribute in &block.body.attributes {
        let value = &attribute.value;
        match attribute.key.as_str() {
            "mount_point" => mount_point = Some(PathBuf::from(string(value, "mount_point")?)),
            "threads" => {
                fuse.threads = value
                    .to_json()
                    .as_u64()
                    .filter(|threads| (1..=256).contains(threads))
                    .and_then(|threads| usize::try_from(threads).ok())
                    .ok_or_else(|| {
                        hcl::Error::new(value.line, "threads must be a number from 1 to 256")
                    })?;
            }
            "revoke_unused_leases" => {
                fuse.revoke_unused_leases = boolean(value, "revoke_unused_leases")?
            }
            other => return Err(unknown(attribute.line, other, "fuse")),
        }
    }
    fuse.mount_point = mount_point
        .filter(|path| path.is_absolute())
        .ok_or_else(|| hcl::Error::new(block.line, "fuse needs an absolute mount_point"))?;
    Ok(fuse)
}
