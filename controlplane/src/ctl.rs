//! The IKE daemon's own control socket, for operators (`ikectl`): list IKE and Child SAs with
//! their algorithms, ages and traffic, initiate and terminate connections. One JSON request
//! per connection, one JSON answer, a protocol version in each; the socket file is mode 0600.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const VERSION: u32 = 1;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum IkeCommand {
    List,
    Initiate { connection: String },
    Terminate { connection: String },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct IkeRequest {
    pub version: u32,
    #[serde(flatten)]
    pub command: IkeCommand,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ChildView {
    pub name: String,
    pub spi_in: String,
    pub spi_out: String,
    pub algorithms: String,
    pub age_secs: u64,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    /// From the dataplane: traffic through the inbound and the outbound SA.
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct IkeSaView {
    pub connection: String,
    pub local_spi: String,
    pub remote_spi: String,
    pub initiator: bool,
    pub established: bool,
    pub local: String,
    pub remote: String,
    pub nat: bool,
    #[serde(default)]
    pub remote_id: String,
    pub algorithms: String,
    pub age_secs: u64,
    pub children: Vec<ChildView>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct IkeResponse {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ike_sas: Option<Vec<IkeSaView>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

pub struct CtlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl CtlServer {
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(CtlServer { listener, path: path.to_path_buf() })
    }

    /// Answers every client waiting now.
    pub fn poll(&self, handle: &mut dyn FnMut(IkeCommand) -> IkeResponse) {
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = serve(stream, handle);
        }
    }
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(stream: UnixStream, handle: &mut dyn FnMut(IkeCommand) -> IkeResponse) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?).take(64 * 1024).read_line(&mut line)?;
    let resp = match serde_json::from_str::<IkeRequest>(&line) {
        Ok(r) if r.version != VERSION => IkeResponse {
            version: VERSION,
            error: Some(format!("protocol version {} not supported (this daemon speaks {VERSION})", r.version)),
            ..Default::default()
        },
        Ok(r) => handle(r.command),
        Err(e) => IkeResponse { version: VERSION, error: Some(format!("bad request: {e}")), ..Default::default() },
    };
    let mut w = stream;
    serde_json::to_writer(&mut w, &resp)?;
    w.write_all(b"\n")
}

pub fn request(path: &Path, command: IkeCommand) -> Result<IkeResponse, String> {
    let mut s = UnixStream::connect(path).map_err(|e| format!("cannot connect to {}: {e}", path.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let mut line = serde_json::to_string(&IkeRequest { version: VERSION, command }).map_err(|e| e.to_string())?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).map_err(|e| e.to_string())?;
    let r: IkeResponse = serde_json::from_str(&answer).map_err(|e| format!("bad answer: {e}"))?;
    match r.error {
        Some(e) => Err(e),
        None => Ok(r),
    }
}

/// A table for people.
pub fn render(sas: &[IkeSaView]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if sas.is_empty() {
        s.push_str("no IKE SAs\n");
    }
    for i in sas {
        let _ = writeln!(
            s,
            "{}: IKE SA {} {} {} -> {}{}{}, {}, {}, {} s",
            i.connection,
            i.local_spi,
            if i.established { "ESTABLISHED" } else { "CONNECTING" },
            i.local,
            i.remote,
            if i.nat { " (NAT-T)" } else { "" },
            if i.remote_id.is_empty() { String::new() } else { format!(" [{}]", i.remote_id) },
            if i.initiator { "initiator" } else { "responder" },
            i.algorithms,
            i.age_secs
        );
        for c in &i.children {
            let _ = writeln!(
                s,
                "  {}: ESP {} in {} out {}, {} s, {} === {}\n    in {} pkts {} bytes, out {} pkts {} bytes",
                c.name,
                c.algorithms,
                c.spi_in,
                c.spi_out,
                c.age_secs,
                c.local_ts.join(","),
                c.remote_ts.join(","),
                c.packets_in,
                c.bytes_in,
                c.packets_out,
                c.bytes_out
            );
        }
    }
    s
}
