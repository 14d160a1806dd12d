//! The local control socket: a Unix-domain stream socket, one JSON request per line and one
//! JSON answer per line, with a protocol version in every message. The socket file is created
//! with mode 0600, so only its owner (root) can program or read the dataplane.
//! Commands: read counters and SAs, install and remove SAs and policies, poll events (soft and
//! hard lifetime, acquire). Key material travels only over this socket and is never printed.

use ctlproto::line::LineServer;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

pub use ctlproto::{Command, PROTOCOL_VERSION, Request, Response, request};

/// The listening end, polled by the control thread (non-blocking); the socket and its
/// protocol are `ctlproto`'s.
pub struct ControlServer(LineServer);

impl ControlServer {
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        LineServer::bind(path, ctlproto::PROTOCOL).map(ControlServer)
    }

    /// Answers every client waiting now, each command through `handle`; returns how many
    /// connections were served.
    pub fn poll(&self, handle: &mut dyn FnMut(Command) -> Response) -> usize {
        self.0.poll(&mut |r: Request| handle(r.command))
    }
}

/// The listening socket, readable when a client connects: the control thread polls it together
/// with the workers' doorbell.
impl AsFd for ControlServer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The dataplane's own commands and answers over the shared socket (whose version checks,
    /// batches and refusals `ctlproto::line` tests).
    #[test]
    fn stats_over_the_socket() {
        let dir = std::env::temp_dir().join(format!("dpctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl.sock");
        let server = ControlServer::bind(&path).unwrap();
        let p2 = path.clone();
        let client = std::thread::spawn(move || request(&p2, Command::Stats));
        let snap = crate::counters::Snapshot::default();
        let mut asked = None;
        for _ in 0..200 {
            server.poll(&mut |c| {
                asked = Some(c);
                Response { version: PROTOCOL_VERSION, stats: Some(snap.clone()), ..Response::default() }
            });
            if client.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(client.join().unwrap().unwrap().stats, Some(snap));
        assert_eq!(asked, Some(Command::Stats));
        drop(server);
        assert!(!path.exists());
    }
}
