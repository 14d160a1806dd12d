//! The UDP driver around the `ikev2` endpoint: sockets on ports 500 and 4500 (on 4500 every
//! IKE message carries the 4-byte non-ESP marker, RFC 3948 2.2, and a lone 0xff byte is a NAT
//! keepalive), the timer loop, and dataplane programming when a Child SA comes up.

use crate::config::{Config, StartAction};
use crate::ctl::{ChildView, CtlServer, IkeCommand, IkeResponse, IkeSaView, VERSION};
use ctlproto::line::wait_readable;
use ctlproto::{Command, RawPolicy, RawSa, RawSelector, request};
use ikev2::crypto::SystemProvider;
use ikev2::ike::{ChildSa, Endpoint, Event, IkeSaInfo};
use ikev2::wire::TrafficSelector;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// Key material as hex, written straight into a buffer of its final size: no temporary or
/// outgrown copy of it is left behind unwiped (the result wipes itself).
fn hex(b: &[u8]) -> ctlproto::HexSecret {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * b.len());
    for x in b {
        s.push(char::from(DIGITS[usize::from(x >> 4)]));
        s.push(char::from(DIGITS[usize::from(x & 15)]));
    }
    s.into()
}

/// A traffic selector range as the prefix the dataplane takes; `None` if it is not one.
fn prefix(ts: &TrafficSelector) -> Option<String> {
    match prefixes(ts)?.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// The fewest prefixes that cover a traffic selector's address range exactly (RFC 7296 3.13.1
/// ranges need not be CIDR blocks; the dataplane's selectors are). `None` for a selector that
/// is not an address range.
fn prefixes(ts: &TrafficSelector) -> Option<Vec<String>> {
    let (_, _, _, start, end) = ts.range()?;
    let (mut s, e, bits) = match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => (u128::from(u32::from(s)), u128::from(u32::from(e)), 32u32),
        (IpAddr::V6(s), IpAddr::V6(e)) => (u128::from(s), u128::from(e), 128),
        _ => return None,
    };
    if s > e {
        return None;
    }
    let addr =
        |x: u128| if bits == 32 { IpAddr::from((x as u32).to_be_bytes()) } else { IpAddr::from(x.to_be_bytes()) };
    if bits == 128 && s == 0 && e == u128::MAX {
        // All of IPv6: the one block whose size does not fit the arithmetic below.
        return Some(vec![format!("{}/0", addr(0))]);
    }
    let mut out = Vec::new();
    loop {
        // The largest block that starts at `s` (aligned to it) and ends at or before `e`.
        let mut host = if s == 0 { bits } else { s.trailing_zeros().min(bits) };
        while host > 0 && (host == 128 || s.checked_add((1u128 << host) - 1).is_none_or(|last| last > e)) {
            host -= 1;
        }
        out.push(format!("{}/{}", addr(s), bits - host));
        let last = s + ((1u128 << host) - 1);
        if last >= e {
            return Some(out);
        }
        s = last + 1;
    }
}

/// A selector's protocol (`None`: any) and its ports as the dataplane writes them (`None`:
/// any). ICMP's port fields hold type and code in one 16-bit range (RFC 7296 3.13.1), which
/// the dataplane's type/code selectors cannot take: such a range is widened to any.
fn proto_ports(ts: &TrafficSelector) -> (Option<u8>, Option<String>) {
    let Some((proto, lo, hi, _, _)) = ts.range() else { return (None, None) };
    let proto = (proto != 0).then_some(proto);
    let ports = match (lo, hi) {
        (0, 65535) => None,
        // OPAQUE (start above end, RFC 7296 3.13.1): what a packet without ports shows.
        (lo, hi) if lo > hi => None,
        _ if matches!(proto, Some(1) | Some(58)) => None,
        (lo, hi) if lo == hi => Some(lo.to_string()),
        (lo, hi) => Some(format!("{lo}-{hi}")),
    };
    (proto, ports)
}

/// A dataplane selector: (src, dst, proto, sport, dport), written as outbound policies are
/// (local side as source).
pub type Sel = (String, String, Option<u8>, Option<String>, Option<String>);

/// The most dataplane selectors (and policies) one Child SA may make: a peer's odd ranges
/// (each up to 254 prefixes in IPv6), paired, must not become an unbounded number of them.
const MAX_SELECTORS: usize = 256;

/// One dataplane selector per pair of a local and a remote prefix. Pairs whose protocols or
/// address families differ match no packet and are left out.
pub fn selectors(local_ts: &[TrafficSelector], remote_ts: &[TrafficSelector]) -> Result<Vec<Sel>, String> {
    let mut out = Vec::new();
    for l in local_ts {
        let (lp, lports) = proto_ports(l);
        let lnets = prefixes(l).ok_or("a local selector is not an address range")?;
        for r in remote_ts {
            if l.ts_type() != r.ts_type() {
                continue;
            }
            let (rp, rports) = proto_ports(r);
            let proto = match (lp, rp) {
                (Some(a), Some(b)) if a != b => continue,
                (a, b) => a.or(b),
            };
            let rnets = prefixes(r).ok_or("a remote selector is not an address range")?;
            if out.len() + lnets.len() * rnets.len() > MAX_SELECTORS {
                return Err(format!(
                    "the traffic selectors make more than {MAX_SELECTORS} prefix pairs (ranges that are not CIDR blocks?)"
                ));
            }
            for ln in &lnets {
                for rn in &rnets {
                    out.push((ln.clone(), rn.clone(), proto, lports.clone(), rports.clone()));
                }
            }
        }
    }
    Ok(out)
}

/// The connection and Child SA (as configured) whose dataplane SA is `name`, with the
/// pair's inbound SPI (unique among our Child SAs): found by making each candidate's name
/// ([`sa_name`]), since names may hold dashes. None for SAs the daemon did not make.
fn child_of_sa<'c>(cfg: &'c Config, name: &str, dir: &str, spi: u32) -> Option<(&'c str, &'c str, u32)> {
    // An outbound SA's name ends with its pair's inbound SPI.
    let spi_in = match dir {
        "in" => spi,
        _ => u32::from_str_radix(name.rsplit_once('-')?.1, 16).ok()?,
    };
    cfg.connections.iter().find_map(|c| {
        let conn = c.conn.name.as_str();
        c.conn
            .children
            .iter()
            .map(|ch| ch.name.as_str())
            .find(|&ch| sa_name(conn, ch, dir, spi, spi_in) == name)
            .map(|ch| (conn, ch, spi_in))
    })
}

/// The dataplane's name of one half of a Child SA (`spi`: its own SPI; `spi_in`: the pair's
/// inbound one). An outbound SA's name carries both: its SPI is the peer's choice, and on a
/// connection serving many peers (`%any`) two of them may choose the same, while our inbound
/// SPIs are unique.
pub fn sa_name(connection: &str, child: &str, dir: &str, spi: u32, spi_in: u32) -> String {
    if dir == "in" {
        format!("{connection}-{child}-in-{spi:08x}")
    } else {
        format!("{connection}-{child}-{dir}-{spi:08x}-{spi_in:08x}")
    }
}

/// The dataplane's SA and policy for a Child SA (names carry the SPI, so a rekey's new SA
/// sits beside the old one until that is removed: make-before-break).
pub fn program(c: &ChildSa, rekey_bytes: Option<u64>, life_time: Option<u64>) -> Result<Vec<Command>, String> {
    let sels = selectors(&c.local_ts, &c.remote_ts)?;
    let alg = if c.key_bits == 256 { "aes256gcm16" } else { "aes128gcm16" };
    let sa = |dir: &str, spi: u32, key: &[u8]| {
        let n = key.len() - 4;
        RawSa {
            name: sa_name(&c.connection, &c.child, dir, spi, c.spi_in),
            spi,
            direction: dir.into(),
            algorithm: alg.into(),
            key: hex(&key[..n]),
            salt: hex(&key[n..]),
            local: c.local.ip().to_string(),
            remote: c.remote.ip().to_string(),
            udp_encap: c.udp_encap,
            udp_sport: c.udp_encap.then_some(c.local.port()),
            udp_dport: c.udp_encap.then_some(c.remote.port()),
            esn: c.esn,
            replay_window: Some(1024),
            // The dataplane counts bytes and reports the soft limit, when we rekey; at the hard
            // limit it removes the SA (RFC 4301 4.4.2.1). Twice the soft limit leaves room for
            // the report (checked every 100 ms), our poll and the rekey exchange at line rate.
            soft_bytes: rekey_bytes,
            hard_bytes: rekey_bytes.map(|b| b.saturating_mul(2)),
            // Rekeys by time are ours (the endpoint's timers); if none replaces the SA, it dies.
            hard_secs: life_time,
            selectors: (dir == "in").then(|| {
                sels.iter()
                    .map(|(src, dst, proto, sport, dport)| RawSelector {
                        src: src.clone(),
                        dst: dst.clone(),
                        proto: proto.map(|p| toml::Value::Integer(p.into())),
                        sport: sport.clone(),
                        dport: dport.clone(),
                    })
                    .collect()
            }),
            ..RawSa::default()
        }
    };
    let inbound = sa("in", c.spi_in, c.key_in.expose());
    let outbound = sa("out", c.spi_out, c.key_out.expose());
    let mut cmds = vec![Command::AddSa { sa: inbound }, Command::AddSa { sa: outbound }];
    // A pair that takes the outbound traffic later gets its policies then (`policies`).
    if !c.outbound_later {
        cmds.extend(policies(&c.connection, &c.child, c.spi_in, c.spi_out, &c.local_ts, &c.remote_ts)?);
    }
    Ok(cmds)
}

/// The dataplane's policies sending a Child SA's traffic through its pair (and checking what
/// comes back against them): one per pair of local and remote prefixes.
pub fn policies(
    connection: &str,
    child: &str,
    spi_in: u32,
    spi_out: u32,
    local_ts: &[TrafficSelector],
    remote_ts: &[TrafficSelector],
) -> Result<Vec<Command>, String> {
    let mut cmds = Vec::new();
    for (src, dst, proto, sport, dport) in selectors(local_ts, remote_ts)? {
        // Named by its selectors: a rekey replaces it, and the Child SAs of many branches on
        // one connection (each its own subnet) sit side by side.
        let mut name = format!("{connection}-{child}-{src}-{dst}");
        for (what, v) in [("proto", proto.map(|p| p.to_string())), ("sport", sport.clone()), ("dport", dport.clone())] {
            if let Some(v) = v {
                name.push_str(&format!("-{what}{v}"));
            }
        }
        cmds.push(Command::SetPolicy {
            policy: RawPolicy {
                name,
                src,
                dst,
                proto: proto.map(|p| toml::Value::Integer(p.into())),
                sport,
                dport,
                action: "protect".into(),
                sa_out: Some(sa_name(connection, child, "out", spi_out, spi_in)),
                sa_in: Some(sa_name(connection, child, "in", spi_in, spi_in)),
                ..RawPolicy::default()
            },
        });
    }
    Ok(cmds)
}

fn ts_text(ts: &[TrafficSelector]) -> Vec<String> {
    ts.iter().map(|t| prefix(t).unwrap_or_else(|| format!("{t:?}"))).collect()
}

/// The view `ikectl list` shows, with each Child SA's traffic from the dataplane.
fn views(cfg: &Config, sas: Vec<IkeSaInfo>) -> Vec<IkeSaView> {
    let counters: Vec<ctlproto::SaInfo> = cfg
        .dataplane_socket
        .as_ref()
        .and_then(|s| request(s, Command::ListSas).ok())
        .and_then(|r| r.sas)
        .unwrap_or_default();
    let count = |name: String| counters.iter().find(|s| s.name == name).map_or((0, 0), |s| (s.packets, s.bytes));
    sas.into_iter()
        .map(|i| IkeSaView {
            children: i
                .children
                .iter()
                .map(|c| {
                    let (packets_in, bytes_in) = count(sa_name(&i.connection, &c.name, "in", c.spi_in, c.spi_in));
                    let (packets_out, bytes_out) = count(sa_name(&i.connection, &c.name, "out", c.spi_out, c.spi_in));
                    ChildView {
                        name: c.name.clone(),
                        spi_in: format!("{:08x}", c.spi_in),
                        spi_out: format!("{:08x}", c.spi_out),
                        algorithms: c.algorithms.clone(),
                        age_secs: c.age.as_secs(),
                        local_ts: ts_text(&c.local_ts),
                        remote_ts: ts_text(&c.remote_ts),
                        packets_in,
                        bytes_in,
                        packets_out,
                        bytes_out,
                    }
                })
                .collect(),
            connection: i.connection,
            local_spi: format!("{:016x}", i.local_spi),
            remote_spi: format!("{:016x}", i.remote_spi),
            initiator: i.initiator,
            established: i.established,
            local: i.local.to_string(),
            remote: i.remote.to_string(),
            nat: i.nat,
            remote_id: i.remote_id.unwrap_or_default(),
            algorithms: i.algorithms,
            age_secs: i.age.as_secs(),
        })
        .collect()
}

/// SPD priority of trap policies: after those of negotiated Child SAs (100, lower first).
const TRAP_PRIORITY: u32 = 1000;

/// Policies that send traffic for a trap connection to "no SA yet": the dataplane drops it
/// (counted NoSa) and reports an acquire, and we initiate.
fn trap_policies(c: &crate::config::ConnConfig) -> Vec<Command> {
    let mut out = Vec::new();
    for child in &c.conn.children {
        let (l, r) = (ts_text(&child.local_ts), ts_text(&child.remote_ts));
        for (i, src) in l.iter().enumerate() {
            for (j, dst) in r.iter().enumerate() {
                out.push(Command::SetPolicy {
                    policy: RawPolicy {
                        name: format!("{}-{}-trap-{i}-{j}", c.conn.name, child.name),
                        src: src.clone(),
                        dst: dst.clone(),
                        action: "protect".into(),
                        sa_out: Some(format!("{}-{}-trap", c.conn.name, child.name)),
                        // Below the negotiated policies (priority 100), which may narrow it.
                        priority: Some(TRAP_PRIORITY),
                        ..RawPolicy::default()
                    },
                });
            }
        }
    }
    out
}

/// The connection and child whose dataplane objects (SAs, policies) carry this name.
fn owner<'a>(cfg: &'a Config, name: &str) -> Option<(&'a crate::config::ConnConfig, &'a str)> {
    cfg.connections.iter().find_map(|c| {
        c.conn
            .children
            .iter()
            .find(|ch| name.starts_with(&format!("{}-{}-", c.conn.name, ch.name)))
            .map(|ch| (c, ch.name.as_str()))
    })
}

/// Events from the dataplane: acquires start trap connections, soft lifetimes rekey.
fn dataplane_events(cfg: &Config, ep: &mut Endpoint) {
    let Some(sock) = &cfg.dataplane_socket else { return };
    let Ok(r) = request(sock, Command::PollEvents) else { return };
    for e in r.events.unwrap_or_default() {
        match e {
            ctlproto::SadEvent::Acquire { policy, src, dst, .. } => {
                let Some((c, child)) = owner(cfg, &policy) else { continue };
                if c.start != StartAction::Trap {
                    continue;
                }
                if ep.has_ike_sa(&c.conn.name) {
                    // The IKE SA is up (or coming): this Child SA is missing, ask for it.
                    let up = ep.list(Instant::now()).into_iter().find(|s| s.connection == c.conn.name && s.established);
                    if let Some(sa) = up.filter(|s| !s.children.iter().any(|x| x.name == child))
                        && ep.create_child(sa.local_spi, child).is_ok()
                    {
                        eprintln!("ike-daemon: {}: traffic {src} -> {dst} needs child SA {child}", c.conn.name);
                    }
                    continue;
                }
                let Some(remote) = c.remote else { continue };
                eprintln!("ike-daemon: {}: traffic {src} -> {dst} needs the tunnel: initiating", c.conn.name);
                let _ = ep.initiate(
                    Instant::now(),
                    &c.conn.name,
                    SocketAddr::new(c.local, cfg.port),
                    SocketAddr::new(remote, cfg.port),
                );
            }
            ctlproto::SadEvent::SoftExpire { name, spi, direction } => {
                let Some((conn, child, spi_in)) = child_of_sa(cfg, &name, &direction, spi) else { continue };
                if ep.rekey_soon(conn, child, spi_in, true) {
                    eprintln!("ike-daemon: {name}: soft lifetime reached, rekeying");
                }
            }
            ctlproto::SadEvent::HardExpire { name, spi, direction } => {
                eprintln!("ike-daemon: {name}: hard lifetime reached, removed");
                let Some((conn, child, spi_in)) = child_of_sa(cfg, &name, &direction, spi) else { continue };
                // The pair is dead: tell the peer (RFC 7296 1.4.1).
                if ep.delete_child(conn, child, spi_in, true) {
                    eprintln!("ike-daemon: {name}: deleting its child SA with the peer");
                }
            }
        }
    }
}

/// An `ikectl` command.
fn operator(cfg: &Config, ep: &mut Endpoint, cmd: IkeCommand) -> IkeResponse {
    let now = Instant::now();
    let ok = |message: String| IkeResponse { version: VERSION, message: Some(message), ..Default::default() };
    let err = |e: String| IkeResponse { version: VERSION, error: Some(e), ..Default::default() };
    match cmd {
        IkeCommand::List => {
            IkeResponse { version: VERSION, ike_sas: Some(views(cfg, ep.list(now))), ..Default::default() }
        }
        IkeCommand::Initiate { connection } => {
            let Some(c) = cfg.connections.iter().find(|c| c.conn.name == connection) else {
                return err(format!("no connection named {connection:?}"));
            };
            let Some(remote) = c.remote else { return err(format!("{connection} waits for peers on any address")) };
            let (l, r) = (SocketAddr::new(c.local, cfg.port), SocketAddr::new(remote, cfg.port));
            match ep.initiate(now, &connection, l, r) {
                Ok(spi) => ok(format!("{connection}: initiating IKE SA {spi:016x} to {r}")),
                Err(e) => err(e),
            }
        }
        IkeCommand::Terminate { connection } => {
            let n = ep.terminate(now, &connection);
            ok(format!("{connection}: deleting {n} IKE SA(s)"))
        }
    }
}

pub fn run(cfg: Config, stop: Arc<AtomicBool>) -> Result<(), String> {
    let bind = |addr: IpAddr, port| {
        let s = UdpSocket::bind(SocketAddr::new(addr, port)).map_err(|e| format!("bind {addr}:{port}: {e}"))?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok::<_, String>(s)
    };
    // After a restart the dataplane still forwards with the SAs the previous daemon installed
    // (ARCHITECTURE.md: either process can restart without taking the other down). They are
    // kept until this daemon has installed a successor for the same connection and child,
    // then removed: make-before-break across the restart.
    let mut stale: Vec<String> = Vec::new();
    if let Some(sock) = &cfg.dataplane_socket {
        match request(sock, Command::ListSas) {
            Ok(r) => {
                let ours = |n: &str| owner(&cfg, n).is_some();
                stale = r.sas.unwrap_or_default().into_iter().map(|s| s.name).filter(|n| ours(n)).collect();
                if !stale.is_empty() {
                    eprintln!(
                        "ike-daemon: {} SAs from before the restart keep forwarding until renegotiated",
                        stale.len()
                    );
                }
            }
            Err(e) => eprintln!("ike-daemon: dataplane not reachable yet: {e}"),
        }
    }
    // (socket, carries the non-ESP marker): ports 500 and 4500 on every listen address.
    let mut sockets = Vec::new();
    for &a in &cfg.listen {
        sockets.push((bind(a, cfg.port)?, false));
        sockets.push((bind(a, cfg.natt_port)?, true));
    }
    let mut ep =
        Endpoint::new(cfg.connections.iter().map(|c| c.conn.clone()).collect(), Box::new(SystemProvider::new()));
    let now = Instant::now();
    ep.set_wall_clock(now, unix_now());
    for c in cfg.connections.iter().filter(|c| c.start == StartAction::Trap) {
        // Trap policies: traffic for them is dropped (NoSa) and reported, so we initiate.
        if let Some(sock) = &cfg.dataplane_socket {
            for cmd in trap_policies(c) {
                if let Err(e) = request(sock, cmd) {
                    eprintln!("ike-daemon: {}: trap policy: {e}", c.conn.name);
                }
            }
        }
    }
    for c in cfg.connections.iter().filter(|c| c.start == StartAction::Start) {
        let Some(remote) = c.remote else { continue };
        let l = SocketAddr::new(c.local, cfg.port);
        let r = SocketAddr::new(remote, cfg.port);
        match ep.initiate(now, &c.conn.name, l, r) {
            Ok(_) => eprintln!("ike-daemon: {}: initiating to {r}", c.conn.name),
            Err(e) => eprintln!("ike-daemon: {}: {e}", c.conn.name),
        }
    }
    let ctl = match &cfg.control_socket {
        Some(p) => Some(CtlServer::bind(p).map_err(|e| format!("control socket {}: {e}", p.display()))?),
        None => None,
    };
    let mut buf = vec![0u8; 65536];
    let mut last_events = Instant::now();
    let mut last_keepalive = Instant::now();
    // SAs from before the restart whose successor is installed: removed a moment later, so
    // that what the peer sent on them before it moved to the successor still gets through.
    let mut retiring: Vec<(Instant, String)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(sock) = &cfg.dataplane_socket {
            let now = Instant::now();
            for (_, name) in retiring.extract_if(.., |(at, _)| *at <= now) {
                eprintln!("ike-daemon: removing {name}, installed before the restart");
                if let Err(e) = request(sock, Command::DelSa { name }) {
                    eprintln!("ike-daemon: dataplane: {e}");
                }
            }
        }
        let mut busy = false;
        if let Some(ctl) = &ctl {
            busy |= ctl.poll(&mut |cmd| operator(&cfg, &mut ep, cmd)) > 0;
        }
        for (sock, marker) in sockets.iter().map(|(s, m)| (s, *m)) {
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        busy = true;
                        let local = sock.local_addr().map_err(|e| e.to_string())?;
                        let data = &buf[..n];
                        let msg = if marker {
                            // RFC 3948 2.2: IKE behind the marker; a keepalive or ESP is not for us.
                            match data.strip_prefix(&NON_ESP_MARKER) {
                                Some(m) => m,
                                None => continue,
                            }
                        } else {
                            data
                        };
                        ep.handle_datagram(Instant::now(), local, from, msg);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        eprintln!("ike-daemon: receive: {e}");
                        break;
                    }
                }
            }
        }
        if ep.poll_timeout().is_some_and(|t| t <= Instant::now()) {
            ep.handle_timeout(Instant::now());
        }
        // Before the sends below: an acquire among the dataplane's events starts a
        // negotiation whose first message must go out now, not after the next wait.
        if last_events.elapsed() >= EVENTS_EVERY {
            last_events = Instant::now();
            // Certificates are checked against the wall clock, which may be stepped.
            ep.set_wall_clock(last_events, unix_now());
            dataplane_events(&cfg, &mut ep);
        }
        if last_keepalive.elapsed() >= NAT_KEEPALIVE {
            last_keepalive = Instant::now();
            nat_keepalives(&ep, &sockets);
        }
        while let Some(t) = ep.poll_transmit() {
            let Some((sock, marker)) = sockets.iter().find(|(s, _)| s.local_addr().is_ok_and(|a| a == t.local)) else {
                eprintln!("ike-daemon: no socket on {}", t.local);
                continue;
            };
            let data = if *marker { [&NON_ESP_MARKER[..], &t.data].concat() } else { t.data };
            if let Err(e) = sock.send_to(&data, t.remote) {
                eprintln!("ike-daemon: send to {}: {e}", t.remote);
            }
        }
        while let Some(e) = ep.poll_event() {
            match e {
                Event::IkeUp { connection, local_spi, .. } => {
                    eprintln!("ike-daemon: {connection}: IKE SA {local_spi:016x} established")
                }
                Event::Failed { connection, reason } => eprintln!("ike-daemon: {connection}: failed: {reason}"),
                Event::ChildRefused { connection, child, reason } => {
                    eprintln!("ike-daemon: {connection}: child SA {child} refused by the peer: {reason}")
                }
                Event::IkeRekeyed { connection, old_spi, new_spi } => {
                    eprintln!("ike-daemon: {connection}: IKE SA {old_spi:016x} rekeyed, now {new_spi:016x}")
                }
                Event::IkeDown { connection, local_spi } => {
                    eprintln!("ike-daemon: {connection}: IKE SA {local_spi:016x} deleted")
                }
                Event::ChildOutbound { connection, child, spi_in, spi_out, local_ts, remote_ts } => {
                    eprintln!(
                        "ike-daemon: {connection}: child SA {child} takes the outbound traffic, SPIs in {spi_in:08x} out {spi_out:08x}"
                    );
                    if let Some(sock) = &cfg.dataplane_socket {
                        match policies(&connection, &child, spi_in, spi_out, &local_ts, &remote_ts) {
                            Ok(cmds) => match ctlproto::request_many(sock, cmds) {
                                Ok(answers) => {
                                    for e in answers.into_iter().filter_map(|r| r.error) {
                                        eprintln!("ike-daemon: dataplane: {e}");
                                    }
                                }
                                Err(e) => eprintln!("ike-daemon: dataplane: {e}"),
                            },
                            Err(e) => eprintln!("ike-daemon: {connection}: cannot program the dataplane: {e}"),
                        }
                    }
                }
                Event::ChildDown { connection, child, spi_in, spi_out } => {
                    eprintln!(
                        "ike-daemon: {connection}: child SA {child} down, SPIs in {spi_in:08x} out {spi_out:08x}"
                    );
                    if let Some(sock) = &cfg.dataplane_socket {
                        for (dir, spi) in [("out", spi_out), ("in", spi_in)] {
                            let name = sa_name(&connection, &child, dir, spi, spi_in);
                            if let Err(e) = request(sock, Command::DelSa { name }) {
                                eprintln!("ike-daemon: dataplane: {e}");
                            }
                        }
                    }
                }
                Event::ChildUp(c) => {
                    eprintln!(
                        "ike-daemon: {}: child SA {} up, SPIs in {:08x} out {:08x}, AES-GCM-{}{}",
                        c.connection,
                        c.child,
                        c.spi_in,
                        c.spi_out,
                        c.key_bits,
                        if c.udp_encap { ", UDP-encapsulated" } else { "" }
                    );
                    if let Some(sock) = &cfg.dataplane_socket {
                        let conn = cfg.connections.iter().find(|x| x.conn.name == c.connection);
                        match program(&c, conn.and_then(|x| x.rekey_bytes), conn.and_then(|x| x.life_time)) {
                            // One batch: the peer may already send on the new SA.
                            Ok(cmds) => match ctlproto::request_many(sock, cmds) {
                                Ok(answers) => {
                                    for e in answers.into_iter().filter_map(|r| r.error) {
                                        eprintln!("ike-daemon: dataplane: {e}");
                                    }
                                }
                                Err(e) => eprintln!("ike-daemon: dataplane: {e}"),
                            },
                            Err(e) => {
                                // A Child SA that cannot carry traffic here is not left up with
                                // the peer, silently dropping what it sends (RFC 7296 1.4.1).
                                eprintln!(
                                    "ike-daemon: {}: child SA {}: cannot program the dataplane ({e}): deleting it",
                                    c.connection, c.child
                                );
                                ep.delete_child(&c.connection, &c.child, c.spi_in, true);
                                continue;
                            }
                        }
                        // The new pair carries the traffic now: what a previous run left goes
                        // shortly (see `retiring`).
                        let prefix = format!("{}-{}-", c.connection, c.child);
                        let at = Instant::now() + STALE_GRACE;
                        retiring.extend(stale.extract_if(.., |n| n.starts_with(&prefix)).map(|n| (at, n)));
                    }
                }
            }
        }
        if !busy {
            // Until a datagram or an operator arrives (a peer's answer, say to a rekey, is
            // acted on at once) or the next timer: IKE's retransmissions and lifetimes, the
            // dataplane's events, NAT keepalives. It used to wake every 500 us to look, which
            // costs several percent of a core with nothing to do (as the dataplane's control
            // thread did: perf/RESULTS.md sections 24 and 25).
            let mut next = (last_events + EVENTS_EVERY).min(last_keepalive + NAT_KEEPALIVE);
            if let Some(t) = ep.poll_timeout() {
                next = next.min(t);
            }
            let pause = next.saturating_duration_since(Instant::now());
            let mut fds: Vec<BorrowedFd<'_>> = sockets.iter().map(|(s, _)| s.as_fd()).collect();
            fds.extend(ctl.as_ref().map(|c| c.as_fd()));
            wait_readable(&fds, pause);
        }
    }
    Ok(())
}

/// How long SAs from before a restart stay after their successor is installed: the peer,
/// which learns of the new IKE SA from our IKE_AUTH (with INITIAL_CONTACT), may still have
/// packets on its way on the old ones.
const STALE_GRACE: Duration = Duration::from_secs(2);

/// How often the dataplane is asked for its events (soft lifetimes, which start our rekeys;
/// traffic without an SA, which starts a negotiation).
const EVENTS_EVERY: Duration = Duration::from_millis(50);

/// RFC 3948 4: a NAT keepalive at least this often keeps the NAT's mapping for our UDP-
/// encapsulated ESP and IKE (strongSwan's default is 20 s too).
const NAT_KEEPALIVE: Duration = Duration::from_secs(20);

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A lone 0xff byte from our port 4500 to the peer's (RFC 3948 2.3) on every IKE SA with a NAT
/// between the peers. The dataplane's ESP shares that 5-tuple, so one keepalive keeps both.
fn nat_keepalives(ep: &Endpoint, sockets: &[(UdpSocket, bool)]) {
    for sa in ep.list(Instant::now()).into_iter().filter(|s| s.established && s.nat) {
        let Some((sock, _)) = sockets.iter().find(|(s, marker)| *marker && s.local_addr().is_ok_and(|a| a == sa.local))
        else {
            continue;
        };
        if let Err(e) = sock.send_to(&[0xff], sa.remote) {
            eprintln!("ike-daemon: NAT keepalive to {}: {e}", sa.remote);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pair that takes the outbound traffic later is installed without its policies; they
    /// come with [`policies`], naming the same SAs.
    #[test]
    fn a_pair_held_back_is_installed_without_its_policies() {
        let ts = |s: &str| crate::config::selector(s).unwrap();
        let mut c = ChildSa {
            connection: "gw".into(),
            child: "net".into(),
            local: "192.0.2.1:500".parse().unwrap(),
            remote: "192.0.2.2:500".parse().unwrap(),
            udp_encap: false,
            spi_in: 0x1111_1111,
            spi_out: 0x2222_2222,
            key_bits: 128,
            key_in: ikev2::crypto::Secret::from_slice(&[1; 20]),
            key_out: ikev2::crypto::Secret::from_slice(&[2; 20]),
            esn: false,
            local_ts: vec![ts("10.1.0.0/24")],
            remote_ts: vec![ts("10.2.0.0/24"), ts("10.3.0.0/24")],
            outbound_later: false,
        };
        let kinds = |cmds: &[Command]| -> Vec<&'static str> {
            cmds.iter()
                .map(|c| match c {
                    Command::AddSa { .. } => "sa",
                    Command::SetPolicy { .. } => "policy",
                    _ => "other",
                })
                .collect()
        };
        assert_eq!(kinds(&program(&c, None, None).unwrap()), ["sa", "sa", "policy", "policy"]);
        c.outbound_later = true;
        let now = program(&c, None, None).unwrap();
        assert_eq!(kinds(&now), ["sa", "sa"]);
        let later = policies(&c.connection, &c.child, c.spi_in, c.spi_out, &c.local_ts, &c.remote_ts).unwrap();
        let Command::SetPolicy { policy } = &later[1] else { panic!("{later:?}") };
        assert_eq!((policy.src.as_str(), policy.dst.as_str()), ("10.1.0.0/24", "10.3.0.0/24"));
        assert_eq!(policy.sa_out.as_deref(), Some("gw-net-out-22222222-11111111"));
        assert_eq!(policy.sa_in.as_deref(), Some("gw-net-in-11111111"));
        let Command::AddSa { sa } = &now[1] else { panic!("{now:?}") };
        assert_eq!(policy.sa_out.as_ref(), Some(&sa.name), "the policy names the SA installed before");
    }

    /// Ranges that are not CIDR blocks become the fewest blocks covering them exactly, and
    /// narrowed protocols and ports reach the dataplane's selectors and policies.
    #[test]
    fn narrowed_selectors_reach_the_dataplane_whole() {
        use ikev2::wire::AddrRange;
        let odd = TrafficSelector::ipv4([10, 0, 0, 1].into(), [10, 0, 0, 6].into());
        assert_eq!(prefixes(&odd).unwrap(), ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]);
        let all4 = TrafficSelector::ipv4([0, 0, 0, 0].into(), [255, 255, 255, 255].into());
        assert_eq!(prefixes(&all4).unwrap(), ["0.0.0.0/0"]);
        let all6 = TrafficSelector::ipv6(0u128.into(), u128::MAX.into());
        assert_eq!(prefixes(&all6).unwrap(), ["::/0"]);
        let top = TrafficSelector::ipv4([255, 255, 255, 254].into(), [255, 255, 255, 255].into());
        assert_eq!(prefixes(&top).unwrap(), ["255.255.255.254/31"]);
        let tail6 = TrafficSelector::ipv6(1u128.into(), u128::MAX.into());
        assert_eq!(prefixes(&tail6).unwrap().len(), 128, "::1/128, ::2/127, ... 8000::/1");
        // Exactly the range, with random ends: the blocks are adjacent, aligned, in order.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (a, b) = ((x as u32) >> (x % 32), (x >> 32) as u32);
            let (lo, hi) = (a.min(b), a.max(b));
            let mut next = u64::from(lo);
            for p in prefixes(&TrafficSelector::ipv4(lo.into(), hi.into())).unwrap() {
                let (net, len) = p.split_once('/').unwrap();
                let (net, len) = (u32::from(net.parse::<std::net::Ipv4Addr>().unwrap()), len.parse::<u32>().unwrap());
                assert_eq!(u64::from(net), next, "{lo:#x}-{hi:#x}: {p}");
                let size = 1u64 << (32 - len);
                assert_eq!(u64::from(net) % size, 0, "aligned");
                next += size;
            }
            assert_eq!(next, u64::from(hi) + 1);
        }
        // TCP to port 443 of one host, from any port of a /24.
        let web = |net: [u8; 4], last: [u8; 4], lo: u16, hi: u16| {
            TrafficSelector::Ipv4(AddrRange {
                ip_protocol: 6,
                start_port: lo,
                end_port: hi,
                start: net.into(),
                end: last.into(),
            })
        };
        let local = [web([10, 1, 0, 0], [10, 1, 0, 255], 0, 65535)];
        let remote = [web([10, 2, 0, 5], [10, 2, 0, 5], 443, 443)];
        let sels = selectors(&local, &remote).unwrap();
        assert_eq!(sels, [("10.1.0.0/24".into(), "10.2.0.5/32".into(), Some(6), None, Some("443".into()))]);
        let cmds = policies("gw", "web", 1, 2, &local, &remote).unwrap();
        let Command::SetPolicy { policy } = &cmds[0] else { panic!("{cmds:?}") };
        assert_eq!(policy.proto, Some(toml::Value::Integer(6)));
        assert_eq!((policy.sport.as_deref(), policy.dport.as_deref()), (None, Some("443")));
        assert_eq!(policy.name, "gw-web-10.1.0.0/24-10.2.0.5/32-proto6-dport443");
        // Different protocols on the two sides match no packet.
        let udp = [TrafficSelector::Ipv4(AddrRange {
            ip_protocol: 17,
            ..match remote[0] {
                TrafficSelector::Ipv4(r) => r,
                _ => unreachable!(),
            }
        })];
        assert!(selectors(&local, &udp).unwrap().is_empty());
        // A peer's odd IPv6 ranges (64 prefixes each) would pair into 4,096: refused.
        let odd6 = |lo: u128| TrafficSelector::ipv6(lo.into(), (lo | 0xffff_ffff_ffff_ffff).into());
        let (l6, r6) = ([odd6(0xfd01 << 112 | 1)], [odd6(0xfd02 << 112 | 1)]);
        assert_eq!(prefixes(&l6[0]).unwrap().len(), 64);
        let e = selectors(&l6, &r6).unwrap_err();
        assert!(e.contains("more than 256"), "{e}");
    }

    /// A dataplane SA's name leads back to its connection and Child SA, dashes in names and
    /// all; SAs the daemon did not make lead nowhere.
    #[test]
    fn an_sa_name_leads_back_to_its_child() {
        let text = r#"
[daemon]
listen = "10.77.0.1"
[[connection]]
name = "gw-east"
local_addr = "10.77.0.1"
remote_addr = "10.77.0.2"
local_id = "left@example.test"
psk = "a-long-test-psk-0123456789"
proposals = ["aes256gcm16-prfsha256-x25519"]
esp_proposals = ["aes128gcm16"]
[[connection.children]]
name = "net-a"
local_ts = ["10.1.0.0/24"]
remote_ts = ["10.2.0.0/24"]
[[connection.children]]
name = "a"
local_ts = ["10.1.0.0/24"]
remote_ts = ["10.3.0.0/24"]
"#;
        let cfg = Config::parse(text).unwrap();
        let name = sa_name("gw-east", "net-a", "out", 0x1234, 0xabcd);
        assert_eq!(name, "gw-east-net-a-out-00001234-0000abcd");
        assert_eq!(child_of_sa(&cfg, &name, "out", 0x1234), Some(("gw-east", "net-a", 0xabcd)));
        let inbound = sa_name("gw-east", "a", "in", 7, 7);
        assert_eq!(child_of_sa(&cfg, &inbound, "in", 7), Some(("gw-east", "a", 7)));
        assert_eq!(child_of_sa(&cfg, &name, "in", 0x1234), None, "the other direction's name");
        assert_eq!(child_of_sa(&cfg, &name, "out", 0x1235), None, "another SPI");
        assert_eq!(child_of_sa(&cfg, "out", "out", 0x1234), None, "an SA of the configuration file");
    }

    #[test]
    fn selectors_become_prefixes() {
        let ts = crate::config::selector("10.1.0.0/24").unwrap();
        assert_eq!(prefix(&ts).as_deref(), Some("10.1.0.0/24"));
        let ts = crate::config::selector("fd01::/64").unwrap();
        assert_eq!(prefix(&ts).as_deref(), Some("fd01::/64"));
        let odd = TrafficSelector::ipv4([10, 0, 0, 1].into(), [10, 0, 0, 6].into());
        assert_eq!(prefix(&odd), None);
    }
}
