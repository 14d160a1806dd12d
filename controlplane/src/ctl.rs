//! The IKE daemon's own control socket, for operators (`ikectl`): list IKE and Child SAs with
//! their algorithms, ages and traffic, initiate and terminate connections. One JSON request
//! per connection, one JSON answer, a protocol version in each; the socket file is mode 0600.

use ctlproto::line::{self, LineServer, Protocol};
use serde::{Deserialize, Serialize};
use std::path::Path;

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

impl line::Versioned for IkeRequest {
    fn version(&self) -> u32 {
        self.version
    }
}

impl line::Answer for IkeResponse {
    fn refused(version: u32, why: String) -> Self {
        IkeResponse { version, error: Some(why), ..Default::default() }
    }
    fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

/// One request per connection is all `ikectl` sends.
const PROTOCOL: Protocol = Protocol { version: VERSION, speaker: "daemon", max_batch: 1 };

/// The listening end, polled by the daemon's event loop (non-blocking).
pub struct CtlServer(LineServer);

impl CtlServer {
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        LineServer::bind(path, PROTOCOL).map(CtlServer)
    }

    /// Answers every client waiting now; returns how many were served.
    pub fn poll(&self, handle: &mut dyn FnMut(IkeCommand) -> IkeResponse) -> usize {
        self.0.poll(&mut |r: IkeRequest| handle(r.command))
    }
}

impl std::os::fd::AsFd for CtlServer {
    /// The listening socket, for the daemon's loop to wait on.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

pub fn request(path: &Path, command: IkeCommand) -> Result<IkeResponse, String> {
    line::ask(path, IkeRequest { version: VERSION, command })
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
