//! The FUSE operations: names resolved per caller through the core's
//! `sys/internal/fs` view, file contents built once per open from an ordinary
//! (audited, authorized) read, everything read-only.
//!
//! Inodes stand for (directory path, file kind) pairs and are shared by every
//! caller, and so is the kernel's dentry cache. What a caller may see is
//! therefore decided by every operation that reaches a node (lookup, getattr,
//! access, open, opendir), never by the cache: attribute TTLs are zero (each
//! `stat` asks, per caller), opens use direct I/O and build their bytes afresh,
//! and listings are filtered per caller. Positive entries are kept by the
//! kernel for [`ENTRY_TTL`], which spares a path walk one round trip per
//! component; a caller who may not see a cached name still gets `EACCES` from
//! the operation it attempts, exactly as from a lookup (403 whether or not the
//! name exists), and a name deleted meanwhile fails at open with `ENOENT`.
//! Negative answers are never cached. Positive answers about a directory (it
//! exists, its field names) are also kept for one second per caller thread
//! here; a name they do not know is always asked again.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use coffer_protocols::{Handler, Operation};
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, WriteFlags,
};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::certs::{Certificates, Issued};
use crate::client::{Client, Who};
use crate::leases::{Held, Leases, fs_path};
use crate::lock;
use crate::render;

/// How long the kernel keeps a positive name lookup (see the module comment).
pub const ENTRY_TTL: Duration = Duration::from_secs(1);
/// How long a positive answer about a directory is reused for one caller thread.
const INFO_REUSE: Duration = Duration::from_secs(1);
/// Cached answers kept at most (then the cache starts over).
const INFO_CACHE_LIMIT: usize = 16_384;

/// What the core says a directory is, for one caller.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Info {
    Folder,
    /// A KV secret (and maybe a folder too); `version` is the KV version.
    Secret {
        read_path: String,
        version: u64,
        fields: Vec<String>,
    },
    /// A dynamic credential: reading `read_path` leases a new one.
    Credential {
        read_path: String,
    },
    /// A static role's credential.
    Static {
        read_path: String,
    },
    /// A certificate for `common_name`, issued by a write to `issue_path`.
    Certificate {
        issue_path: String,
        common_name: String,
    },
}

impl Info {
    fn parse(data: &Map<String, Value>) -> Result<Info, Errno> {
        let text = |key: &str| {
            data.get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(Errno::EIO)
        };
        match data.get("kind").and_then(Value::as_str) {
            Some("folder") => Ok(Info::Folder),
            Some("secret") => Ok(Info::Secret {
                read_path: text("read_path")?,
                version: data.get("version").and_then(Value::as_u64).unwrap_or(1),
                fields: data
                    .get("fields")
                    .and_then(Value::as_array)
                    .map(|fields| {
                        fields
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some("credential") => Ok(Info::Credential {
                read_path: text("read_path")?,
            }),
            Some("static") => Ok(Info::Static {
                read_path: text("read_path")?,
            }),
            Some("certificate") => Ok(Info::Certificate {
                issue_path: text("issue_path")?,
                common_name: text("common_name")?,
            }),
            _ => Err(Errno::EIO),
        }
    }

    /// The files a directory of this kind holds, named for the directory's last
    /// segment `name`. Rules for collisions: `<name>.json` and `<name>.env` win
    /// over fields of those names, and fields win over child secrets (see
    /// README's filesystem section).
    fn files(&self, name: &str) -> Vec<(String, FileKind)> {
        let mut files = Vec::new();
        match self {
            Info::Folder => {}
            Info::Secret { fields, .. } => {
                let json = format!("{name}.json");
                let env = format!("{name}.env");
                for field in fields {
                    if render::valid_file_name(field) && *field != json && *field != env {
                        files.push((field.clone(), FileKind::Field(field.clone())));
                    }
                }
                files.push((json, FileKind::Json));
                files.push((env, FileKind::Env));
            }
            Info::Credential { .. } | Info::Static { .. } => {
                files.push(("username".into(), FileKind::Username));
                files.push(("password".into(), FileKind::Password));
                if matches!(self, Info::Credential { .. }) {
                    files.push(("lease.json".into(), FileKind::LeaseJson));
                }
                files.push((format!("{name}.env"), FileKind::CredentialEnv));
            }
            Info::Certificate { .. } => {
                files.push(("cert.pem".into(), FileKind::CertPem));
                files.push(("key.pem".into(), FileKind::KeyPem));
                files.push(("chain.pem".into(), FileKind::ChainPem));
                files.push(("bundle.pem".into(), FileKind::BundlePem));
            }
        }
        files
    }
}

impl Info {
    /// Whether the directory holds files only (no folders below it).
    fn holds_no_folders(&self) -> bool {
        matches!(
            self,
            Info::Credential { .. } | Info::Static { .. } | Info::Certificate { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FileKind {
    Field(String),
    Json,
    Env,
    Username,
    Password,
    LeaseJson,
    CredentialEnv,
    CertPem,
    KeyPem,
    ChainPem,
    BundlePem,
}

/// What an inode stands for: a directory (its filesystem path, `""` for the
/// root) or a file in one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Node {
    Directory(String),
    File(String, FileKind),
}

struct Inodes {
    numbers: HashMap<Node, u64>,
    nodes: HashMap<u64, (Node, u64)>,
    next: u64,
}

impl Inodes {
    fn new() -> Self {
        let root = Node::Directory(String::new());
        let mut inodes = Inodes {
            numbers: HashMap::new(),
            nodes: HashMap::new(),
            next: 2,
        };
        inodes.numbers.insert(root.clone(), INodeNo::ROOT.0);
        inodes.nodes.insert(INodeNo::ROOT.0, (root, 1));
        inodes
    }

    /// The inode of `node`, counting one kernel lookup when `looked_up`.
    fn number(&mut self, node: Node, looked_up: bool) -> u64 {
        let number = match self.numbers.get(&node) {
            Some(number) => *number,
            None => {
                let number = self.next;
                self.next += 1;
                self.numbers.insert(node.clone(), number);
                self.nodes.insert(number, (node, 0));
                number
            }
        };
        if looked_up && let Some((_, lookups)) = self.nodes.get_mut(&number) {
            *lookups += 1;
        }
        number
    }

    fn forget(&mut self, number: u64, count: u64) {
        if number == INodeNo::ROOT.0 {
            return;
        }
        let gone = match self.nodes.get_mut(&number) {
            Some((_, lookups)) => {
                *lookups = lookups.saturating_sub(count);
                *lookups == 0
            }
            None => false,
        };
        if gone && let Some((node, _)) = self.nodes.remove(&number) {
            self.numbers.remove(&node);
        }
    }
}

/// An open file: its bytes, fixed at open, and the lease they came from.
struct OpenFile {
    bytes: Zeroizing<Vec<u8>>,
    lease: Option<(Who, String, String)>,
}

/// A positive answer about a directory, for one caller thread, and when it came.
type Infos = HashMap<(String, Who), (Instant, Arc<Info>)>;
/// A directory's entries as read at opendir: (inode, kind, name).
type Listing = Vec<(u64, FileType, String)>;

pub struct SecretsFs<H> {
    client: Arc<Client<H>>,
    leases: Arc<Leases>,
    certificates: Arc<Certificates>,
    inodes: Mutex<Inodes>,
    infos: Mutex<Infos>,
    files: Mutex<HashMap<u64, OpenFile>>,
    directories: Mutex<HashMap<u64, Listing>>,
    next_handle: AtomicU64,
    started: SystemTime,
}

fn join(directory: &str, name: &str) -> String {
    if directory.is_empty() {
        name.to_owned()
    } else {
        format!("{directory}/{name}")
    }
}

fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl<H: Handler> SecretsFs<H> {
    pub fn new(
        client: Arc<Client<H>>,
        leases: Arc<Leases>,
        certificates: Arc<Certificates>,
    ) -> Self {
        SecretsFs {
            client,
            leases,
            certificates,
            inodes: Mutex::new(Inodes::new()),
            infos: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            directories: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            started: crate::leases::now(),
        }
    }

    fn node(&self, ino: INodeNo) -> Option<Node> {
        lock(&self.inodes)
            .nodes
            .get(&ino.0)
            .map(|(node, _)| node.clone())
    }

    fn attr(&self, ino: u64, directory: bool, size: u64, who: Who) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind: if directory {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            // Cosmetic: the core decides who reads what; the caller sees its own
            // files, readable by itself only (tools that insist on 0600-like
            // modes for credentials accept them).
            perm: if directory { 0o500 } else { 0o400 },
            nlink: if directory { 2 } else { 1 },
            uid: who.uid,
            gid: who.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// What `path` is for `who`: reused for a second when `reuse`.
    fn info(&self, who: Who, path: &str, reuse: bool) -> Result<Arc<Info>, Errno> {
        if path.is_empty() {
            return Ok(Arc::new(Info::Folder));
        }
        let key = (path.to_owned(), who);
        if reuse
            && let Some((at, info)) = lock(&self.infos).get(&key)
            && at.elapsed() < INFO_REUSE
        {
            return Ok(info.clone());
        }
        let response = self
            .client
            .call(who, Operation::Read, fs_path(path), Map::new())?;
        let info = Arc::new(Info::parse(response.data.as_ref().ok_or(Errno::EIO)?)?);
        let mut infos = lock(&self.infos);
        if infos.len() >= INFO_CACHE_LIMIT {
            infos.clear();
        }
        infos.insert(key, (Instant::now(), info.clone()));
        Ok(info)
    }

    /// The file `name` in `directory` for `who`, if the directory holds one:
    /// from the reused answer, or (when that does not know the name, which may
    /// be new) a fresh one.
    fn file_in(&self, who: Who, directory: &str, name: &str) -> Result<Option<FileKind>, Errno> {
        let find = |info: &Info| {
            info.files(last_segment(directory))
                .into_iter()
                .find(|(file, _)| file == name)
                .map(|(_, kind)| kind)
        };
        let info = self.info(who, directory, true)?;
        if let Some(kind) = find(&info) {
            return Ok(Some(kind));
        }
        if matches!(*info, Info::Folder) {
            return Ok(None);
        }
        Ok(find(&*self.info(who, directory, false)?))
    }

    /// Whether `who` may see `node` now (getattr and access on a name the
    /// kernel cached for another caller come here).
    fn visible(&self, who: Who, node: &Node) -> Result<(), Errno> {
        match node {
            Node::Directory(path) => self.info(who, path, true).map(|_| ()),
            Node::File(directory, kind) => {
                let info = self.info(who, directory, true)?;
                if info
                    .files(last_segment(directory))
                    .iter()
                    .any(|(_, file)| file == kind)
                {
                    Ok(())
                } else {
                    Err(Errno::ENOENT)
                }
            }
        }
    }

    /// The node `name` names in `directory`, for `who`.
    fn resolve(&self, who: Who, directory: &str, name: &str) -> Result<Node, Errno> {
        if !render::valid_file_name(name) {
            return Err(Errno::ENOENT);
        }
        if !directory.is_empty() {
            if let Some(kind) = self.file_in(who, directory, name)? {
                return Ok(Node::File(directory.to_owned(), kind));
            }
            if self.info(who, directory, true)?.holds_no_folders() {
                return Err(Errno::ENOENT);
            }
        }
        let child = join(directory, name);
        self.info(who, &child, true)?;
        Ok(Node::Directory(child))
    }

    /// The bytes of `kind` in `directory`, as `who` reads them now.
    fn content(
        &self,
        who: Who,
        directory: &str,
        kind: &FileKind,
    ) -> Result<(Zeroizing<Vec<u8>>, Option<String>), Errno> {
        let info = self.info(who, directory, true)?;
        match &*info {
            Info::Folder => Err(Errno::ENOENT),
            Info::Secret {
                read_path, version, ..
            } => {
                let response =
                    self.client
                        .call(who, Operation::Read, read_path.clone(), Map::new())?;
                let mut data = response.data.unwrap_or_default();
                if *version == 2 {
                    data = match data.remove("data") {
                        Some(Value::Object(fields)) => fields,
                        _ => return Err(Errno::ENOENT),
                    };
                }
                let bytes = match kind {
                    FileKind::Field(field) => render::field(data.get(field).ok_or(Errno::ENOENT)?),
                    FileKind::Json => render::json(&data),
                    FileKind::Env => {
                        render::env(data.iter().map(|(key, value)| (key.as_str(), value)))
                    }
                    _ => return Err(Errno::ENOENT),
                };
                Ok((Zeroizing::new(bytes), None))
            }
            Info::Credential { read_path } => {
                let role = last_segment(directory);
                self.leases
                    .open(&self.client, who, directory, read_path, |held| {
                        (credential_file(held, kind, role), held.lease_id.clone())
                    })
                    .map(|(bytes, lease)| (bytes, Some(lease)))
            }
            Info::Certificate {
                issue_path,
                common_name,
            } => self
                .certificates
                .open(
                    &self.client,
                    who,
                    directory,
                    issue_path,
                    common_name,
                    |issued| certificate_file(issued, kind),
                )
                .map(|bytes| (bytes, None)),
            Info::Static { read_path } => {
                let response =
                    self.client
                        .call(who, Operation::Read, read_path.clone(), Map::new())?;
                let data = response.data.unwrap_or_default();
                let text = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or("");
                let bytes = match kind {
                    FileKind::Username => text("username").as_bytes().to_vec(),
                    FileKind::Password => text("password").as_bytes().to_vec(),
                    FileKind::CredentialEnv => render::env([
                        ("USERNAME", &json!(text("username"))),
                        ("PASSWORD", &json!(text("password"))),
                    ]),
                    _ => return Err(Errno::ENOENT),
                };
                Ok((Zeroizing::new(bytes), None))
            }
        }
    }

    /// The entries of `directory` for `who`, read once at opendir.
    fn listing(&self, who: Who, directory: &str) -> Result<Listing, Errno> {
        let info = self.info(who, directory, false)?;
        let mut entries: Vec<(Node, FileType, String)> = info
            .files(last_segment(directory))
            .into_iter()
            .map(|(name, kind)| {
                (
                    Node::File(directory.to_owned(), kind),
                    FileType::RegularFile,
                    name,
                )
            })
            .collect();
        if !info.holds_no_folders() {
            let path = format!("{}/", fs_path(directory).trim_end_matches('/'));
            let children = match self.client.list(who, path) {
                Ok(children) => children,
                // A readable secret whose folder the caller may not list.
                Err(error) if error == Errno::EACCES && matches!(*info, Info::Secret { .. }) => {
                    Vec::new()
                }
                Err(error) => return Err(error),
            };
            for child in children {
                let name = child.trim_end_matches('/').to_owned();
                if render::valid_file_name(&name) && !entries.iter().any(|entry| entry.2 == name) {
                    entries.push((
                        Node::Directory(join(directory, &name)),
                        FileType::Directory,
                        name,
                    ));
                }
            }
        }
        let mut inodes = lock(&self.inodes);
        Ok(entries
            .into_iter()
            .map(|(node, kind, name)| (inodes.number(node, false), kind, name))
            .collect())
    }

    fn handle(&self) -> u64 {
        self.next_handle.fetch_add(1, Ordering::Relaxed)
    }
}

/// A certificate directory's file.
fn certificate_file(issued: &Issued, kind: &FileKind) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(match kind {
        FileKind::CertPem => issued.cert_pem(),
        FileKind::KeyPem => issued.key_pem(),
        FileKind::ChainPem => issued.chain_pem(),
        FileKind::BundlePem => issued.bundle_pem(),
        _ => Vec::new(),
    })
}

/// A credential file's bytes from a held lease.
fn credential_file(held: &Held, kind: &FileKind, role: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(match kind {
        FileKind::Username => held.username.as_bytes().to_vec(),
        FileKind::Password => held.password.as_bytes().to_vec(),
        FileKind::LeaseJson => {
            let now = crate::leases::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs());
            let expire = SystemTime::UNIX_EPOCH + Duration::from_secs(held.expire_time);
            let mut bytes = serde_json::to_vec_pretty(&json!({
                "lease_id": held.lease_id,
                "role": role,
                "ttl": held.expire_time.saturating_sub(now),
                "expire_time": humantime::format_rfc3339_seconds(expire).to_string(),
                "renewable": held.renewable,
            }))
            .unwrap_or_default();
            bytes.push(b'\n');
            bytes
        }
        FileKind::CredentialEnv => render::env([
            ("USERNAME", &json!(held.username)),
            ("PASSWORD", &json!(held.password.as_str())),
        ]),
        _ => Vec::new(),
    })
}

impl<H: Handler> Filesystem for SecretsFs<H> {
    fn lookup(&self, request: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let who = Who::of(request);
        let Some(Node::Directory(directory)) = self.node(parent) else {
            return reply.error(Errno::ENOTDIR);
        };
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        match self.resolve(who, &directory, name) {
            Ok(node) => {
                let directory = matches!(node, Node::Directory(_));
                let ino = lock(&self.inodes).number(node, true);
                reply.entry_with_ttls(
                    &Duration::ZERO,
                    &ENTRY_TTL,
                    &self.attr(ino, directory, 0, who),
                    Generation(0),
                );
            }
            Err(error) => reply.error(error),
        }
    }

    fn forget(&self, _request: &Request, ino: INodeNo, nlookup: u64) {
        lock(&self.inodes).forget(ino.0, nlookup);
    }

    fn getattr(&self, request: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let who = Who::of(request);
        let Some(node) = self.node(ino) else {
            return reply.error(Errno::ENOENT);
        };
        if ino != INodeNo::ROOT
            && let Err(error) = self.visible(who, &node)
        {
            return reply.error(error);
        }
        // An open file reports the size of the bytes its handle serves.
        let size = fh
            .and_then(|fh| {
                lock(&self.files)
                    .get(&fh.0)
                    .map(|file| file.bytes.len() as u64)
            })
            .unwrap_or(0);
        let directory = matches!(node, Node::Directory(_));
        reply.attr(&Duration::ZERO, &self.attr(ino.0, directory, size, who));
    }

    fn access(&self, request: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        let visible = match self.node(ino) {
            _ if ino == INodeNo::ROOT => Ok(()),
            Some(node) => self.visible(Who::of(request), &node),
            None => Err(Errno::ENOENT),
        };
        match visible {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn open(&self, request: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let who = Who::of(request);
        let Some(Node::File(directory, kind)) = self.node(ino) else {
            return reply.error(Errno::EISDIR);
        };
        match self.content(who, &directory, &kind) {
            Ok((bytes, lease)) => {
                let fh = self.handle();
                let lease = lease.map(|lease_id| (who, directory, lease_id));
                lock(&self.files).insert(fh, OpenFile { bytes, lease });
                reply.opened(
                    FileHandle(fh),
                    FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NOFLUSH,
                );
            }
            Err(error) => reply.error(error),
        }
    }

    fn read(
        &self,
        _request: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let files = lock(&self.files);
        let Some(file) = files.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(file.bytes.len());
        let end = start.saturating_add(size as usize).min(file.bytes.len());
        reply.data(&file.bytes[start..end]);
    }

    fn flush(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _request: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let file = lock(&self.files).remove(&fh.0);
        if let Some(OpenFile {
            lease: Some((who, directory, lease_id)),
            ..
        }) = file
        {
            self.leases.release(who, &directory, &lease_id);
        }
        reply.ok();
    }

    fn opendir(&self, request: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let who = Who::of(request);
        let Some(Node::Directory(directory)) = self.node(ino) else {
            return reply.error(Errno::ENOTDIR);
        };
        match self.listing(who, &directory) {
            Ok(entries) => {
                let fh = self.handle();
                lock(&self.directories).insert(fh, entries);
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(error) => reply.error(error),
        }
    }

    fn readdir(
        &self,
        _request: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let directories = lock(&self.directories);
        let Some(entries) = directories.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let dots = [
            (ino.0, FileType::Directory, ".".to_owned()),
            (ino.0, FileType::Directory, "..".to_owned()),
        ];
        for (index, (entry_ino, kind, name)) in dots
            .iter()
            .chain(entries.iter())
            .enumerate()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        {
            if reply.add(INodeNo(*entry_ino), index as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _request: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.directories).remove(&fh.0);
        reply.ok();
    }

    fn setattr(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _request: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _request: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _request: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _request: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _request: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _request: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _request: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_and_their_collisions() {
        let info = Info::Secret {
            read_path: "secret/data/app/db".into(),
            version: 2,
            fields: vec![
                "password".into(),
                "db.json".into(),
                "a/b".into(),
                "..".into(),
                "user".into(),
            ],
        };
        let names: Vec<String> = info.files("db").into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["password", "user", "db.json", "db.env"]);
        let credential = Info::Credential {
            read_path: "database/creds/app".into(),
        };
        let names: Vec<String> = credential
            .files("app")
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["username", "password", "lease.json", "app.env"]);
        assert!(Info::Folder.files("x").is_empty());
    }

    #[test]
    fn inodes_live_while_the_kernel_holds_them() {
        let mut inodes = Inodes::new();
        let node = Node::Directory("secret".into());
        let number = inodes.number(node.clone(), true);
        assert_eq!(inodes.number(node.clone(), true), number);
        inodes.forget(number, 1);
        assert!(inodes.nodes.contains_key(&number));
        inodes.forget(number, 1);
        assert!(!inodes.nodes.contains_key(&number));
        assert_ne!(inodes.number(node, false), INodeNo::ROOT.0);
        inodes.forget(INodeNo::ROOT.0, 10);
        assert!(inodes.nodes.contains_key(&INodeNo::ROOT.0));
    }

    proptest::proptest! {
        /// Any answer the core could give describes a node or is EIO, and the
        /// files it names are valid names of one directory level.
        #[test]
        fn any_description_gives_valid_files(
            kind in proptest::prop_oneof![
                proptest::strategy::Just("folder".to_owned()),
                proptest::strategy::Just("secret".to_owned()),
                proptest::strategy::Just("credential".to_owned()),
                proptest::strategy::Just("static".to_owned()),
                "[a-z]{0,8}",
            ],
            fields in proptest::collection::vec("\\PC{0,12}", 0..6),
            name in "[^/\u{0}]{1,20}",
        ) {
            let mut data = Map::new();
            data.insert("kind".into(), Value::from(kind));
            data.insert("read_path".into(), Value::from("secret/data/x"));
            data.insert("fields".into(), Value::from(fields));
            if let Ok(info) = Info::parse(&data) {
                for (file, _) in info.files(&name) {
                    proptest::prop_assert!(render::valid_file_name(&file), "{file:?}");
                }
            }
        }
    }
}
