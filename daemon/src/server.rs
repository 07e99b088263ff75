//! `coffer server`: from configuration to serving listeners, the dev server's
//! bootstrap, signals, and a clean shutdown (drain in-flight requests, then close
//! storage).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use coffer_protocols::listener::{self, Listener, Protocol, Socket};
use coffer_protocols::{Handler, Operation, Request, ResponseBody, Transport};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::config::{self, Config};
use crate::core::{Core, Settings};
use crate::raft::cluster::{self, Cluster};
use crate::service;

/// Prints a line to stdout, ignoring failures: a server must not stop because
/// whoever started it closed its stdout.
macro_rules! say {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($argument:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($argument)*);
    }};
}

/// How often expired tokens are revoked.
const TIDY_INTERVAL: Duration = Duration::from_secs(60);
/// How often a node with `retry_join` and no cluster asks the leaders again.
const RETRY_JOIN_INTERVAL: Duration = Duration::from_secs(2);

/// What `coffer server` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config: Option<PathBuf>,
    pub dev: bool,
    pub dev_root_token: Option<String>,
    pub dev_listen: Option<String>,
    pub dev_fuse: Option<PathBuf>,
    pub dev_unix: Option<PathBuf>,
    pub dev_grpc_listen: Option<String>,
    pub dev_unsafe_allow_api_audit_creation: bool,
    pub data_dir: Option<PathBuf>,
}

/// The dev server's configuration: one plain-HTTP listener on loopback.
fn dev_config(options: &Options, data_dir: PathBuf) -> anyhow::Result<Config> {
    let listen = options.dev_listen.as_deref().unwrap_or("127.0.0.1:8200");
    let address: SocketAddr = listen
        .parse()
        .with_context(|| format!("--dev-listen {listen:?} is not a host:port"))?;
    Ok(Config {
        storage: config::Storage {
            path: data_dir,
            node_id: "dev".into(),
            retry_join: Vec::new(),
        },
        listeners: vec![config::Listener::plain(address)],
        unix_listeners: options
            .dev_unix
            .iter()
            .map(|path| {
                config::UnixListener::at(std::path::absolute(path).unwrap_or_else(|_| path.clone()))
            })
            .collect(),
        grpc_listeners: match &options.dev_grpc_listen {
            Some(listen) => vec![config::Listener::plain(listen.parse().with_context(
                || format!("--dev-grpc-listen {listen:?} is not a host:port"),
            )?)],
            None => Vec::new(),
        },
        api_addr: None,
        cluster_addr: None,
        cluster_name: None,
        default_lease_ttl: config::DEFAULT_LEASE_TTL,
        max_lease_ttl: config::DEFAULT_LEASE_TTL,
        log_level: None,
        log_format: None,
        disable_mlock: true,
        unsafe_allow_api_audit_creation: options.dev_unsafe_allow_api_audit_creation,
        telemetry: config::Telemetry::default(),
        audit: Vec::new(),
        fuse: options.dev_fuse.as_ref().map(|path| {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            config::Fuse::at(absolute)
        }),
        seals: Vec::new(),
    })
}

/// Raises the soft limit on open files to the hard one: each listener holds up
/// to 4,096 connections, more than a service's usual soft limit of 1,024.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(%error, soft, "cannot raise the limit on open files");
            }
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot read the limit on open files"),
    }
}

/// Creates the data directory readable by this user only.
fn prepare_data_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("cannot create data directory {}", path.display()))?;
    }
    let metadata = std::fs::metadata(path)
        .with_context(|| format!("cannot read data directory {}", path.display()))?;
    if !metadata.is_dir() {
        bail!("data directory {} is not a directory", path.display());
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "data directory is accessible to other users");
    }
    Ok(())
}

/// Loads the configuration the options describe; the dev server's temporary data
/// directory (if any) lives as long as the returned guard.
pub fn load(options: &Options) -> anyhow::Result<(Config, Option<tempfile::TempDir>)> {
    if options.dev {
        if options.config.is_some() {
            bail!("--dev and --config cannot be used together");
        }
        return match &options.data_dir {
            Some(path) => Ok((dev_config(options, path.clone())?, None)),
            None => {
                let temporary = tempfile::Builder::new()
                    .prefix("coffer-dev-")
                    .tempdir()
                    .context("cannot create a temporary data directory")?;
                Ok((
                    dev_config(options, temporary.path().to_owned())?,
                    Some(temporary),
                ))
            }
        };
    }
    let Some(path) = &options.config else {
        bail!("give --config FILE, or --dev for a development server");
    };
    let mut config = Config::load(path)?;
    if let Some(data_dir) = &options.data_dir {
        config.storage.path = data_dir.clone();
    }
    Ok((config, None))
}

/// Where the cluster listener binds and what address it advertises. The dev server
/// has none: it is a one-node cluster that nobody joins.
fn cluster_listener(
    options: &Options,
    config: &Config,
) -> anyhow::Result<Option<(std::net::TcpListener, String)>> {
    if options.dev {
        return Ok(None);
    }
    let first = config.listeners.first();
    let bind = match (
        first.and_then(|tcp| tcp.cluster_address),
        &config.cluster_addr,
    ) {
        (Some(address), _) => address,
        (None, Some(advertised)) => crate::raft::network::socket_address(advertised)
            .with_context(|| format!("cluster_addr {advertised:?} is not a host:port"))?,
        (None, None) => {
            let mut address = first
                .context("cluster_addr is required when no listener \"tcp\" is configured")?
                .address;
            if address.port() != 0 {
                address.set_port(address.port() + 1);
            }
            address
        }
    };
    let listener = std::net::TcpListener::bind(bind)
        .with_context(|| format!("cannot listen on cluster address {bind}"))?;
    listener.set_nonblocking(true)?;
    let advertised = match &config.cluster_addr {
        Some(advertised) if bind.port() != 0 => advertised.clone(),
        _ => format!("https://{}", listener.local_addr()?),
    };
    Ok(Some((listener, advertised)))
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(options: Options, config: Config) -> anyhow::Result<()> {
    crate::memory::forbid_dumps();
    raise_open_files_limit();
    if config.disable_mlock {
        tracing::info!("memory is not locked (disable_mlock): keys may reach swap");
    } else {
        crate::memory::lock_all()?;
    }
    prepare_data_dir(&config.storage.path)?;
    if let Some(fuse) = &config.fuse {
        // Refuse a bad mount point now, not after the operator has unsealed.
        if coffer_fuse::mount_point::prepare(&fuse.mount_point)? {
            tracing::warn!(
                mount_point = %fuse.mount_point.display(),
                "detached a coffer mount left by an earlier run"
            );
        }
    }

    let mut listeners = Vec::new();
    let mut addresses = Vec::new();
    let mut grpc_addresses = Vec::new();
    let tcp_listeners = config
        .listeners
        .iter()
        .map(|listener| (listener, Protocol::Http))
        .chain(
            config
                .grpc_listeners
                .iter()
                .map(|listener| (listener, Protocol::Grpc)),
        );
    for (listener, protocol) in tcp_listeners {
        let tcp = TcpListener::bind(listener.address)
            .await
            .with_context(|| format!("cannot listen on {}", listener.address))?;
        let tls = if listener.tls_disable {
            None
        } else {
            match (&listener.tls_cert_file, &listener.tls_key_file) {
                (Some(cert), Some(key)) => Some(listener::tls_acceptor(cert, key, protocol)?),
                _ => bail!(
                    "listener {}: TLS needs tls_cert_file and tls_key_file",
                    listener.address
                ),
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shown = format!("{scheme}://{}", tcp.local_addr()?);
        match protocol {
            Protocol::Grpc => grpc_addresses.push(shown),
            _ => addresses.push(shown),
        }
        listeners.push(Listener {
            socket: Socket::Tcp(tcp),
            protocol,
            tls,
            timeouts: listener::Timeouts {
                read_header: Duration::from_secs(listener.http_read_header_timeout),
                read_body: Duration::from_secs(listener.http_read_timeout),
                idle: Duration::from_secs(listener.http_idle_timeout),
            },
        });
    }

    let mut sockets = Vec::new();
    for unix in &config.unix_listeners {
        let bound =
            coffer_protocols::unix_socket::bind(&coffer_protocols::unix_socket::SocketFile {
                path: unix.address.clone(),
                mode: unix.mode,
                uid: unix.socket_user,
                gid: unix.socket_group,
            })?;
        let (listener, guard) = bound;
        sockets.push(guard);
        listeners.push(Listener {
            socket: Socket::Unix(listener),
            protocol: Protocol::Both,
            tls: None,
            timeouts: listener::Timeouts {
                read_header: Duration::from_secs(unix.http_read_header_timeout),
                read_body: Duration::from_secs(unix.http_read_timeout),
                idle: Duration::from_secs(unix.http_idle_timeout),
            },
        });
    }

    let cluster_listener = cluster_listener(&options, &config)?;
    let api_addr = config
        .api_addr
        .clone()
        .or_else(|| addresses.first().cloned())
        .unwrap_or_default();
    let cluster_settings = cluster::Settings {
        name: config.storage.node_id.clone(),
        api_addr: api_addr.clone(),
        cluster_addr: cluster_listener
            .as_ref()
            .map(|(_, advertised)| advertised.clone())
            .unwrap_or_default(),
    };
    let cluster = Cluster::open(
        &config.storage.path,
        cluster_settings,
        cluster_listener.map(|(listener, _)| listener),
    )?;
    let settings = Settings {
        cluster_name: config.cluster_name.clone(),
        api_addr: Some(api_addr),
        cluster_addr: Some(cluster.settings().cluster_addr.clone()).filter(|addr| !addr.is_empty()),
        default_lease_ttl: config.default_lease_ttl,
        max_lease_ttl: config.max_lease_ttl,
        unauthenticated_metrics_access: config.telemetry.unauthenticated_metrics_access,
        audit: config.audit.clone(),
        api_audit_creation: config.unsafe_allow_api_audit_creation,
        min_rotation_operations: std::env::var("COFFER_MIN_ROTATION_OPERATIONS")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(crate::core::MIN_ROTATION_OPERATIONS),
        seal: config.active_seal().map(crate::autoseal::from_config),
        disabled_seal: config
            .seals
            .iter()
            .find(|seal| seal.disabled)
            .map(crate::autoseal::from_config),
        ..Settings::default()
    };
    let core = Arc::new(Core::new(cluster.clone(), settings)?);
    let forwarder: std::sync::Weak<dyn cluster::ForwardHandler> = Arc::downgrade(&core) as _;
    cluster.set_forwarder(forwarder);

    say!("==> coffer server started! Log data will stream in below:");
    say!();
    for address in &addresses {
        say!("             Api Address: {address}");
    }
    for address in &grpc_addresses {
        say!("            gRPC Address: {address}");
    }
    for unix in &config.unix_listeners {
        say!(
            "             Unix Socket: unix://{}",
            unix.address.display()
        );
    }
    say!(
        "                 Storage: raft (path: {})",
        config.storage.path.display()
    );
    if !cluster.settings().cluster_addr.is_empty() {
        say!(
            "         Cluster Address: {}",
            cluster.settings().cluster_addr
        );
    }
    say!("                 Node ID: {}", config.storage.node_id);
    say!(
        "                 Version: coffer v{}",
        crate::build_info::version()
    );
    say!();
    if options.dev {
        bootstrap_dev(&core, &options).await?;
    } else {
        let status = core.status();
        if !status.initialized {
            if config.storage.retry_join.is_empty() {
                say!("The server is not initialized: run `coffer operator init`.");
            } else {
                say!(
                    "The server is not initialized: it joins a cluster through retry_join (or run `coffer operator init`)."
                );
            }
        } else if status.recovery_seal {
            say!(
                "The server is sealed: its {} seal unseals it (during a seal migration: `coffer operator unseal -migrate`).",
                status.seal_type
            );
        } else {
            say!("The server is sealed: run `coffer operator unseal`.");
        }
    }

    let (shutdown_sender, shutdown) = watch::channel(false);
    let mut servers = Vec::new();
    for listener in listeners {
        let core = core.clone();
        let mut shutdown = shutdown.clone();
        servers.push(tokio::spawn(async move {
            let stop = async move {
                let _ = shutdown.wait_for(|stopping| *stopping).await;
            };
            listener::serve(listener, core, stop).await
        }));
    }
    let background = tokio::spawn(core.clone().run_background(TIDY_INTERVAL));
    let filesystem = Arc::new(std::sync::Mutex::new(None));
    let (mount_state, mount) = watch::channel(match config.fuse {
        Some(_) => service::Mount::Waiting,
        None => service::Mount::Unconfigured,
    });
    let mounter = config.fuse.clone().map(|fuse| {
        tokio::spawn(mount_when_unsealed(
            core.clone(),
            fuse,
            filesystem.clone(),
            mount_state,
        ))
    });
    let watcher = tokio::spawn(
        service::Watch {
            core: core.clone(),
            cluster: cluster.clone(),
            mount,
        }
        .run(),
    );
    let joiner = (!config.storage.retry_join.is_empty())
        .then(|| tokio::spawn(retry_join(core.clone(), config.storage.retry_join.clone())));
    let auto_unsealer = tokio::spawn(core.clone().run_auto_unseal());

    wait_for_shutdown_signal(&core).await?;
    service::stopping();
    watcher.abort();
    tracing::info!("shutting down: draining in-flight requests");
    let _ = shutdown_sender.send(true);
    for server in servers {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "listener failed"),
            Err(error) => tracing::error!(%error, "listener task failed"),
        }
    }
    if let Some(mounter) = mounter {
        mounter.abort();
        let _ = mounter.await;
    }
    let mounted = filesystem
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some(mounted) = mounted {
        let unmounted = tokio::task::spawn_blocking(move || mounted.unmount()).await;
        match unmounted {
            Ok(Ok(())) => tracing::info!("unmounted the FUSE filesystem"),
            Ok(Err(error)) => tracing::error!(%error, "unmounting the FUSE filesystem failed"),
            Err(error) => tracing::error!(%error, "unmounting the FUSE filesystem failed"),
        }
    }
    // The socket files go once nothing is served on them.
    drop(sockets);
    background.abort();
    let _ = background.await;
    if let Some(joiner) = joiner {
        joiner.abort();
        let _ = joiner.await;
    }
    auto_unsealer.abort();
    let _ = auto_unsealer.await;
    // Sealing stops Raft; the last references then close RocksDB.
    core.seal().await;
    cluster.stop().await;
    drop(core);
    drop(cluster);
    tracing::info!("storage closed; goodbye");
    Ok(())
}

/// How often a server with a `fuse` block checks whether it has been unsealed.
const MOUNT_POLL: Duration = Duration::from_millis(200);

/// Mounts the `/secrets` filesystem once the server is first unsealed; it stays
/// mounted until shutdown (opens fail with EAGAIN while sealed again). `state`
/// says when its root answers, or why it failed.
async fn mount_when_unsealed(
    core: Arc<Core>,
    fuse: config::Fuse,
    slot: Arc<std::sync::Mutex<Option<coffer_fuse::Mounted>>>,
    state: watch::Sender<service::Mount>,
) {
    let mut poll = tokio::time::interval(MOUNT_POLL);
    while core.is_sealed() {
        poll.tick().await;
    }
    let options = coffer_fuse::Options {
        mount_point: fuse.mount_point.clone(),
        threads: fuse.threads,
        revoke_unused_leases: fuse.revoke_unused_leases,
    };
    let runtime = tokio::runtime::Handle::current();
    let mounted = tokio::task::spawn_blocking(move || {
        // Whatever was mounted meanwhile (nothing, normally) is detached first.
        coffer_fuse::mount_point::prepare(&options.mount_point)
            .map_err(|error| error.to_string())?;
        let mounted =
            coffer_fuse::mount(core, runtime, &options).map_err(|error| error.to_string())?;
        // The root answers through the new mount (a `stat` served by it).
        match coffer_fuse::mount_point::answers(&options.mount_point) {
            Ok(()) => Ok(mounted),
            Err(error) => Err(error.to_string()),
        }
    })
    .await
    .unwrap_or_else(|error| Err(error.to_string()));
    match mounted {
        Ok(mounted) => {
            say!("FUSE filesystem mounted at {}", fuse.mount_point.display());
            tracing::info!(mount_point = %fuse.mount_point.display(), "mounted the FUSE filesystem");
            *slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(mounted);
            state.send_replace(service::Mount::Answering);
        }
        Err(error) => {
            tracing::error!(
                mount_point = %fuse.mount_point.display(),
                %error,
                "cannot mount the FUSE filesystem"
            );
            state.send_replace(service::Mount::Failed(error));
        }
    }
}

/// `retry_join`: while this node belongs to no cluster, asks each configured
/// leader in turn for a join challenge, every [`RETRY_JOIN_INTERVAL`]. Once one
/// answers, the node waits sealed for the cluster's key shares; if the join falls
/// through (the challenge expired), it asks again.
async fn retry_join(core: Arc<Core>, leaders: Vec<config::RetryJoin>) {
    let mut interval = tokio::time::interval(RETRY_JOIN_INTERVAL);
    let mut last_errors = Vec::new();
    loop {
        interval.tick().await;
        if !core.needs_join() {
            continue;
        }
        let mut errors = Vec::new();
        for leader in &leaders {
            let ca_pem = match &leader.leader_ca_cert_file {
                Some(path) => match std::fs::read(path) {
                    Ok(pem) => Some(pem),
                    Err(error) => {
                        errors.push(format!("{}: {error}", path.display()));
                        continue;
                    }
                },
                None => None,
            };
            match core
                .join(&leader.leader_api_addr, ca_pem.as_deref(), false)
                .await
            {
                Ok(()) if core.settings().seal.is_some() => {
                    say!(
                        "Joining the cluster through {}: it unseals itself with its seal.",
                        leader.leader_api_addr
                    );
                    break;
                }
                Ok(()) => {
                    say!(
                        "Joining the cluster through {}: unseal this node with the cluster's key shares (coffer operator unseal).",
                        leader.leader_api_addr
                    );
                    break;
                }
                Err(error) => errors.push(error.messages.join("; ")),
            }
        }
        // Say why only when the reasons change, not every two seconds.
        if !errors.is_empty() && core.needs_join() && errors != last_errors {
            for error in &errors {
                tracing::warn!(%error, "retry_join: cannot join yet");
            }
        }
        last_errors = errors;
    }
}

/// Waits for SIGTERM or SIGINT; SIGHUP meanwhile reopens the audit files (for
/// logrotate).
async fn wait_for_shutdown_signal(core: &Core) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    loop {
        tokio::select! {
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
            _ = hangup.recv() => {
                tracing::info!("SIGHUP received: reopening audit devices");
                core.reopen_audit_devices();
            }
        }
    }
}

/// Initializes, unseals and mounts `secret/` (KV v2) on a new dev data directory,
/// and prints the unseal key and root token as Vault's dev server does.
async fn bootstrap_dev(core: &Core, options: &Options) -> anyhow::Result<()> {
    if core.status().initialized {
        say!("The dev data directory is already initialized; it starts sealed.");
        say!("Unseal it with the key printed when it was created: coffer operator unseal");
        return Ok(());
    }
    let output = core
        .initialize(1, 1, options.dev_root_token.clone())
        .await
        .map_err(|error| anyhow::anyhow!("dev init failed: {}", error.messages.join("; ")))?;
    let Some(share) = output.shares.first().cloned() else {
        bail!("dev init returned no key share");
    };
    let unseal_key = base64::engine::general_purpose::STANDARD.encode(share.as_slice());
    core.submit_unseal_share(share, false)
        .await
        .map_err(|error| anyhow::anyhow!("dev unseal failed: {}", error.messages.join("; ")))?;
    let mount = Request::new(Operation::Write, "sys/mounts/secret", Transport::Http)
        .with_token(&output.root_token)
        .with_data(
            json!({"type": "kv", "options": {"version": "2"}, "description": "key/value secret storage"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
    let response = core.handle(mount).await;
    if let ResponseBody::Error { messages, .. } = response.body {
        bail!("dev mount of secret/ failed: {}", messages.join("; "));
    }
    say!("WARNING! dev mode is enabled! In this mode, coffer runs with one unseal key,");
    say!("prints its root token, and keeps data in a throwaway directory unless");
    say!("--data-dir is given. Do not run a dev server in production.");
    say!();
    say!("Unseal Key: {unseal_key}");
    say!("Root Token: {}", output.root_token.as_str());
    say!();
    say!("Development mode should NOT be used in production installations!");
    Ok(())
}
