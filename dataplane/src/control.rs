//! The local control socket: a Unix-domain stream socket, one JSON request per line and one
//! JSON answer per line, with a protocol version in every message. The socket file is created
//! with mode 0600, so only its owner (root) can program or read the dataplane.
//! Commands: read counters and SAs, install and remove SAs and policies, poll events (soft and
//! hard lifetime, acquire). Key material travels only over this socket and is never printed.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use ctlproto::{Command, PROTOCOL_VERSION, Request, Response, request};

/// The listening end, polled by the control thread (non-blocking).
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        // A stale socket from a previous run would make bind fail.
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(ControlServer { listener, path: path.to_path_buf() })
    }

    /// Answers every client waiting now, each command through `handle`.
    pub fn poll(&self, handle: &mut dyn FnMut(Command) -> Response) {
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = serve(stream, handle);
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

use ctlproto::MAX_BATCH;

fn serve(stream: UnixStream, handle: &mut dyn FnMut(Command) -> Response) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    // Buffered: serde_json writes token by token, which would be a system call each.
    let mut w = std::io::BufWriter::new(stream);
    for _ in 0..MAX_BATCH {
        let mut line = String::new();
        if (&mut reader).take(64 * 1024).read_line(&mut line)? == 0 {
            break;
        }
        let resp = match serde_json::from_str::<Request>(&line) {
            Ok(r) if r.version != PROTOCOL_VERSION => Response {
                version: PROTOCOL_VERSION,
                error: Some(format!(
                    "protocol version {} not supported (this dataplane speaks {PROTOCOL_VERSION})",
                    r.version
                )),
                ..Response::default()
            },
            Ok(r) => handle(r.command),
            Err(e) => Response { version: PROTOCOL_VERSION, error: Some(request_error(&e)), ..Response::default() },
        };
        serde_json::to_writer(&mut w, &resp)?;
        w.write_all(b"\n")?;
        // One write per batch of requests that arrived together.
        if reader.buffer().is_empty() {
            w.flush()?;
        }
    }
    w.flush()
}

/// Why a request was refused, without echoing the values it carried: a malformed key must not
/// end up in an error message (or a log).
fn request_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let safe =
        msg.starts_with("unknown field") || msg.starts_with("missing field") || msg.starts_with("unknown variant");
    if safe {
        format!("bad request: {msg}")
    } else {
        format!("bad request: malformed {:?} input at line {} column {}", e.classify(), e.line(), e.column())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_over_the_socket_and_version_checked() {
        let dir = std::env::temp_dir().join(format!("dpctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl.sock");
        let server = ControlServer::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let p2 = path.clone();
        let client = std::thread::spawn(move || request(&p2, Command::Stats));
        let snap = crate::counters::Snapshot { drops: vec![], sas: vec![], cores: vec![] };
        for _ in 0..200 {
            server.poll(&mut |_| Response {
                version: PROTOCOL_VERSION,
                stats: Some(snap.clone()),
                ..Response::default()
            });
            if client.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let r = client.join().unwrap().unwrap();
        assert_eq!(r.stats, Some(snap.clone()));

        // A request of another protocol version gets an error, not a guess.
        let p3 = path.clone();
        let bad = std::thread::spawn(move || {
            let mut s = UnixStream::connect(&p3).unwrap();
            s.write_all(b"{\"version\":99,\"command\":\"stats\"}\n").unwrap();
            let mut a = String::new();
            BufReader::new(s).read_line(&mut a).unwrap();
            a
        });
        for _ in 0..200 {
            server.poll(&mut |_| Response {
                version: PROTOCOL_VERSION,
                stats: Some(snap.clone()),
                ..Response::default()
            });
            if bad.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(bad.join().unwrap().contains("not supported"));
        drop(server);
        assert!(!path.exists());
    }
}
