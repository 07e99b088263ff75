//! Keeping key material out of core dumps and swap: the process is made
//! undumpable with no core size at start, and its memory is locked.
//!
//! Keys live in more places than coffer's own buffers (aws-lc's key schedules,
//! rustls's copy of the cluster key, the allocator's freed chunks), so the whole
//! process is locked with `mlockall`, not page by page. Vault advises against
//! `mlockall` with integrated storage because BoltDB maps its whole database
//! file; coffer's RocksDB reads with `pread` (no mapped files), so what gets
//! locked is the heap coffer uses, and `MCL_ONFAULT` locks pages only once
//! they are touched (reserved but unused memory costs nothing).

use std::io;

/// Why memory could not be locked; the server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot lock memory: locked memory is limited to {limit} bytes (RLIMIT_MEMLOCK) \
         and the process lacks CAP_IPC_LOCK; run as root, grant CAP_IPC_LOCK (systemd: \
         AmbientCapabilities=CAP_IPC_LOCK) or LimitMEMLOCK=infinity, or set \
         disable_mlock = true in the configuration"
    )]
    Limited { limit: u64 },
    #[error(
        "cannot lock memory (mlockall): {0}; grant CAP_IPC_LOCK or set disable_mlock = true \
         in the configuration"
    )]
    Lock(io::Error),
}

/// No core dumps, no ptrace by other users' processes: `RLIMIT_CORE` 0 and
/// `PR_SET_DUMPABLE` 0. Failures are logged: they only lose a defence.
pub fn forbid_dumps() {
    use nix::sys::resource::{Resource, setrlimit};
    if let Err(error) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        tracing::warn!(%error, "cannot set RLIMIT_CORE to 0");
    }
    if let Err(error) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(%error, "cannot clear the dumpable flag");
    }
}

/// Locks the process's memory, now and as it grows (`MCL_FUTURE`), each page
/// once touched (`MCL_ONFAULT`). Refuses when the locked-memory limit would
/// make later allocations fail instead (a finite `RLIMIT_MEMLOCK` without
/// `CAP_IPC_LOCK`), after trying to raise the soft limit to the hard one.
pub fn lock_all() -> Result<(), Error> {
    use nix::sys::mman::{MlockAllFlags, mlockall};
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};
    if !has_ipc_lock() {
        let (soft, hard) =
            getrlimit(Resource::RLIMIT_MEMLOCK).map_err(|error| Error::Lock(error.into()))?;
        if soft != hard {
            let _ = setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard);
        }
        if hard != RLIM_INFINITY {
            return Err(Error::Limited { limit: hard });
        }
    }
    // nix has no name for MCL_ONFAULT (Linux 4.4+): its bit from libc.
    let flags = MlockAllFlags::from_bits_retain(
        (MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE).bits() | libc::MCL_ONFAULT,
    );
    mlockall(flags).map_err(|error| Error::Lock(error.into()))
}

/// Whether the effective capabilities hold CAP_IPC_LOCK (bit 14), which lifts
/// the locked-memory limit.
fn has_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("CapEff:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1 << CAP_IPC_LOCK) != 0)
}
