//! Getting the mount point ready: a coffer mount left there (by a crash, when
//! auto-unmount could not run) is detached lazily, a missing directory is
//! created, and a directory with files in it is refused: mounting over it would
//! hide them.

use std::io;
use std::path::{Path, PathBuf};

/// The filesystem type coffer's mounts show in `/proc/self/mountinfo`.
pub const FS_TYPE: &str = "fuse.coffer";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the FUSE mount point {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error(
        "the FUSE mount point {0} is not empty: coffer will not hide the files there; empty it or choose another mount_point"
    )]
    NotEmpty(PathBuf),
    #[error("another filesystem ({1}) is mounted at {0}: unmount it first")]
    Occupied(PathBuf, String),
    #[error("the FUSE mount point {0}: {1}")]
    Io(PathBuf, io::Error),
}

/// The absolute path of `path` without following its last component (which
/// may be a dead mount that cannot be stat'ed).
fn absolute(path: &Path) -> Result<PathBuf, Error> {
    let io_error = |error| Error::Io(path.to_owned(), error);
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().map_err(io_error)?.join(path)
    };
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => {
            std::fs::create_dir_all(parent).map_err(io_error)?;
            Ok(parent.canonicalize().map_err(io_error)?.join(name))
        }
        _ => Ok(absolute),
    }
}

/// `mountinfo`'s escaped path (`\040` for a space) as it is.
fn unescape(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\'
            && index + 3 < bytes.len()
            && let Ok(code) = u8::from_str_radix(&field[index + 1..index + 4], 8)
        {
            out.push(code);
            index += 4;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The filesystem types mounted at `path`, innermost last. A FUSE mount made
/// with mount(2) directly (under `no_new_privs`, without fusermount3) carries
/// no subtype: its type is `fuse` and coffer's name is its source; it is
/// [`FS_TYPE`] all the same.
fn mounted_at(mountinfo: &str, path: &Path) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let mount_point = unescape(fields.get(4)?);
            let separator = fields.iter().position(|field| *field == "-")?;
            let fs_type = *fields.get(separator + 1)?;
            let source = fields.get(separator + 2).copied().unwrap_or_default();
            let fs_type = match (fs_type, source) {
                ("fuse", "coffer") => FS_TYPE,
                _ => fs_type,
            };
            (Path::new(&mount_point) == path).then(|| fs_type.to_owned())
        })
        .collect()
}

/// Makes `path` ready to mount on; returns whether a stale coffer mount was
/// detached.
pub fn prepare(path: &Path) -> Result<bool, Error> {
    let path = absolute(path)?;
    let io_error = |error| Error::Io(path.clone(), error);
    let mut detached = false;
    for _ in 0..8 {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(io_error)?;
        let Some(fs_type) = mounted_at(&mountinfo, &path).pop() else {
            break;
        };
        if fs_type != FS_TYPE {
            return Err(Error::Occupied(path, fs_type));
        }
        nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|errno| io_error(io::Error::from(errno)))?;
        detached = true;
    }
    match std::fs::metadata(&path) {
        Ok(metadata) if !metadata.is_dir() => return Err(Error::NotADirectory(path)),
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&path).map_err(io_error)?;
        }
        Err(error) => return Err(io_error(error)),
    }
    if std::fs::read_dir(&path).map_err(io_error)?.next().is_some() {
        return Err(Error::NotEmpty(path));
    }
    Ok(detached)
}

/// Whether a coffer filesystem is mounted at `path` (as this process's mount
/// namespace sees it) and its root answers a `stat`.
pub fn answers(path: &Path) -> Result<(), Error> {
    let path = absolute(path)?;
    let io_error = |error| Error::Io(path.clone(), error);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(io_error)?;
    match mounted_at(&mountinfo, &path).pop() {
        Some(fs_type) if fs_type == FS_TYPE => {}
        Some(fs_type) => return Err(Error::Occupied(path, fs_type)),
        None => {
            return Err(io_error(io::Error::new(
                io::ErrorKind::NotFound,
                "nothing is mounted there",
            )));
        }
    }
    std::fs::metadata(&path).map_err(io_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_matched_by_their_unescaped_mount_point() {
        let mountinfo = "\
36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - fuse.coffer coffer rw\n\
37 35 98:0 / /secrets rw,nosuid - fuse.coffer coffer ro,user_id=0\n\
38 37 0:5 / /secrets rw - tmpfs tmpfs rw\n\
39 35 0:6 / /direct rw - fuse coffer ro,user_id=995\n\
40 35 0:7 / /sshfs rw - fuse sshfs#host ro\n";
        assert_eq!(
            mounted_at(mountinfo, Path::new("/mnt/a b")),
            ["fuse.coffer"]
        );
        assert_eq!(
            mounted_at(mountinfo, Path::new("/secrets")),
            ["fuse.coffer", "tmpfs"]
        );
        assert_eq!(mounted_at(mountinfo, Path::new("/direct")), [FS_TYPE]);
        assert_eq!(mounted_at(mountinfo, Path::new("/sshfs")), ["fuse"]);
        assert!(mounted_at(mountinfo, Path::new("/other")).is_empty());
    }

    #[test]
    fn a_directory_with_files_is_refused_and_a_missing_one_created() {
        let temporary = tempfile::tempdir().unwrap();
        let root = temporary.path();
        let missing = root.join("new/secrets");
        assert!(!prepare(&missing).unwrap());
        assert!(missing.is_dir());
        std::fs::write(missing.join("keep"), b"x").unwrap();
        assert!(matches!(prepare(&missing), Err(Error::NotEmpty(_))));
        let file = root.join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(prepare(&file), Err(Error::NotADirectory(_))));
    }
}
