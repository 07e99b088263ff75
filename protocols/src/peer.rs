//! Who a local caller is: a Unix-socket caller's identity, fixed once when it
//! connects, and the `/proc` readers behind it (supplementary groups, systemd
//! unit, executable).
//!
//! A pid names a process only while that process lives: once it exits the
//! kernel may give the number to another one. So a socket caller is read once,
//! at accept, and the reads are tied to the process that connected: through the
//! pidfd the kernel keeps for the connection (`SO_PEERPIDFD`), which tells
//! whether that very process is still alive after the reads, or, on kernels
//! without it, through the process's start time, which must predate the accept
//! and be the same before and after the reads. A caller that cannot be pinned
//! down this way is refused, not served with a guess.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::LocalPeer;

/// The systemd units whose cgroups systemd itself places: a service, a scope
/// (a login session, `systemd-run --scope`) or a socket's helper.
const UNIT_SUFFIXES: [&str; 3] = [".service", ".scope", ".socket"];

impl LocalPeer {
    /// Fills in the supplementary groups, the systemd unit and the executable
    /// of `self.pid` from `/proc`. The caller must make sure the pid still
    /// names the process it stands for while this runs (a FUSE caller is
    /// blocked in its system call; a socket caller is checked by [`identify`]).
    pub fn describe(&mut self) {
        if self.pid == 0 {
            return;
        }
        self.groups = supplementary_groups(self.pid);
        self.unit = systemd_unit(self.pid);
        self.executable = LocalPeer::read_executable(self.pid);
    }
}

/// The caller at the other end of a Unix-socket connection, as it was when it
/// connected: uid, gid and pid (`SO_PEERCRED`), supplementary groups
/// (`SO_PEERGROUPS`), and its systemd unit and executable read through `/proc`
/// while the process is proven to be the one that connected.
///
/// A pid of 0 (the caller is in a pid namespace this process cannot see) leaves
/// the unit and executable unknown: roles that bind a unit do not match it.
pub fn identify(stream: &impl AsFd) -> io::Result<LocalPeer> {
    let credentials =
        nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
            .map_err(io::Error::from)?;
    let uid = credentials.uid();
    let gid = credentials.gid();
    let pid = u32::try_from(credentials.pid()).unwrap_or(0);
    let mut peer = LocalPeer::from_kernel(uid, gid, pid);
    peer.groups = peer_groups(stream)?;
    if pid == 0 {
        return Ok(peer);
    }
    let accepted_at = boot_ticks();
    match nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerPidfd) {
        Ok(pidfd) => {
            peer.unit = systemd_unit(pid);
            peer.executable = LocalPeer::read_executable(pid);
            if exited(&pidfd)? {
                return Err(gone(pid));
            }
        }
        // The process is gone already (newer kernels refuse its pidfd).
        Err(nix::errno::Errno::ESRCH) => return Err(gone(pid)),
        // A kernel before 6.5: no pidfd for the peer.
        Err(_) => {
            let before = start_ticks(pid).ok_or_else(|| gone(pid))?;
            if accepted_at.is_some_and(|accepted_at| before > accepted_at) {
                return Err(gone(pid));
            }
            peer.unit = systemd_unit(pid);
            peer.executable = LocalPeer::read_executable(pid);
            if start_ticks(pid) != Some(before) {
                return Err(gone(pid));
            }
        }
    }
    Ok(peer)
}

fn gone(pid: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        format!("the process that connected (pid {pid}) is gone; its identity cannot be read"),
    )
}

/// Whether the process behind `pidfd` has exited (a pidfd polls readable then).
fn exited(pidfd: &OwnedFd) -> io::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).map_err(io::Error::from)?;
    Ok(fds[0]
        .revents()
        .is_some_and(|events| events.intersects(PollFlags::POLLIN | PollFlags::POLLHUP)))
}

/// The peer's supplementary groups as they were when it connected.
#[allow(unsafe_code)]
fn peer_groups(stream: &impl AsFd) -> io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let capacity = groups.len() * size_of::<libc::gid_t>();
        let mut length = libc::socklen_t::try_from(capacity).unwrap_or(libc::socklen_t::MAX);
        // SAFETY: the buffer is valid for `length` bytes and lives across the
        // call; the kernel writes at most `length` bytes and sets `length` to
        // what it wrote (or, with ERANGE, to what it needs).
        let result = unsafe {
            libc::getsockopt(
                stream.as_fd().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut length,
            )
        };
        let needed = usize::try_from(length).unwrap_or(usize::MAX) / size_of::<libc::gid_t>();
        if result == 0 {
            groups.truncate(needed);
            return Ok(groups);
        }
        let error = io::Error::last_os_error();
        // 65536 groups is the kernel's own limit (NGROUPS_MAX).
        if error.raw_os_error() == Some(libc::ERANGE) && needed > groups.len() && needed <= 65536 {
            groups.resize(needed, 0);
            continue;
        }
        return Err(error);
    }
}

/// Clock ticks since boot, the unit of a process's start time in `/proc`.
fn boot_ticks() -> Option<u64> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let ticks_per_second = clock_ticks()?;
    let seconds = u64::try_from(now.tv_sec()).ok()?;
    let nanoseconds = u64::try_from(now.tv_nsec()).ok()?;
    // One tick of slack: the start time is rounded to a tick.
    Some(seconds * ticks_per_second + nanoseconds * ticks_per_second / 1_000_000_000 + 1)
}

fn clock_ticks() -> Option<u64> {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|ticks| u64::try_from(ticks).ok())
}

/// A process's start time (clock ticks since boot), from `/proc/<pid>/stat`.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    start_ticks_of(&stat)
}

fn start_ticks_of(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may hold spaces or parentheses
    // itself: fields are counted after its last `)`. `starttime` is field 22,
    // the 20th after it.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The caller's supplementary groups, from `/proc/<pid>/status`.
pub fn supplementary_groups(pid: u32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|gid| gid.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The unit of the system's service manager that the process runs in, as its
/// cgroup path: the slices that hold it and the unit (`/system.slice/app.service`).
pub fn systemd_unit(pid: u32) -> Option<String> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    unit_of(&cgroups)
}

/// The system manager's unit in a `/proc/<pid>/cgroup` listing: the slices from
/// the root down, then the first cgroup that is not a slice, which must be a
/// unit. Whatever lies below that unit is the unit's own (a user's service
/// manager under `user@1000.service`, a container's tree under a delegated
/// service): anyone in there can name their cgroups as they like, so the
/// process belongs to the outer unit, never to a name found deeper.
pub fn unit_of(cgroups: &str) -> Option<String> {
    // cgroup v2 is the line `0::/path`; v1 hierarchies name systemd's own.
    let path = cgroups
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .filter(|path| *path != "/")
        .or_else(|| {
            cgroups
                .lines()
                .find_map(|line| line.split_once(":name=systemd:").map(|(_, path)| path))
        })?;
    let mut unit_path = String::new();
    for part in path.split('/').filter(|part| !part.is_empty()) {
        unit_path.push('/');
        unit_path.push_str(part);
        if part.ends_with(".slice") {
            continue;
        }
        return UNIT_SUFFIXES
            .iter()
            .any(|suffix| part.len() > suffix.len() && part.ends_with(suffix))
            .then_some(unit_path);
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_unit_is_the_first_non_slice_cgroup_under_the_root() {
        let check = |cgroups: &str, expected: Option<&str>| {
            assert_eq!(unit_of(cgroups).as_deref(), expected, "{cgroups:?}");
        };
        check(
            "0::/system.slice/app.service\n",
            Some("/system.slice/app.service"),
        );
        check(
            "0::/system.slice/app.service/worker\n",
            Some("/system.slice/app.service"),
        );
        check(
            "0::/system.slice/shop.slice/app.service\n",
            Some("/system.slice/shop.slice/app.service"),
        );
        // A user's own manager: everything below user@UID.service is theirs.
        check(
            "0::/user.slice/user-1001.slice/user@1001.service/app.slice/app.service\n",
            Some("/user.slice/user-1001.slice/user@1001.service"),
        );
        check(
            "0::/user.slice/user-1000.slice/session-4.scope\n",
            Some("/user.slice/user-1000.slice/session-4.scope"),
        );
        check(
            "12:cpu:/x\n1:name=systemd:/system.slice/old.service\n",
            Some("/system.slice/old.service"),
        );
        check(
            "1:name=systemd:/system.slice/old.service\n0::/\n",
            Some("/system.slice/old.service"),
        );
        // Not under systemd's layout: no unit.
        check("0::/docker/abc/app.service\n", None);
        check("0::/\n", None);
        check("0::/system.slice\n", None);
        check("", None);
    }

    #[test]
    fn start_time_is_read_after_the_command_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(start_ticks_of(stat), Some(987_654));
        assert_eq!(start_ticks_of("1 (x) S 1"), None);
        assert!(start_ticks(std::process::id()).is_some());
    }

    #[test]
    fn a_socket_caller_is_read_at_connect() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let peer = identify(&ours).unwrap();
        assert_eq!(peer.uid, nix::unistd::getuid().as_raw());
        assert_eq!(peer.pid, std::process::id());
        assert_eq!(peer.groups, supplementary_groups(std::process::id()));
        assert_eq!(peer.unit, systemd_unit(std::process::id()));
        assert_eq!(
            peer.executable,
            LocalPeer::read_executable(std::process::id())
        );
        drop(theirs);
    }
}
