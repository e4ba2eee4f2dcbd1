//! Who is at the other end of a unix socket, as the kernel recorded it when the peer
//! connected (`SO_PEERCRED`): user, group and process. Taken from the socket, not from
//! `/proc/PID`, so a peer cannot exit and have its PID reused to be judged as someone else.
//!
//! Under the packaged unit's `PrivateUsers=yes` the service sees root and its own user as
//! themselves and every other user as 65534: only those two can be told apart, which is
//! what the control socket's rule (`control::change_authority`) relies on.

use std::io;

/// The credentials of a connected peer, as this process's user namespace maps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// The overflow id the kernel shows for a user or group the namespace does not map.
pub const UNMAPPED: u32 = 65534;

impl Peer {
    pub fn of(stream: &tokio::net::UnixStream) -> io::Result<Peer> {
        let cred = stream.peer_cred()?;
        Ok(Peer {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        })
    }

    /// `uid 1000 (pid 4242)`, for logs and refusals.
    pub fn describe(&self) -> String {
        let mut notes = Vec::new();
        if let Some(pid) = self.pid {
            notes.push(format!("pid {pid}"));
        }
        if self.uid == UNMAPPED {
            notes.push("nobody, or a user the service's user namespace does not map".into());
        }
        if notes.is_empty() {
            format!("uid {}", self.uid)
        } else {
            format!("uid {} ({})", self.uid, notes.join("; "))
        }
    }
}

/// This process's effective user id: the service's user, when the service calls it.
pub fn own_uid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_pair_reports_this_process() {
        let (a, _b) = tokio::net::UnixStream::pair().expect("socketpair");
        let peer = Peer::of(&a).expect("peer credentials");
        assert_eq!(peer.uid, own_uid());
        // SAFETY: a getter without arguments.
        assert_eq!(peer.gid, unsafe { libc::getegid() });
        assert_eq!(peer.pid, Some(std::process::id() as i32));
    }

    #[test]
    fn an_unmapped_user_is_said_to_be_one() {
        let p = |uid| Peer {
            uid,
            gid: uid,
            pid: Some(9),
        };
        assert_eq!(p(1000).describe(), "uid 1000 (pid 9)");
        assert!(p(UNMAPPED).describe().contains("does not map"));
    }
}
