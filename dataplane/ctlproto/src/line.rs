//! JSON lines over a Unix-domain stream socket, as both control sockets speak them (the
//! dataplane's and the IKE daemon's operator socket): one request object per line, one
//! answer per line, a protocol version in every message. The socket file is mode 0600, so
//! only its owner (root) can use it. The server is polled, non-blocking, by a control loop,
//! which sleeps in [`wait_readable`] on the listener (the server is `AsFd`) and its other
//! descriptors until a client connects.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// A request that says which protocol version it speaks.
pub trait Versioned {
    fn version(&self) -> u32;
}

/// An answer that can carry an error instead of a result.
pub trait Answer: Sized {
    /// The answer to a request that was not understood or not of our version.
    fn refused(version: u32, why: String) -> Self;
    fn error(&self) -> Option<&str>;
}

/// What a server speaks: its version, who it is (for error messages), and how many requests
/// one connection may carry before it is closed.
#[derive(Clone, Copy, Debug)]
pub struct Protocol {
    pub version: u32,
    pub speaker: &'static str,
    pub max_batch: usize,
}

/// Longest request line read: a longer one is refused, and the connection closed.
const MAX_LINE: usize = 64 * 1024;

/// How long one connection may keep the control loop waiting for its requests, and again
/// for taking its answers, beyond what the bytes it moved earn ([`CREDIT_PER_BYTE`]): a
/// client that trickles a byte at a time must not hold the loop (and with it SA
/// programming) for longer than about this.
const CLIENT_TIME: Duration = Duration::from_secs(1);

/// Waiting time each byte a client sends or takes earns it, up to [`CLIENT_TIME`] banked, so
/// that a long answer's pauses are not held against a steady reader (within
/// [`CONNECTION_WAIT`]: a 25 MB SA list, 200,000 SAs, needs a reader of some 8 MB/s or more).
const CREDIT_PER_BYTE: Duration = Duration::from_micros(1);

/// The most one connection may keep the loop waiting for it in all, both directions,
/// whatever its bytes earned: a client reading a long answer slowly, or asking for one again
/// and again in a batch, must not hold the loop (the IKE daemon's own requests give up after
/// 5 s). Answering is not counted: that is the work asked for, bounded by [`WORK_TIME`].
const CONNECTION_WAIT: Duration = Duration::from_secs(3);

/// How long after a connection was taken its requests are still carried out: the rest of a
/// batch is refused, so that a batch of costly requests (a thousand SA lists, say) cannot
/// hold the loop for minutes. A thousand SA installs take some 10 ms.
const WORK_TIME: Duration = Duration::from_secs(10);

/// Writes to a client go in pieces of at most this: a socket's send timeout restarts
/// whenever a blocking write makes progress (a Unix socket's each ~32 KiB), so one large
/// write could outlast it by far.
const WRITE_CHUNK: usize = 16 * 1024;

/// One direction of a client's stream, which may block for [`CLIENT_TIME`] plus what its
/// bytes earned, and for what is left of the connection's [`CONNECTION_WAIT`] (shared by
/// both directions). Time the server spends between reads or writes is not charged.
struct Budgeted {
    stream: UnixStream,
    left: Duration,
    connection_left: std::rc::Rc<std::cell::Cell<Duration>>,
}

impl Budgeted {
    fn charge(
        &mut self,
        set: fn(&UnixStream, Option<Duration>) -> std::io::Result<()>,
        io: impl FnOnce(&mut UnixStream) -> std::io::Result<usize>,
    ) -> std::io::Result<usize> {
        let wait = self.left.min(self.connection_left.get());
        if wait.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        set(&self.stream, Some(wait))?;
        let t = Instant::now();
        let r = io(&mut self.stream);
        let waited = t.elapsed();
        self.left = self.left.saturating_sub(waited);
        self.connection_left.set(self.connection_left.get().saturating_sub(waited));
        if let Ok(n) = r {
            let earned = CREDIT_PER_BYTE.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
            self.left = self.left.saturating_add(earned).min(CLIENT_TIME);
        }
        r
    }
}

/// Request lines of one connection, read into a buffer of fixed size that is wiped when the
/// connection is done: requests carry keys, and a `BufReader` would leave its buffer, a
/// growing `String` its outgrown copies, in freed memory.
struct LineReader {
    src: Budgeted,
    buf: Zeroizing<Vec<u8>>,
    /// The bytes read and not yet returned as lines.
    start: usize,
    end: usize,
}

impl LineReader {
    fn new(src: Budgeted) -> Self {
        LineReader { src, buf: Zeroizing::new(vec![0; MAX_LINE + 4096]), start: 0, end: 0 }
    }

    /// The next line, without its newline (the last may have none); None at the end of the
    /// stream. A line longer than [`MAX_LINE`] is an error.
    fn next_line(&mut self) -> std::io::Result<Option<&[u8]>> {
        let mut searched = self.start;
        loop {
            if let Some(n) = self.buf[searched..self.end].iter().position(|&b| b == b'\n') {
                let line = self.start..searched + n;
                if line.len() > MAX_LINE {
                    break;
                }
                self.start = searched + n + 1;
                return Ok(Some(&self.buf[line]));
            }
            if self.end - self.start > MAX_LINE {
                break;
            }
            if self.end == self.buf.len() {
                // Make room: the line so far to the front (the buffer holds more than a line).
                self.buf.copy_within(self.start..self.end, 0);
                (self.end, self.start) = (self.end - self.start, 0);
            }
            searched = self.end;
            let n = self.src.read(&mut self.buf[self.end..])?;
            if n == 0 {
                let line = self.start..self.end;
                self.start = self.end;
                return Ok((!line.is_empty()).then(|| &self.buf[line]));
            }
            self.end += n;
        }
        Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "request line too long"))
    }

    /// Whether everything read has been returned as lines (no more requests arrived with them).
    fn drained(&self) -> bool {
        self.start == self.end
    }
}

impl Read for Budgeted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.charge(UnixStream::set_read_timeout, |s| s.read(buf))
    }
}

impl Write for Budgeted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let chunk = &buf[..buf.len().min(WRITE_CHUNK)];
        self.charge(UnixStream::set_write_timeout, |s| s.write(chunk))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// The listening end, polled by a control loop (non-blocking). The socket file is removed
/// when it is dropped.
pub struct LineServer {
    listener: UnixListener,
    path: PathBuf,
    protocol: Protocol,
    /// [`WORK_TIME`], shorter in tests.
    work_time: Duration,
}

impl LineServer {
    pub fn bind(path: &Path, protocol: Protocol) -> std::io::Result<Self> {
        // A stale socket from a previous run would make bind fail.
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(LineServer { listener, path: path.to_path_buf(), protocol, work_time: WORK_TIME })
    }

    /// Answers every client waiting now, each request through `handle`. Returns how many
    /// connections were served.
    pub fn poll<Q, A>(&self, handle: &mut dyn FnMut(Q) -> A) -> usize
    where
        Q: DeserializeOwned + Versioned,
        A: Serialize + Answer,
    {
        let mut served = 0;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let _ = self.serve(stream, handle);
                    served += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return served,
                Err(_) => {
                    // Out of descriptors or memory, say: the client stays queued, and a loop
                    // that waits for the socket to be readable would wake at once, again and
                    // again. A short pause here keeps every such loop from spinning.
                    std::thread::sleep(Duration::from_millis(1));
                    return served;
                }
            }
        }
    }

    /// Up to `max_batch` requests of one connection, answered in order. The control loop must
    /// not wait on a client: one that keeps it waiting past [`CLIENT_TIME`] (plus what its
    /// bytes earned) in a direction, or [`CONNECTION_WAIT`] in all, is dropped, and requests
    /// read after [`WORK_TIME`] are refused, not carried out.
    fn serve<Q, A>(&self, stream: UnixStream, handle: &mut dyn FnMut(Q) -> A) -> std::io::Result<()>
    where
        Q: DeserializeOwned + Versioned,
        A: Serialize + Answer,
    {
        let p = self.protocol;
        let work_until = Instant::now() + self.work_time;
        stream.set_nonblocking(false)?;
        let connection_left = std::rc::Rc::new(std::cell::Cell::new(CONNECTION_WAIT));
        let mut reader = LineReader::new(Budgeted {
            stream: stream.try_clone()?,
            left: CLIENT_TIME,
            connection_left: connection_left.clone(),
        });
        // Buffered: serde_json writes token by token, which would be a system call each.
        let mut w = std::io::BufWriter::new(Budgeted { stream, left: CLIENT_TIME, connection_left });
        for _ in 0..p.max_batch {
            let line = match reader.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => break,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    let why = format!("bad request: longer than {MAX_LINE} bytes");
                    serde_json::to_writer(&mut w, &A::refused(p.version, why))?;
                    w.write_all(b"\n")?;
                    break;
                }
                Err(e) => return Err(e),
            };
            let answer = match serde_json::from_slice::<Q>(line) {
                Ok(r) if r.version() != p.version => A::refused(
                    p.version,
                    format!("protocol version {} not supported (this {} speaks {})", r.version(), p.speaker, p.version),
                ),
                Ok(_) if Instant::now() > work_until => A::refused(
                    p.version,
                    format!("not carried out: this connection's {:?} are up; send it again", self.work_time),
                ),
                Ok(r) => handle(r),
                Err(e) => A::refused(p.version, request_error(&e)),
            };
            serde_json::to_writer(&mut w, &answer)?;
            w.write_all(b"\n")?;
            // One write per batch of requests that arrived together.
            if reader.drained() {
                w.flush()?;
            }
        }
        w.flush()
    }
}

impl AsFd for LineServer {
    /// The listening socket, for a loop that waits on it among others ([`wait_readable`]).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

/// Sleeps until one of `fds` is readable (for a listening socket: a client is waiting) or
/// reports an error, or `timeout` passes, or a signal arrives; true for the first two. For
/// event loops that would otherwise wake on a short timer to look.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> bool {
    let mut set: Vec<libc::pollfd> =
        fds.iter().map(|f| libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    // ppoll, not poll: poll's timeout is in whole milliseconds.
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` holds `set.len()` valid pollfds and `ts` is a valid timespec, both for
    // the duration of the call; no signal mask is changed (null).
    let n = unsafe { libc::ppoll(set.as_mut_ptr(), set.len() as libc::nfds_t, &ts, std::ptr::null()) };
    // Any event counts, errors and hang-ups included: the caller's read then sees them (a
    // descriptor stuck in an error that counted as quiet would make its loop spin).
    n > 0 && set.iter().any(|p| p.revents != 0)
}

impl Drop for LineServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
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

/// Client side: sends `requests` on one connection, in order, and reads one answer each
/// (which may carry an error). Waits at most 5 s for an answer.
pub fn exchange<Q: Serialize, A: DeserializeOwned>(path: &Path, requests: &[Q]) -> Result<Vec<A>, String> {
    let mut s = UnixStream::connect(path).map_err(|e| format!("cannot connect to {}: {e}", path.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    // Requests carry keys: written into a buffer of its final size (measured first), so that
    // no outgrown copy is left behind, and wiped after.
    let mut size = Counted(0);
    for r in requests {
        serde_json::to_writer(&mut size, r).map_err(|e| e.to_string())?;
    }
    let mut text = Zeroizing::new(Vec::with_capacity(size.0 + requests.len()));
    for r in requests {
        serde_json::to_writer(&mut *text, r).map_err(|e| e.to_string())?;
        text.push(b'\n');
    }
    s.write_all(&text).map_err(|e| e.to_string())?;
    s.shutdown(std::net::Shutdown::Write).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(s);
    let mut out = Vec::with_capacity(requests.len());
    for _ in requests {
        let mut answer = String::new();
        reader.read_line(&mut answer).map_err(|e| e.to_string())?;
        out.push(serde_json::from_str(&answer).map_err(|e| format!("bad answer: {e}"))?);
    }
    Ok(out)
}

/// A writer that only counts what it is given.
struct Counted(usize);

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Client side: one request; its answer, or the error it carries.
pub fn ask<Q: Serialize, A: DeserializeOwned + Answer>(path: &Path, request: Q) -> Result<A, String> {
    let answer: A = exchange(path, &[request])?.pop().ok_or("no answer")?;
    match answer.error() {
        Some(e) => Err(e.to_string()),
        None => Ok(answer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize)]
    struct Q {
        version: u32,
        n: u32,
    }
    impl Versioned for Q {
        fn version(&self) -> u32 {
            self.version
        }
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct A {
        version: u32,
        error: Option<String>,
        n: u32,
    }
    impl Answer for A {
        fn refused(version: u32, why: String) -> Self {
            A { version, error: Some(why), n: 0 }
        }
        fn error(&self) -> Option<&str> {
            self.error.as_deref()
        }
    }

    /// A server of version 7, batches of 4, on a socket of its own.
    fn test_server(name: &str) -> (LineServer, PathBuf) {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl.sock");
        (LineServer::bind(&path, Protocol { version: 7, speaker: "test", max_batch: 4 }).unwrap(), path)
    }

    /// A client that sends `requests`, then takes the answers at a steady pace: up to `chunk`
    /// bytes every 100 ms, until the server closes the connection. Returns what it got.
    fn paced_client(path: PathBuf, requests: &str, chunk: usize) -> std::thread::JoinHandle<Vec<u8>> {
        let requests = requests.to_string();
        std::thread::spawn(move || {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(requests.as_bytes()).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let (mut got, mut buf) = (Vec::new(), vec![0u8; chunk]);
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let mut filled = 0;
                while filled < chunk {
                    match s.read(&mut buf[filled..]) {
                        Ok(0) | Err(_) => {
                            got.extend_from_slice(&buf[..filled]);
                            return got;
                        }
                        Ok(n) => filled += n,
                    }
                }
                got.extend_from_slice(&buf);
            }
        })
    }

    /// Polls `server` until `client` is done, then returns its result.
    fn serve_until<T: Send + 'static>(server: &LineServer, client: std::thread::JoinHandle<T>) -> T {
        for _ in 0..400 {
            server.poll(&mut |q: Q| A { version: 7, error: None, n: q.n * 2 });
            if client.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        client.join().expect("client thread")
    }

    #[test]
    fn batches_answered_in_order_versions_checked_and_values_not_echoed() {
        let (server, path) = test_server("ctlline");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

        let p = path.clone();
        let c = std::thread::spawn(move || {
            exchange::<Q, A>(&p, &[Q { version: 7, n: 1 }, Q { version: 7, n: 2 }, Q { version: 8, n: 3 }])
        });
        let got = serve_until(&server, c).unwrap();
        assert_eq!(got[0].n, 2);
        assert_eq!(got[1].n, 4);
        assert!(got[2].error.as_deref().unwrap().contains("version 8 not supported (this test speaks 7)"));

        // More requests than a batch: the rest go unanswered and the client is told so.
        let p = path.clone();
        let c =
            std::thread::spawn(move || exchange::<Q, A>(&p, &(0..6).map(|n| Q { version: 7, n }).collect::<Vec<_>>()));
        assert!(serve_until(&server, c).is_err());

        // A malformed request: the reason, without the bytes it carried.
        let p = path.clone();
        let c = std::thread::spawn(move || {
            let mut s = UnixStream::connect(&p).unwrap();
            s.write_all(b"{\"version\":7,\"n\":\"secret00112233\"}\n").unwrap();
            let mut a = String::new();
            BufReader::new(s).read_line(&mut a).unwrap();
            a
        });
        let a = serve_until(&server, c);
        assert!(a.contains("bad request") && !a.contains("secret"), "{a}");

        // A request longer than a line may be: refused, and the connection closed.
        let p = path.clone();
        let c = std::thread::spawn(move || {
            let mut s = UnixStream::connect(&p).unwrap();
            let long = format!("{{\"version\":7,\"n\":1}}{}\n{{\"version\":7,\"n\":2}}\n", " ".repeat(MAX_LINE));
            s.write_all(long.as_bytes()).unwrap();
            let mut answers = String::new();
            BufReader::new(s).read_to_string(&mut answers).unwrap();
            answers
        });
        let a = serve_until(&server, c);
        assert_eq!(a.lines().count(), 1, "{a}");
        assert!(a.contains("longer than 65536 bytes"), "{a}");

        // Lines split across reads and requests that come one by one are read whole.
        let p = path.clone();
        let c = std::thread::spawn(move || {
            let mut s = UnixStream::connect(&p).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut got = Vec::new();
            for n in [5u32, 6] {
                let text = format!("{{\"version\":7,\"n\":{n}}}\n");
                let (x, y) = text.as_bytes().split_at(7);
                s.write_all(x).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                s.write_all(y).unwrap();
                let mut a = String::new();
                r.read_line(&mut a).unwrap();
                got.push(serde_json::from_str::<A>(&a).unwrap().n);
            }
            got
        });
        assert_eq!(serve_until(&server, c), [10, 12]);

        let p = path.clone();
        let c = std::thread::spawn(move || ask::<Q, A>(&p, Q { version: 6, n: 1 }));
        assert!(serve_until(&server, c).unwrap_err().contains("not supported"));
        drop(server);
        assert!(!path.exists());
    }

    /// Waiting on the listener returns when a client connects, long before its timeout, and
    /// times out when none does; `poll` says how many connections it served.
    #[test]
    fn wait_wakes_on_a_connection() {
        let (server, path) = test_server("ctlwait");
        let t = std::time::Instant::now();
        assert!(!wait_readable(&[server.as_fd()], Duration::from_millis(30)), "nobody connected");
        assert!(t.elapsed() >= Duration::from_millis(25), "slept for its timeout: {:?}", t.elapsed());
        assert_eq!(server.poll(&mut |q: Q| A { version: 7, error: None, n: q.n }), 0);

        let p = path.clone();
        let c = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            ask::<Q, A>(&p, Q { version: 7, n: 21 })
        });
        let t = std::time::Instant::now();
        assert!(wait_readable(&[server.as_fd()], Duration::from_secs(20)), "a client is waiting");
        assert!(t.elapsed() < Duration::from_secs(10), "woken by the client, not the timeout");
        assert_eq!(server.poll(&mut |q: Q| A { version: 7, error: None, n: q.n * 2 }), 1);
        assert_eq!(c.join().unwrap().unwrap().n, 42);
    }

    /// A client that sends a byte at a time, each within the socket's timeout, is cut off
    /// after [`CLIENT_TIME`] in all, not served for as long as it likes.
    #[test]
    fn a_trickling_client_holds_the_loop_one_second_at_most() {
        let (server, path) = test_server("ctltrickle");
        let p = path.clone();
        let c = std::thread::spawn(move || {
            let mut s = UnixStream::connect(&p).unwrap();
            for b in b"{\"version\":7,\"n\":1}\n".iter().cycle().take(40) {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        assert!(wait_readable(&[server.as_fd()], Duration::from_secs(20)));
        let t = Instant::now();
        assert_eq!(server.poll(&mut |q: Q| A { version: 7, error: None, n: q.n }), 1);
        let took = t.elapsed();
        assert!(took < CLIENT_TIME + Duration::from_millis(500), "held the loop for {took:?}");
        c.join().unwrap();
    }

    /// A long answer taken by a client that reads steadily but pauses (here 4 MiB in 1.6 s)
    /// is delivered whole: its bytes earn the waits.
    #[test]
    fn a_long_answer_to_a_steady_reader_is_delivered_whole() {
        let (server, path) = test_server("ctllong");
        let c = paced_client(path, "{\"version\":7,\"n\":1}\n", 256 * 1024);
        assert!(wait_readable(&[server.as_fd()], Duration::from_secs(20)));
        let long = "x".repeat(4 << 20);
        server.poll(&mut |q: Q| A { version: 7, error: Some(long.clone()), n: q.n });
        let got = c.join().unwrap();
        let a: A = serde_json::from_slice(got.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(a.error.map(|e| e.len()), Some(4 << 20));
    }

    /// A client that keeps earning its waits (about 1.3 MB/s) over a batch of long answers
    /// (8 MiB, some 6 s at that rate) is still cut off once it has kept the loop waiting for
    /// [`CONNECTION_WAIT`] in all.
    #[test]
    fn no_connection_keeps_the_loop_waiting_past_its_allowance() {
        let (server, path) = test_server("ctlallowance");
        let c = paced_client(path, &"{\"version\":7,\"n\":1}\n".repeat(4), 128 * 1024);
        assert!(wait_readable(&[server.as_fd()], Duration::from_secs(20)));
        let long = "x".repeat(2 << 20);
        let t = Instant::now();
        server.poll(&mut |q: Q| A { version: 7, error: Some(long.clone()), n: q.n });
        let took = t.elapsed();
        // Cut off only after waiting that long, and not much later (a write in progress
        // ends within its own wait, CLIENT_TIME at most).
        assert!(took >= CONNECTION_WAIT - Duration::from_millis(100), "cut off early: {took:?}");
        assert!(took < CONNECTION_WAIT + CLIENT_TIME + Duration::from_millis(500), "served for {took:?}");
        assert!(c.join().unwrap().len() < 8 << 20, "cut off before the last answer");
    }

    /// Time spent carrying out requests is not waiting for the client: a batch whose
    /// answers take longer than [`CONNECTION_WAIT`] to make is answered whole. Requests read
    /// once the connection's work time is up are refused, not carried out.
    #[test]
    fn slow_work_is_not_held_against_the_client_but_is_bounded() {
        let (mut server, path) = test_server("ctlwork");
        let p = path.clone();
        let c =
            std::thread::spawn(move || exchange::<Q, A>(&p, &(1..=4).map(|n| Q { version: 7, n }).collect::<Vec<_>>()));
        assert!(wait_readable(&[server.as_fd()], Duration::from_secs(20)));
        // Each request takes 1.1 s to carry out; the work time is over during the third.
        server.work_time = Duration::from_millis(3000);
        let mut done = Vec::new();
        server.poll(&mut |q: Q| {
            std::thread::sleep(Duration::from_millis(1100));
            done.push(q.n);
            A { version: 7, error: None, n: q.n * 2 }
        });
        let got = c.join().unwrap().unwrap();
        assert_eq!(done, [1, 2, 3], "carried out while the work time lasted");
        assert_eq!(got.iter().map(|a| a.n).collect::<Vec<_>>(), [2, 4, 6, 0]);
        assert!(got[3].error.as_deref().unwrap().contains("not carried out"), "{:?}", got[3].error);
    }

    /// `wait_readable` over several descriptors: quiet ones time out, and any one readable
    /// ends the wait.
    #[test]
    fn wait_readable_on_any_of_several() {
        use std::os::fd::AsFd;
        use std::os::unix::net::UnixDatagram;
        let (a, a_peer) = UnixDatagram::pair().unwrap();
        let (b, b_peer) = UnixDatagram::pair().unwrap();
        let t = std::time::Instant::now();
        assert!(!wait_readable(&[a.as_fd(), b.as_fd()], Duration::from_millis(20)));
        assert!(t.elapsed() >= Duration::from_millis(15), "{:?}", t.elapsed());
        b_peer.send(b"x").unwrap();
        assert!(wait_readable(&[a.as_fd(), b.as_fd()], Duration::from_secs(20)));
        let mut buf = [0u8; 4];
        assert_eq!(b.recv(&mut buf).unwrap(), 1);
        assert!(!wait_readable(&[a.as_fd(), b.as_fd()], Duration::from_micros(50)), "read: quiet again");
        drop(a_peer);
    }
}
