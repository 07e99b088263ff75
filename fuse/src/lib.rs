//! The `/secrets` FUSE filesystem: every lookup, listing and open becomes a
//! request to the same core pipeline as HTTP (transport `fuse`, the caller's
//! uid, gid and pid from the kernel), so policies, `auth/local` roles and audit
//! apply unchanged.
//!
//! This crate knows the core only through `coffer_protocols::Handler`.

mod certs;
mod client;
mod fs;
mod leases;
pub mod mount_point;
mod render;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use coffer_protocols::Handler;
use fuser::{Config, MountOption, SessionACL};

/// How the filesystem is mounted (`fuse { }` in the configuration).
#[derive(Debug, Clone)]
pub struct Options {
    pub mount_point: PathBuf,
    /// Threads serving FUSE requests; a slow open (a new database user) holds one.
    pub threads: usize,
    /// Revoke a dynamic credential's lease when it falls out of use, instead of
    /// letting it expire.
    pub revoke_unused_leases: bool,
}

/// How long an unmount waits for the FUSE threads to finish.
const UNMOUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A mounted filesystem: unmounted when dropped.
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    renewer: tokio::task::JoinHandle<()>,
    mount_point: PathBuf,
    /// The kernel's id for this FUSE connection (under
    /// `/sys/fs/fuse/connections/`), to abort requests still in flight.
    connection: Option<u64>,
}

impl Mounted {
    /// Unmounts: detaches the mount (processes holding files in it get errors
    /// from then on), aborts the connection, and waits up to five seconds for
    /// the FUSE threads to finish.
    pub fn unmount(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
        self.renewer.abort();
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        // fusermount3's auto-unmount is for crashes; here the mount is taken
        // down directly, so nothing waits on fusermount3.
        let detached = nix::mount::umount2(&self.mount_point, nix::mount::MntFlags::MNT_DETACH);
        if let Some(connection) = self.connection {
            let _ = std::fs::write(format!("/sys/fs/fuse/connections/{connection}/abort"), b"1");
        }
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(session.umount_and_join());
        });
        match finished.recv_timeout(UNMOUNT_WAIT) {
            // Detached above: fuser's own umount(2) then finds no mount there.
            Ok(Err(error)) if detached.is_ok() && error.kind() == io::ErrorKind::InvalidInput => {}
            Ok(result) => result?,
            Err(_) => tracing::warn!("FUSE threads still busy after unmount; not waiting longer"),
        }
        detached.map_err(io::Error::from)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::warn!(%error, "unmounting the FUSE filesystem failed");
        }
    }
}

/// Locks `mutex`; a panic elsewhere while it was held does not stop the
/// filesystem (the data behind these locks stays consistent between statements).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether `fusermount3`, which auto-unmount needs, is on the `PATH`.
fn fusermount_present() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|directory| directory.join("fusermount3").is_file())
    })
}

/// Whether this process runs with `no_new_privs` (set by systemd's
/// `NoNewPrivileges=` and by seccomp filters): setuid programs then run
/// without their privileges.
fn no_new_privileges() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.split_whitespace().eq(["NoNewPrivs:", "1"]))
    })
}

/// Mounts the filesystem at `options.mount_point` (which `mount_point::prepare`
/// has made ready): read-only, `nosuid`, `nodev`, `noexec`, open to every user
/// (the core decides who reads what), and unmounted by `fusermount3` if this
/// process dies (unless `no_new_privs` voids fusermount3's setuid: then the
/// next start, or the unit's `ExecStopPost`, detaches the dead mount). Blocking: call it off the async threads.
pub fn mount<H: Handler>(
    handler: Arc<H>,
    runtime: tokio::runtime::Handle,
    options: &Options,
) -> io::Result<Mounted> {
    let client = Arc::new(client::Client::new(handler, runtime.clone()));
    let leases = Arc::new(leases::Leases::new(options.revoke_unused_leases));
    let certificates = Arc::new(certs::Certificates::default());
    let filesystem = fs::SecretsFs::new(client.clone(), leases.clone(), certificates.clone());
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("coffer".into()),
        MountOption::Subtype("coffer".into()),
        MountOption::RO,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::NoExec,
        MountOption::NoAtime,
    ];
    if no_new_privileges() {
        // fusermount3 is setuid root, which no_new_privs (systemd's
        // NoNewPrivileges=) voids: mount(2) directly with CAP_SYS_ADMIN, and
        // leave a crash's dead mount to the next start or ExecStopPost.
        tracing::debug!("no_new_privs: mounting without fusermount3's auto-unmount");
    } else if fusermount_present() {
        config.mount_options.push(MountOption::AutoUnmount);
    } else {
        tracing::warn!(
            "fusermount3 is missing (Debian package fuse3): a crash will leave a dead mount until the next start detaches it"
        );
    }
    config.acl = SessionACL::All;
    config.n_threads = Some(options.threads.max(1));
    config.clone_fd = true;
    let session = fuser::spawn_mount(filesystem, &options.mount_point, &config)?;
    let renewer = runtime.spawn(async move {
        let mut round = tokio::time::interval(leases::RENEW_ROUND);
        round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            round.tick().await;
            leases.renew_round(&client).await;
            certificates.forget_expired();
        }
    });
    let connection = std::fs::metadata(&options.mount_point)
        .ok()
        .map(|metadata| nix::sys::stat::minor(std::os::unix::fs::MetadataExt::dev(&metadata)));
    Ok(Mounted {
        session: Some(session),
        renewer,
        mount_point: options.mount_point.clone(),
        connection,
    })
}
