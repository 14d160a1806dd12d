//! Two gateways back to back, A and B, as the integration tests and the pipeline fuzz target
//! build them: A protects 10.1.0.0/24 and fd01::/64 towards B's 10.2.0.0/24 and fd02::/64,
//! one SA pair each way, every neighbour known. Included by path (`#[path]`) from both.
#![allow(dead_code)]

use dataplane::config::{Config, Role};
use dataplane::counters::WorkerCounters;
use dataplane::net::Mac;
use dataplane::pipeline::{Neighbor, Pipeline};
use std::sync::Arc;

pub const A_PROT: Mac = Mac([2, 0xa, 0, 0, 0, 1]);
pub const A_UNPROT: Mac = Mac([2, 0xa, 0, 0, 0, 2]);
pub const B_PROT: Mac = Mac([2, 0xb, 0, 0, 0, 1]);
pub const B_UNPROT: Mac = Mac([2, 0xb, 0, 0, 0, 2]);
pub const HOST1: Mac = Mac([2, 0x11, 0, 0, 0, 1]);
pub const HOST2: Mac = Mac([2, 0x22, 0, 0, 0, 2]);

/// Gateway `me`'s ("a" or "b") configuration: ESP over IPv4 or IPv6 (`v6_outer`), in UDP
/// 4500 or not (`udp`), with or without extended sequence numbers (`esn`).
pub fn gw_config(me: &str, udp: bool, v6_outer: bool, esn: bool) -> String {
    let (a_out, b_out, a_key, b_key) =
        ("1001", "2001", "00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100");
    let (prot, local_net, remote_net) = if me == "a" {
        ("10.1.0.1/24", "10.1.0.0/24", "10.2.0.0/24")
    } else {
        ("10.2.0.1/24", "10.2.0.0/24", "10.1.0.0/24")
    };
    let (l4, r4, l6, r6) = if me == "a" {
        ("192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2")
    } else {
        ("192.0.2.2", "192.0.2.1", "2001:db8::2", "2001:db8::1")
    };
    let (local, remote) = if v6_outer { (l6, r6) } else { (l4, r4) };
    let (spi_out, spi_in, key_out, key_in) =
        if me == "a" { (a_out, b_out, a_key, b_key) } else { (b_out, a_out, b_key, a_key) };
    format!(
        r#"
[[port]]
name = "p0"
role = "protected"
addresses = ["{prot}", "{p6}"]
[[port]]
name = "p1"
role = "unprotected"
addresses = ["{l4}/24", "{l6}/64"]
[[sa]]
name = "out"
spi = 0x{spi_out}
direction = "out"
algorithm = "aes128gcm16"
key = "{key_out}"
salt = "0a0b0c0d"
local = "{local}"
remote = "{remote}"
udp_encap = {udp}
esn = {esn}
[[sa]]
name = "in"
spi = 0x{spi_in}
direction = "in"
algorithm = "aes128gcm16"
key = "{key_in}"
salt = "0a0b0c0d"
local = "{local}"
remote = "{remote}"
udp_encap = {udp}
esn = {esn}
replay_window = 64
[[policy]]
name = "nets"
src = "{local_net}"
dst = "{remote_net}"
action = "protect"
sa_out = "out"
sa_in = "in"
[[policy]]
name = "nets6"
src = "{l6net}"
dst = "{r6net}"
action = "protect"
sa_out = "out"
sa_in = "in"
"#,
        p6 = if me == "a" { "fd01::1/64" } else { "fd02::1/64" },
        l6net = if me == "a" { "fd01::/64" } else { "fd02::/64" },
        r6net = if me == "a" { "fd02::/64" } else { "fd01::/64" },
    )
}

pub fn pipeline(me: &str, udp: bool, v6_outer: bool, esn: bool) -> (Pipeline, Arc<WorkerCounters>) {
    let mut v = pipelines(me, udp, v6_outer, esn, 1);
    v.remove(0)
}

/// `n` workers of one gateway, built as the gateway builds them (outbound SAs share their
/// sequence counter, inbound SAs their anti-replay window), with the neighbours resolved.
pub fn pipelines(me: &str, udp: bool, v6_outer: bool, esn: bool, n: usize) -> Vec<(Pipeline, Arc<WorkerCounters>)> {
    pipelines_from(me, &gw_config(me, udp, v6_outer, esn), n)
}

/// As [`pipelines`], from configuration text (`gw_config`'s, changed).
pub fn pipelines_from(me: &str, conf: &str, n: usize) -> Vec<(Pipeline, Arc<WorkerCounters>)> {
    let cfg = Config::parse(conf).unwrap();
    assert_eq!(cfg.ports[0].role, Role::Protected);
    let macs = if me == "a" { [A_PROT, A_UNPROT] } else { [B_PROT, B_UNPROT] };
    let lcores: Vec<u32> = (0..n as u32).collect();
    let (host_ip, host6, peer4, peer6, host_mac, peer_mac) = if me == "a" {
        ("10.1.0.10", "fd01::10", "192.0.2.2", "2001:db8::2", HOST1, B_UNPROT)
    } else {
        ("10.2.0.10", "fd02::10", "192.0.2.1", "2001:db8::1", HOST2, A_UNPROT)
    };
    dataplane::gateway::build_pipelines(&cfg, &macs, &lcores, 1_000_000)
        .unwrap()
        .0
        .into_iter()
        .map(|mut p| {
            for (port, ip, mac) in
                [(0, host_ip, host_mac), (0, host6, host_mac), (1, peer4, peer_mac), (1, peer6, peer_mac)]
            {
                p.set_neighbor(Neighbor { port, ip: ip.parse().unwrap(), mac });
            }
            let c = p.counters().clone();
            (p, c)
        })
        .collect()
}
