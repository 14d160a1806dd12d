#!/usr/bin/env python3
"""Interop of the `esp` crate with scapy's independent ESP (scapy.layers.ipsec), both ways.

For every combination of outer IPv4/IPv6 x inner IPv4/IPv6 x UDP encapsulation (RFC 3948) on/off
x ESN on/off x AES-128/256-GCM (RFC 4106, 16-octet ICV):
  (a) scapy encrypts inner ICMP/UDP/TCP packets whose lengths hit every padding value 0..3, our
      esp_tool decrypts them (classify + InboundSa::decapsulate) and must return the original bytes;
  (b) esp_tool encrypts, scapy decrypts to the original bytes; scapy's dissection of our outer
      headers is checked field by field (version, protocol, lengths, IPv4 header checksum, UDP
      ports and checksum, SPI, sequence number), and so are the ESP trailer and IV;
  (c) negatives on our side: flipped ciphertext / ICV / IV / sequence-number byte -> AuthFailed,
      and the untampered packet is still accepted afterwards (a failed ICV must not move the
      window), a replayed packet -> ReplayDuplicate, a packet left of the window -> ReplayTooOld
      (with ESN too, see below), a wrong key -> AuthFailed; and on scapy's side our ESN
      packets do not verify with the high half left out of the AAD.

Scapy quirks handled here (scapy 2.5/2.6, scapy/layers/ipsec.py):
  * ESN: scapy's AAD with esn_en is SPI || esn || seq (RFC 4106 section 5), with `esn` the high
    32 bits passed separately and `seq` the 32-bit ESP field, so a 64-bit number is split by hand.
    Both `seq_num` and `esn` are taken with `x or default`, so 0 means "the SA's value": this
    script never passes 0 for either and builds a separate SA when it wants esn = 0.
  * scapy's decrypt does not check the padding bytes (RFC 4303 2.4) and, in tunnel mode, returns
    only the inner packet, so the trailer (pad length, padding 1,2,3..., next header) of our
    packets is checked here on the _ESPPlain from the crypt algorithm's own decrypt.
  * scapy writes a zero UDP checksum under NAT-T even over IPv6 (RFC 8200 forbids that); we do
    not verify UDP checksums on receive, so its packets pass. Ours must carry a valid one.
  * Our receiver starts its window at 0; with ESN it infers the high half from the window
    (RFC 4303 A2.2), so to make scapy's packets with a high half H authenticate, each ESN request
    first sends "priming" packets that walk the window up one subspace at a time:
    seq k*2^32 + 2^31, then (k+1)*2^32 + 1, for k < H.

Prints one line per failing case and ends with "scapy interop: N passed, M failed"; exits 1 on any
failure. Set ESP_TOOL to a built esp_tool binary to skip `cargo run`.
"""

import itertools
import json
import logging
import os
import random
import shlex
import struct
import subprocess
import sys
from pathlib import Path

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6, ICMPv6EchoRequest  # noqa: E402
from scapy.layers.ipsec import ESP, IPSecIntegrityError, SecurityAssociation  # noqa: E402
from scapy.utils import checksum  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
SPI = 0x1234_5678
OUR4, PEER4 = "192.0.2.1", "198.51.100.2"
OUR6, PEER6 = "2001:db8::1", "2001:db8:ffff::2"
IN4_SRC, IN4_DST = "10.1.0.5", "10.2.0.7"
IN6_SRC, IN6_DST = "fd00:1::5", "fd00:2::7"
WINDOW = 64
NAT_T = 4500
# Payload lengths: four consecutive ones per protocol, so (inner length + 2) % 4 takes every
# value and the ESP padding every length 0..3; plus one near-MTU packet.
PAYLOAD_LENS = {"icmp": [0, 1, 2, 3], "udp": [29, 30, 31, 32], "tcp": [1000, 1001, 1002, 1003]}
BIG = ("udp", 1400)
# Inner TOS / traffic class values: DSCP EF, ECT(0), CE, none. The outer header copies them
# (RFC 4301 5.1.2, RFC 6040 normal mode).
TOS_VALUES = [0x00, 0xB8, 0x02, 0x03]

passed = 0
failed = 0


def report(ok, name, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name}: {detail}", flush=True)


class Tool:
    """One esp_tool process, one JSON line out, one back."""

    def __init__(self):
        cmd = shlex.split(os.environ["ESP_TOOL"]) if os.environ.get("ESP_TOOL") else [
            "cargo", "run", "-q", "-p", "esp", "--example", "esp_tool"]
        self.p = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self, req):
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("esp_tool exited")
        return json.loads(line)

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=10)


def inner_packet(ver, proto, plen, tos, df, rng):
    payload = bytes(rng.getrandbits(8) for _ in range(plen))
    if ver == 4:
        ip = IP(src=IN4_SRC, dst=IN4_DST, tos=tos, flags="DF" if df else 0, id=rng.getrandbits(16))
        l4 = {"icmp": ICMP(type=8, id=7, seq=rng.getrandbits(16)),
              "udp": UDP(sport=rng.getrandbits(16) | 1024, dport=53),
              "tcp": TCP(sport=40000, dport=443, flags="PA", seq=rng.getrandbits(32))}[proto]
    else:
        ip = IPv6(src=IN6_SRC, dst=IN6_DST, tc=tos, fl=rng.getrandbits(20))
        l4 = {"icmp": ICMPv6EchoRequest(id=7, seq=rng.getrandbits(16)),
              "udp": UDP(sport=rng.getrandbits(16) | 1024, dport=53),
              "tcp": TCP(sport=40000, dport=443, flags="PA", seq=rng.getrandbits(32))}[proto]
    if proto == "icmp" and ver == 6:
        return bytes(ip / ICMPv6EchoRequest(id=7, seq=l4.seq, data=payload))
    return bytes(ip / l4 / payload)


def diff(got, want):
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return f"{len(got)} bytes vs {len(want)} expected, first difference at offset {at}"


def pad_len(n):
    return (-(n + 2)) % 4


class Combo:
    def __init__(self, outer, inner, udp, esn, klen, rng):
        self.outer, self.inner, self.udp, self.esn, self.klen = outer, inner, udp, esn, klen
        self.name = f"outer=v{outer} inner=v{inner} udp={int(udp)} esn={int(esn)} aes{klen * 8}"
        self.key = bytes(rng.getrandbits(8) for _ in range(klen))
        self.salt = bytes(rng.getrandbits(8) for _ in range(4))
        self.our, self.peer = (OUR4, PEER4) if outer == 4 else (OUR6, PEER6)
        # High half of the ESN sequence numbers: 1 for AES-128, 2 for AES-256 combos.
        self.high = (1 if klen == 16 else 2) if esn else 0

    def req(self, op, key=None, **kw):
        r = {"op": op, "spi": SPI, "key": (key or self.key).hex(), "salt": self.salt.hex(),
             "local": self.our, "remote": self.peer, "udp": self.udp, "esn": self.esn}
        r.update(kw)
        return r

    def scapy_sa(self, key=None, esn_high=None, sending=True):
        """A scapy SA for traffic peer -> us (sending) or us -> peer."""
        src, dst = (self.peer, self.our) if sending else (self.our, self.peer)
        hdr = IP(src=src, dst=dst) if self.outer == 4 else IPv6(src=src, dst=dst)
        return SecurityAssociation(
            ESP, spi=SPI, crypt_algo="AES-GCM", crypt_key=(key or self.key) + self.salt, auth_algo="NULL",
            tunnel_header=hdr, nat_t_header=UDP(sport=NAT_T, dport=NAT_T) if self.udp else None,
            esn_en=self.esn, esn=self.high if esn_high is None else esn_high)

    def scapy_encrypt(self, sa, inner, seq):
        """scapy's outer packet for a 64-bit sequence number (see the ESN quirk above)."""
        assert seq & 0xFFFF_FFFF, "scapy treats seq_num 0 as unset"
        cls = IP if self.inner == 4 else IPv6
        kw = {"esn": seq >> 32} if self.esn and seq >> 32 else {}
        if not self.esn:
            assert seq >> 32 == 0
        elif seq >> 32 == 0:
            kw = {"esn": 0}
            sa = SecurityAssociation(ESP, spi=sa.spi, crypt_algo="AES-GCM", crypt_key=sa.crypt_key + sa.crypt_salt,
                                     auth_algo="NULL", tunnel_header=sa.tunnel_header,
                                     nat_t_header=sa.nat_t_header, esn_en=True, esn=0)
        return bytes(sa.encrypt(cls(inner), seq_num=seq & 0xFFFF_FFFF, **kw))

    def priming_seqs(self):
        seqs = []
        for k in range(self.high):
            seqs += [(k << 32) | 0x8000_0000, ((k + 1) << 32) | 1]
        return seqs


def esp_offset(c):
    return (20 if c.outer == 4 else 40) + (8 if c.udp else 0)


def flip(pkt, at):
    b = bytearray(pkt)
    b[at] ^= 0x40
    return bytes(b)


def inners_for(c, rng):
    out = []
    for i, (proto, plen) in enumerate([(p, n) for p, ns in PAYLOAD_LENS.items() for n in ns] + [BIG]):
        tos = TOS_VALUES[i % len(TOS_VALUES)]
        df = i % 2 == 0
        out.append((f"{proto}/{plen}", inner_packet(c.inner, proto, plen, tos, df, rng), tos, df))
    return out


def scapy_to_us(tool, c, inners, rng):
    """(a) and (c): scapy encrypts, our tool decrypts."""
    sa = c.scapy_sa()
    base = (c.high << 32) | 0x100
    prime = c.priming_seqs()
    filler = inner_packet(c.inner, "udp", 8, 0, False, rng)
    pkts = [c.scapy_encrypt(sa, filler, s) for s in prime]
    expect = [("prime", s, filler, None) for s in prime]
    for i, (label, inner, _tos, _df) in enumerate(inners):
        pkts.append(c.scapy_encrypt(sa, inner, base + i))
        expect.append((label, base + i, inner, None))
    n = len(inners)
    # Negatives, in this order, through the same inbound SA:
    probe_seq = base + n + 1
    probe = c.scapy_encrypt(sa, inners[0][1], probe_seq)
    off = esp_offset(c)
    tampered = [
        ("flipped ciphertext byte", flip(probe, off + 16 + 5)),
        ("flipped last ciphertext byte (next header)", flip(probe, len(probe) - 17)),
        ("flipped ICV byte", flip(probe, len(probe) - 1)),
        ("flipped IV byte", flip(probe, off + 8)),
        # seq ^ 0x40 on the lowest byte: still unseen and in or right of the window, so it reaches
        # the ICV check, where the AAD no longer matches.
        ("flipped sequence number byte", flip(probe, off + 7)),
    ]
    for label, t in tampered:
        pkts.append(t)
        expect.append((label, probe_seq, None, "AuthFailed"))
    pkts.append(probe)
    expect.append(("untampered after tampered copies", probe_seq, inners[0][1], None))
    pkts.append(probe)
    expect.append(("replay of the last packet", probe_seq, None, "ReplayDuplicate"))
    pkts.append(pkts[len(prime)])
    expect.append(("replay of an earlier packet inside the window", base, None, "ReplayDuplicate"))
    old_seq = (c.high << 32) | 0x20
    pkts.append(c.scapy_encrypt(sa, inners[0][1], old_seq))
    # A number left of the window is too old, with ESN too: RFC 4303 A2.2 case A would read its
    # low half as the next subspace (high + 1) and fail the ICV, but a packet that this would
    # put more than 3 * 2^30 ahead is taken as a late one (ReplayWindow::infer).
    expect.append(("left of the window", old_seq, None, "ReplayTooOld"))

    ans = tool(c.req("decap", window=WINDOW, packets=[p.hex() for p in pkts]))
    if not ans.get("ok"):
        report(False, f"{c.name} scapy->us", f"tool: {ans}")
        return
    res = ans["results"]
    if len(res) != len(pkts):
        report(False, f"{c.name} scapy->us", f"{len(res)} results for {len(pkts)} packets")
        return
    for (label, seq, inner, err), r in zip(expect, res):
        name = f"{c.name} scapy->us {label} seq={seq:#x}"
        if err is not None:
            report(not r["ok"] and r["error"] == err, name, f"expected {err}, got {r}")
            continue
        if not r["ok"]:
            report(False, name, f"rejected: {r['error']}")
            continue
        got = bytes.fromhex(r["inner"])
        problems = []
        if got != inner:
            problems.append(f"inner differs: {diff(got, inner)}")
        if r["seq"] != seq:
            problems.append(f"authenticated seq {r['seq']:#x}, want {seq:#x}")
        if r["version"] != c.inner:
            problems.append(f"inner version {r['version']}")
        if label == "prime":
            # Priming packets are preconditions, counted only when they fail.
            if problems:
                report(False, name, "; ".join(problems))
            continue
        report(not problems, name, "; ".join(problems))

    # Wrong key: the same SA parameters with one key bit different. The receiver's window is
    # primed with packets under its own (wrong) key first, so under ESN the failure cannot come
    # from an uninferred high half.
    wrong = bytes([c.key[0] ^ 0x01]) + c.key[1:]
    wsa = c.scapy_sa(key=wrong)
    wpkts = [c.scapy_encrypt(wsa, filler, s) for s in prime + [base]]
    wpkts.append(c.scapy_encrypt(sa, inners[1][1], base + 1))
    ans = tool(c.req("decap", key=wrong, window=WINDOW, packets=[p.hex() for p in wpkts]))
    res = [r.get("error", "ok") if not r.get("ok") else "ok" for r in ans.get("results", [])]
    want = ["ok"] * (len(prime) + 1) + ["AuthFailed"]
    report(res == want, f"{c.name} scapy->us wrong key", f"expected {want}, got {res}")


def check_outer(c, o, seq, inner, tos, df):
    """Our outer packet, as scapy reads it. Returns a list of problems."""
    problems = []
    cls = IP if c.outer == 4 else IPv6
    if o[0] >> 4 != c.outer:
        return [f"outer version nibble {o[0] >> 4}"]
    p = cls(o)
    proto = 17 if c.udp else 50
    want_tos = tos
    if c.outer == 4:
        if p.ihl != 5 or p.len != len(o) or p.proto != proto:
            problems.append(f"IPv4 ihl={p.ihl} len={p.len} (have {len(o)}) proto={p.proto}")
        if checksum(o[:20]) != 0:
            problems.append("IPv4 header checksum invalid")
        if p.src != c.our or p.dst != c.peer or p.ttl != 64:
            problems.append(f"IPv4 src={p.src} dst={p.dst} ttl={p.ttl}")
        if p.frag != 0 or p.flags.MF:
            problems.append("outer IPv4 is a fragment")
        # RFC 4301 5.1.2: DF copied from an IPv4 inner header (an IPv6 inner one has none).
        want_df = df if c.inner == 4 else False
        if bool(p.flags.DF) != want_df:
            problems.append(f"DF={bool(p.flags.DF)} want {want_df}")
        if p.tos != want_tos:
            problems.append(f"tos {p.tos:#x} want {want_tos:#x}")
        hl = 20
    else:
        if p.plen != len(o) - 40 or p.nh != proto or p.hlim != 64:
            problems.append(f"IPv6 plen={p.plen} (have {len(o) - 40}) nh={p.nh} hlim={p.hlim}")
        if p.src != c.our or p.dst != c.peer:
            problems.append(f"IPv6 src={p.src} dst={p.dst}")
        if p.tc != want_tos:
            problems.append(f"traffic class {p.tc:#x} want {want_tos:#x}")
        hl = 40
    if c.udp:
        if UDP not in p:
            return problems + ["no UDP layer"]
        u = p[UDP]
        if u.sport != NAT_T or u.dport != NAT_T or u.len != len(o) - hl:
            problems.append(f"UDP sport={u.sport} dport={u.dport} len={u.len} (have {len(o) - hl})")
        q = p.copy()
        q[UDP].chksum = None
        good = cls(bytes(q))[UDP].chksum
        if c.outer == 6:
            # RFC 8200 8.1: mandatory over IPv6.
            if u.chksum == 0 or u.chksum != good:
                problems.append(f"UDP checksum {u.chksum:#06x}, want {good:#06x}")
        elif u.chksum not in (0, good):
            # RFC 3948 2.1: zero is allowed over IPv4.
            problems.append(f"UDP checksum {u.chksum:#06x} neither 0 nor {good:#06x}")
    if ESP not in p:
        return problems + ["scapy finds no ESP layer"]
    e = p[ESP]
    if e.spi != SPI or e.seq != seq & 0xFFFF_FFFF:
        problems.append(f"ESP spi={e.spi:#x} seq={e.seq:#x}, want {SPI:#x} {seq & 0xFFFF_FFFF:#x}")
    want_len = 8 + 8 + len(inner) + pad_len(len(inner)) + 2 + 16
    if len(o) - hl - (8 if c.udp else 0) != want_len:
        problems.append(f"ESP length {len(o) - hl - (8 if c.udp else 0)}, want {want_len}")
    return problems


def us_to_scapy(tool, c, inners):
    """(b): our tool encrypts, scapy decrypts."""
    sa = c.scapy_sa(sending=False)
    for i, (label, inner, tos, df) in enumerate(inners):
        seq = (c.high << 32) | ((1 + i * 0x0100_0193) & 0xFFFF_FFFF)
        name = f"{c.name} us->scapy {label} seq={seq:#x}"
        ans = tool(c.req("encap", seq=seq, packet=inner.hex()))
        if not ans.get("ok"):
            report(False, name, f"encap failed: {ans}")
            continue
        o = bytes.fromhex(ans["packet"])
        problems = check_outer(c, o, seq, inner, tos, df)
        cls = IP if c.outer == 4 else IPv6
        try:
            dec = sa.decrypt(cls(o))
            if bytes(dec) != inner:
                problems.append(f"scapy's inner differs: {diff(bytes(dec), inner)}")
        except IPSecIntegrityError as ex:
            problems.append(f"scapy: integrity check failed: {ex}")
        # The trailer, which scapy's decrypt does not check.
        try:
            plain = sa.crypt_algo.decrypt(sa, cls(o)[ESP], sa.crypt_key, 16, esn_en=c.esn, esn=c.high or None)
            if bytes(plain.data) != inner:
                problems.append("ESP payload differs from the inner packet")
            if plain.padlen != pad_len(len(inner)) or plain.padding != bytes(range(1, plain.padlen + 1)):
                problems.append(f"padding {plain.padding.hex()} padlen {plain.padlen}, want {pad_len(len(inner))}")
            if plain.nh != (4 if c.inner == 4 else 41):
                problems.append(f"next header {plain.nh}")
            if plain.iv != struct.pack("!Q", seq):
                problems.append(f"IV {plain.iv.hex()} is not the sequence number")
        except IPSecIntegrityError as ex:
            problems.append(f"crypt_algo.decrypt: {ex}")
        if c.esn:
            # The high half must be in the AAD: with it left at 0, scapy must refuse the packet.
            sa0 = SecurityAssociation(ESP, spi=SPI, crypt_algo="AES-GCM", crypt_key=c.key + c.salt,
                                      auth_algo="NULL", tunnel_header=sa.tunnel_header,
                                      nat_t_header=sa.nat_t_header, esn_en=True, esn=0)
            try:
                sa0.decrypt(cls(o))
                problems.append("scapy accepted the packet with the ESN high half 0")
            except IPSecIntegrityError:
                pass
        report(not problems, name, "; ".join(problems))

    # Scapy with a wrong key refuses our packet.
    wrong = bytes([c.key[0] ^ 0x01]) + c.key[1:]
    wsa = c.scapy_sa(key=wrong, sending=False)
    ans = tool(c.req("encap", seq=(c.high << 32) | 77, packet=inners[0][1].hex()))
    cls = IP if c.outer == 4 else IPv6
    try:
        wsa.decrypt(cls(bytes.fromhex(ans["packet"])))
        report(False, f"{c.name} us->scapy wrong key", "scapy accepted it")
    except IPSecIntegrityError:
        report(True, "")


def main():
    rng = random.Random(4303)
    tool = Tool()
    try:
        for outer, inner, udp, esn, klen in itertools.product([4, 6], [4, 6], [False, True], [False, True], [16, 32]):
            c = Combo(outer, inner, udp, esn, klen, rng)
            inners = inners_for(c, rng)
            scapy_to_us(tool, c, inners, rng)
            us_to_scapy(tool, c, inners)
        # The tool's own edges: a non-ESN SA refuses a sequence number past 2^32 - 1
        # (RFC 4303 3.3.3), an ESN one takes it.
        c = Combo(4, 4, False, False, 16, rng)
        pkt = inner_packet(4, "udp", 10, 0, False, rng)
        ans = tool(c.req("encap", seq=1 << 32, packet=pkt.hex()))
        report(ans == {"ok": False, "error": "SeqExhausted"}, "non-ESN seq 2^32 refused", str(ans))
        ans = tool(c.req("encap", esn=True, seq=1 << 32, packet=pkt.hex()))
        report(ans.get("ok") is True, "ESN seq 2^32 accepted", str(ans))
    finally:
        tool.close()
    print(f"scapy interop: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
