//! Where a device's lines go: a file (or stdout), syslog, or a TCP, UDP or Unix
//! socket. Sinks do blocking I/O on their device's own thread; every socket has
//! the device's write timeout, so a peer that stops reading makes a write fail
//! instead of hanging.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

/// One opened destination. `write` gets every line of a batch, each a JSON
/// document ending in a newline, and returns once all are handed to the OS.
pub trait Sink: Send {
    fn write(&mut self, lines: &[Vec<u8>]) -> io::Result<()>;
}

/// The socket kinds of the `socket` device (and of remote syslog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketType {
    Tcp,
    Udp,
    Unix,
}

/// A destination, as configured; [`Target::open`] connects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    File {
        path: PathBuf,
        mode: Option<u32>,
    },
    Stdout,
    Discard,
    Syslog {
        /// Upper case: `AUTH`, `LOCAL0`, ... (checked by [`facility`]).
        facility: String,
        tag: String,
        /// `None`: the local syslog socket (`/dev/log`).
        remote: Option<(SocketType, String)>,
    },
    Socket {
        socket_type: SocketType,
        address: String,
    },
}

/// The syslog facility named `name` (any case).
pub fn facility(name: &str) -> Option<Facility> {
    let facility = match name.to_ascii_uppercase().as_str() {
        "KERN" => Facility::LOG_KERN,
        "USER" => Facility::LOG_USER,
        "MAIL" => Facility::LOG_MAIL,
        "DAEMON" => Facility::LOG_DAEMON,
        "AUTH" => Facility::LOG_AUTH,
        "SYSLOG" => Facility::LOG_SYSLOG,
        "AUTHPRIV" => Facility::LOG_AUTHPRIV,
        "LOCAL0" => Facility::LOG_LOCAL0,
        "LOCAL1" => Facility::LOG_LOCAL1,
        "LOCAL2" => Facility::LOG_LOCAL2,
        "LOCAL3" => Facility::LOG_LOCAL3,
        "LOCAL4" => Facility::LOG_LOCAL4,
        "LOCAL5" => Facility::LOG_LOCAL5,
        "LOCAL6" => Facility::LOG_LOCAL6,
        "LOCAL7" => Facility::LOG_LOCAL7,
        _ => return None,
    };
    Some(facility)
}

fn resolve(address: &str) -> io::Result<SocketAddr> {
    address.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{address} resolves to nothing"),
        )
    })
}

/// Opens an audit log for appending, as the file device may: the path itself,
/// never a symbolic link's target (`O_NOFOLLOW`); a new file is made with
/// `mode` (none: the process's default), an existing one must be a regular
/// file with one name, owned by this process's user, without execute or
/// set-id bits, and either empty or an audit log already (it starts with `{`),
/// and its mode is left as it is. So a device pointed at `/etc/passwd`, a
/// script, a directory, a FIFO or a link to any of them opens nothing and
/// changes nothing.
pub fn open_log(path: &Path, mode: Option<u32>) -> io::Result<File> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let refuse = |reason: &str| io::Error::new(io::ErrorKind::InvalidInput, reason.to_owned());
    // O_NONBLOCK: a FIFO without a reader fails at once instead of blocking
    // the open; it changes nothing for a regular file.
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    let mut create = OpenOptions::new();
    create
        .create_new(true)
        .append(true)
        .custom_flags(flags)
        .mode(mode.unwrap_or(0o600));
    match create.open(path) {
        Ok(file) => {
            // Ours: the mode exactly, whatever the umask took off.
            if let Some(mode) = mode {
                file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            }
            return Ok(file);
        }
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refuse("it is a symbolic link"));
        }
        Err(error) => return Err(error),
    }
    let mut file = OpenOptions::new()
        .append(true)
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|error| match error.raw_os_error() {
            Some(libc::ELOOP) => refuse("it is a symbolic link"),
            Some(libc::EISDIR) => refuse("it is a directory"),
            Some(libc::ENXIO) => refuse("it is not a regular file"),
            _ => error,
        })?;
    let metadata = file.metadata()?;
    if !metadata.file_type().is_file() {
        return Err(refuse("it is not a regular file"));
    }
    if metadata.nlink() != 1 {
        return Err(refuse("the file has more than one name (a hard link)"));
    }
    if metadata.uid() != nix::unistd::geteuid().as_raw() {
        return Err(refuse("the file belongs to another user"));
    }
    if metadata.mode() & 0o7111 != 0 {
        return Err(refuse("the file is executable or set-id"));
    }
    if metadata.len() > 0 {
        let mut first = [0u8; 1];
        io::Read::read_exact(&mut file, &mut first)?;
        if first[0] != b'{' {
            return Err(refuse(
                "the file is not empty and not an audit log (its first byte is not '{')",
            ));
        }
    }
    Ok(file)
}

fn syslog_error(error: syslog::Error) -> io::Error {
    io::Error::other(error.to_string())
}

impl Target {
    /// What operators see in errors and logs.
    pub fn describe(&self) -> String {
        match self {
            Target::File { path, .. } => path.display().to_string(),
            Target::Stdout => "stdout".into(),
            Target::Discard => "discard".into(),
            Target::Syslog { remote: None, .. } => "the local syslog socket".into(),
            Target::Syslog {
                remote: Some((_, address)),
                ..
            }
            | Target::Socket { address, .. } => address.clone(),
        }
    }

    /// Opens the destination; sockets get `timeout` for connecting and writing.
    pub fn open(&self, timeout: Duration) -> io::Result<Box<dyn Sink>> {
        match self {
            Target::File { path, mode } => Ok(Box::new(FileSink {
                file: open_log(path, *mode)?,
            })),
            Target::Stdout => Ok(Box::new(StdoutSink)),
            Target::Discard => Ok(Box::new(DiscardSink)),
            Target::Syslog {
                facility,
                tag,
                remote,
            } => {
                let formatter = Formatter3164 {
                    facility: self::facility(facility).ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidInput, "unknown syslog facility")
                    })?,
                    hostname: None,
                    process: tag.clone(),
                    pid: std::process::id(),
                };
                let mut logger = match remote {
                    None => syslog::unix(formatter).map_err(syslog_error)?,
                    Some((SocketType::Unix, path)) => {
                        syslog::unix_custom(formatter, path).map_err(syslog_error)?
                    }
                    Some((SocketType::Udp, address)) => {
                        let server = resolve(address)?;
                        let local = if server.is_ipv4() {
                            "0.0.0.0:0"
                        } else {
                            "[::]:0"
                        };
                        syslog::udp(formatter, local, server).map_err(syslog_error)?
                    }
                    Some((SocketType::Tcp, address)) => {
                        let stream = TcpStream::connect_timeout(&resolve(address)?, timeout)?;
                        Logger::new(LoggerBackend::Tcp(io::BufWriter::new(stream)), formatter)
                    }
                };
                match &mut logger.backend {
                    LoggerBackend::Unix(socket) => socket.set_write_timeout(Some(timeout))?,
                    LoggerBackend::UnixStream(socket) => {
                        socket.get_ref().set_write_timeout(Some(timeout))?
                    }
                    LoggerBackend::Udp(socket, _) => socket.set_write_timeout(Some(timeout))?,
                    LoggerBackend::Tcp(socket) => {
                        socket.get_ref().set_write_timeout(Some(timeout))?
                    }
                }
                Ok(Box::new(SyslogSink { logger }))
            }
            Target::Socket {
                socket_type: SocketType::Tcp,
                address,
            } => {
                let stream = TcpStream::connect_timeout(&resolve(address)?, timeout)?;
                stream.set_write_timeout(Some(timeout))?;
                stream.set_nodelay(true)?;
                Ok(Box::new(StreamSink { stream }))
            }
            Target::Socket {
                socket_type: SocketType::Unix,
                address,
            } => {
                let stream = UnixStream::connect(address)?;
                stream.set_write_timeout(Some(timeout))?;
                Ok(Box::new(StreamSink { stream }))
            }
            Target::Socket {
                socket_type: SocketType::Udp,
                address,
            } => {
                let server = resolve(address)?;
                let local = if server.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = UdpSocket::bind(local)?;
                socket.connect(server)?;
                socket.set_write_timeout(Some(timeout))?;
                Ok(Box::new(DatagramSink { socket }))
            }
        }
    }
}

struct FileSink {
    file: File,
}

/// Writes every line with as few system calls as the kernel allows (one
/// `writev` per batch, usually), without copying them into one buffer.
fn write_lines(out: &mut impl Write, lines: &[Vec<u8>]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> =
        lines.iter().map(|line| io::IoSlice::new(line)).collect();
    let mut remaining: &mut [io::IoSlice<'_>] = &mut slices;
    while !remaining.is_empty() {
        match out.write_vectored(remaining) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => io::IoSlice::advance_slices(&mut remaining, written),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

impl Sink for FileSink {
    fn write(&mut self, lines: &[Vec<u8>]) -> io::Result<()> {
        // The file is opened for append, so another writer of the same file
        // never lands inside a line.
        write_lines(&mut self.file, lines)
    }
}

struct StdoutSink;

impl Sink for StdoutSink {
    fn write(&mut self, lines: &[Vec<u8>]) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        stdout.write_all(&lines.concat())?;
        stdout.flush()
    }
}

struct DiscardSink;

impl Sink for DiscardSink {
    fn write(&mut self, _lines: &[Vec<u8>]) -> io::Result<()> {
        Ok(())
    }
}

struct StreamSink<S: Write + Send> {
    stream: S,
}

impl<S: Write + Send> Sink for StreamSink<S> {
    fn write(&mut self, lines: &[Vec<u8>]) -> io::Result<()> {
        write_lines(&mut self.stream, lines)
    }
}

struct DatagramSink {
    socket: UdpSocket,
}

impl Sink for DatagramSink {
    fn write(&mut self, lines: &[Vec<u8>]) -> io::Result<()> {
        // One entry per datagram, so a receiver gets whole documents.
        for line in lines {
            self.socket.send(line)?;
        }
        Ok(())
    }
}

struct SyslogSink {
    logger: Logger<LoggerBackend, Formatter3164>,
}

impl Sink for SyslogSink {
    fn write(&mut self, lines: &[Vec<u8>]) -> io::Result<()> {
        for line in lines {
            let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line));
            self.logger
                .info(text.as_ref())
                .map_err(|error| io::Error::other(error.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn a_file_gets_each_batch_appended_with_its_mode() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("audit.log");
        let target = Target::File {
            path: path.clone(),
            mode: Some(0o640),
        };
        let mut sink = target.open(Duration::from_secs(1)).unwrap();
        sink.write(&[b"{\"a\":1}\n".to_vec(), b"{\"b\":2}\n".to_vec()])
            .unwrap();
        let mut sink = target.open(Duration::from_secs(1)).unwrap();
        sink.write(&[b"{\"c\":3}\n".to_vec()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"
        );
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }

    #[test]
    fn a_file_that_is_not_an_audit_log_is_neither_opened_nor_changed() {
        use std::os::unix::fs::PermissionsExt as _;
        let directory = tempfile::tempdir().unwrap();
        let passwd = directory.path().join("passwd");
        std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644)).unwrap();
        let script = directory.path().join("script");
        std::fs::write(&script, "{\"looks\": \"like json\"}\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = directory.path().join("link");
        std::os::unix::fs::symlink(directory.path().join("target.log"), &link).unwrap();
        let hard = directory.path().join("hard");
        let log = directory.path().join("audit.log");
        std::fs::write(&log, "{}\n").unwrap();
        std::fs::hard_link(&log, &hard).unwrap();
        let fifo = directory.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();

        for (path, reason) in [
            (&passwd, "not an audit log"),
            (&script, "executable"),
            (&link, "symbolic link"),
            (&hard, "more than one name"),
            (&fifo.clone(), "not a regular file"),
            (&directory.path().to_path_buf(), "directory"),
        ] {
            let error = open_log(path, Some(0o600)).unwrap_err();
            assert!(error.to_string().contains(reason), "{path:?}: {error}");
        }
        assert_eq!(
            std::fs::read_to_string(&passwd).unwrap(),
            "root:x:0:0:root:/root:/bin/bash\n"
        );
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&passwd), 0o644, "never chmod'ed");
        assert_eq!(mode(&script), 0o755);
        assert!(
            !directory.path().join("target.log").exists(),
            "nothing made through the link"
        );

        // An audit log already there is appended to, its mode left alone.
        std::fs::remove_file(&hard).unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut file = open_log(&log, Some(0o600)).unwrap();
        file.write_all(b"{\"b\":1}\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "{}\n{\"b\":1}\n");
        assert_eq!(mode(&log), 0o644);
    }

    #[test]
    fn a_tcp_socket_gets_lines_and_a_dead_peer_fails() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let target = Target::Socket {
            socket_type: SocketType::Tcp,
            address: address.clone(),
        };
        let mut sink = target.open(Duration::from_secs(1)).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        sink.write(&[b"one\n".to_vec(), b"two\n".to_vec()]).unwrap();
        let mut received = [0u8; 8];
        peer.read_exact(&mut received).unwrap();
        assert_eq!(&received, b"one\ntwo\n");
        drop(listener);
        drop(peer);
        let mut failed = false;
        for _ in 0..20 {
            if sink.write(&[b"three\n".to_vec()]).is_err() {
                failed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(failed, "writing to a closed peer kept succeeding");
        assert!(target.open(Duration::from_millis(200)).is_err());
    }
}
