//! Where a request runs: on this node or forwarded to the leader (writes,
//! reads that spend a token use or issue a lease), and what a FUSE caller is
//! described with before it may be forwarded.

use coffer_protocols::{
    ErrorCode, LocalPeer, Operation, Request, Response, ResponseBody, Transport,
};

use super::{Core, sys};
use crate::tokens::TokenEntry;

/// Where a request runs.
pub(super) enum Placement {
    /// On the leader (this node is a standby).
    Leader,
    /// Here, with the request's token entry if it was already looked up.
    Here(Option<Box<TokenEntry>>),
}

impl Core {
    /// Where `request` runs: on the leader for writes and for reads with a
    /// limited-use token (its use count is a write); here otherwise, and always
    /// for the endpoints about this node itself. A standby looks the token up to
    /// decide, and hands what it found on, so a read looks it up once.
    pub(super) fn placement(&self, request: &Request) -> Placement {
        if request.forwarded
            || sys::Endpoint::parse(&request.path).is_some_and(sys::Endpoint::on_this_node)
            || !self.replica.is_running()
            || self.replica.is_leader()
        {
            return Placement::Here(None);
        }
        // Wrapping a response makes a token: a write, whatever the request.
        if request.wrap_ttl.is_some() {
            return Placement::Leader;
        }
        match request.operation {
            Operation::Write | Operation::Delete | Operation::Patch => Placement::Leader,
            // Reading dynamic credentials creates a user and a lease: the
            // leader does it (it owns leases), as in Vault.
            Operation::Read if self.issues_leases(&request.path) => Placement::Leader,
            Operation::Read | Operation::List
                if sys::Endpoint::parse(&request.path)
                    .is_some_and(sys::Endpoint::on_the_leader) =>
            {
                Placement::Leader
            }
            Operation::Read | Operation::List => {
                let entry = (|| {
                    let token = request.token.as_ref()?;
                    self.unsealed().ok()?.tokens.lookup(token.expose()).ok()?
                })();
                match entry {
                    Some(entry) if entry.num_uses > 0 => Placement::Leader,
                    entry => Placement::Here(entry.map(Box::new)),
                }
            }
        }
    }

    /// Adds to a FUSE caller what the `auth/local` roles bind beyond uid and
    /// gid (supplementary groups, systemd unit) and, when an audit device will
    /// record it, its executable: read from `/proc` on the node the caller is
    /// on, before the request may be forwarded, and only when needed (each is
    /// a few system calls on every FUSE open). The caller is blocked in its
    /// system call meanwhile, so its pid is still its own. Socket callers come
    /// described already, read once when they connected; a pid of 0 is the
    /// filesystem's own work on behalf of a caller it described itself.
    pub(super) fn describe_peer(&self, transport: Transport, peer: &mut LocalPeer) {
        if transport != Transport::Fuse || peer.pid == 0 {
            return;
        }
        let Ok(unsealed) = self.unsealed() else {
            return;
        };
        if peer.executable.is_none() && !unsealed.audit.devices().is_empty() {
            peer.executable = LocalPeer::read_executable(peer.pid);
        }
        let (groups, units) = unsealed.local_roles.needs();
        if groups && peer.groups.is_empty() {
            peer.groups = coffer_protocols::peer::supplementary_groups(peer.pid);
        }
        if units && peer.unit.is_none() {
            peer.unit = coffer_protocols::peer::systemd_unit(peer.pid);
        }
    }

    /// Whether a read of `path` goes to a mount whose reads issue leases.
    pub(super) fn issues_leases(&self, path: &str) -> bool {
        self.unsealed().is_ok_and(|unsealed| {
            unsealed.mounts.resolve(path).is_some_and(|(mount, rest)| {
                unsealed
                    .engines
                    .get(&mount.kind)
                    .is_some_and(|engine| engine.issues_leases(&rest))
            })
        })
    }

    /// Runs `request` on the leader (or tells the client where the leader is).
    pub(super) async fn forward(&self, request: &Request) -> Response {
        let route = Some("forwarded".to_owned());
        if request.no_forward {
            return match self.replica.leader() {
                Some((_, leader)) if !leader.api_addr.is_empty() => Response::new(
                    route,
                    ResponseBody::Redirect {
                        location: format!(
                            "{}/v1/{}",
                            leader.api_addr.trim_end_matches('/'),
                            request.path
                        ),
                    },
                ),
                _ => Response::error(ErrorCode::Unavailable, "there is no leader to redirect to"),
            };
        }
        let mut forwarded = request.clone();
        forwarded.forwarded = true;
        match self.replica.forward_request(&forwarded).await {
            Ok(Some(response)) => response,
            // This node leads now: run the request here.
            Ok(None) => self.run(&forwarded, None).await,
            Err(error) => Response::error(ErrorCode::Unavailable, error.to_string()),
        }
    }
}
