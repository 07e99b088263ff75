//! Binding the Unix-socket door: its directory, a stale socket left by a crash,
//! the socket's mode and owner, and removal at shutdown.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot create the socket's directory {path}: {source}")]
    Directory { path: String, source: io::Error },
    #[error("{path} exists and is not a socket: coffer will not replace it")]
    NotASocket { path: String },
    #[error("another server is already listening on {path}")]
    InUse { path: String },
    #[error("cannot listen on {path}: {source}")]
    Bind { path: String, source: io::Error },
    #[error("cannot set the mode or owner of {path}: {source}")]
    Permissions { path: String, source: io::Error },
}

/// What the socket file should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketFile {
    pub path: PathBuf,
    /// Permission bits; connecting needs write permission.
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Removes the socket file when dropped, if the file is still the one bound
/// (another server may have replaced it meanwhile).
pub struct SocketGuard {
    path: PathBuf,
    inode: Option<u64>,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let ours = std::fs::symlink_metadata(&self.path)
            .ok()
            .is_some_and(|metadata| Some(metadata.ino()) == self.inode);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds `file.path`: creates its directory (mode 0755) if missing, replaces a
/// socket nobody listens on (a crash left it), refuses anything else, then sets
/// the mode and owner. Must run inside a Tokio runtime.
pub fn bind(file: &SocketFile) -> Result<(UnixListener, SocketGuard), BindError> {
    use std::os::unix::fs::MetadataExt;
    let path = &file.path;
    let shown = path.display().to_string();
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        create_directory(parent).map_err(|source| BindError::Directory {
            path: parent.display().to_string(),
            source,
        })?;
    }
    remove_stale(path)?;
    let listener = UnixListener::bind(path).map_err(|source| BindError::Bind {
        path: shown.clone(),
        source,
    })?;
    let permissions = |source| BindError::Permissions {
        path: shown.clone(),
        source,
    };
    let guard = SocketGuard {
        path: path.clone(),
        inode: std::fs::symlink_metadata(path)
            .map(|metadata| metadata.ino())
            .ok(),
    };
    if file.uid.is_some() || file.gid.is_some() {
        std::os::unix::fs::chown(path, file.uid, file.gid).map_err(permissions)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(file.mode & 0o777))
        .map_err(permissions)?;
    Ok((listener, guard))
}

fn create_directory(directory: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(directory)
    {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Removes a socket file that no server answers on.
fn remove_stale(path: &Path) -> Result<(), BindError> {
    let shown = || path.display().to_string();
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(BindError::Bind {
                path: shown(),
                source,
            });
        }
    };
    if !metadata.file_type().is_socket() {
        return Err(BindError::NotASocket { path: shown() });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(BindError::InUse { path: shown() }),
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(|source| BindError::Bind {
                path: shown(),
                source,
            })
        }
        Err(source) => Err(BindError::Bind {
            path: shown(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn file(path: PathBuf) -> SocketFile {
        SocketFile {
            path,
            mode: 0o660,
            uid: None,
            gid: None,
        }
    }

    #[tokio::test]
    async fn binds_with_mode_replaces_stale_and_refuses_the_rest() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("run/coffer.sock");
        let (_listener, bound) = bind(&file(path.clone())).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        // A second server is refused while the first listens.
        assert!(matches!(
            bind(&file(path.clone())),
            Err(BindError::InUse { .. })
        ));
        // A socket left behind (its listener gone, file still there) is replaced.
        let stale = std::os::unix::net::UnixListener::bind(directory.path().join("stale.sock"));
        drop(stale);
        let stale_path = directory.path().join("stale.sock");
        assert!(stale_path.exists());
        let replaced = bind(&file(stale_path.clone())).unwrap();
        drop(replaced);
        assert!(!stale_path.exists(), "removed at drop");
        drop(bound);
        assert!(!path.exists());
        // A regular file is never replaced.
        let regular = directory.path().join("file");
        std::fs::write(&regular, b"keep").unwrap();
        assert!(matches!(
            bind(&file(regular.clone())),
            Err(BindError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read(&regular).unwrap(), b"keep");
    }
}
