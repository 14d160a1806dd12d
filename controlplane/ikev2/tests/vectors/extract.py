#!/usr/bin/env python3
"""Turns a pcap of IKEv2 traffic (capture.sh) into hex vector files.

Usage: extract.py CAP.pcap INITIATOR_CHARON_LOG SCENARIO OUTDIR

Each distinct UDP payload (retransmissions dropped) becomes OUTDIR/SCENARIO_NN_EXCHANGE_ROLE.txt.
The 4-byte non-ESP marker of port 4500 (RFC 3948) is removed. Messages whose last payload is SK (46)
are decrypted with the Sk_ei/Sk_er keys the initiator's charon logged at `ike = 4` (AES-GCM with a
16-byte ICV, RFC 5282: key|salt, 8-byte IV, AAD = the message up to the IV) and their inner payload
chain (padding and pad length removed) goes to the same name with .inner.txt.
This script is an independent reading of the format: it is not the Rust codec under test.
"""
import re
import struct
import sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

EXCHANGES = {34: "ike_sa_init", 35: "ike_auth", 36: "create_child_sa", 37: "informational"}


def udp_payloads(path):
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    assert linktype == 1, "expected Ethernet captures"
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if struct.unpack(">H", frame[12:14])[0] != 0x0800:
            continue
        ip = frame[14:]
        ihl = (ip[0] & 15) * 4
        if ip[9] != 17:
            continue
        src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
        udp = ip[ihl:]
        sport, dport, ulen = struct.unpack(">HHH", udp[:6])
        yield src, sport, dst, dport, udp[8:ulen]


def keys(log):
    """Sk_ei and Sk_er as logged by keymat_v2 at ike level 4 (a %B hex dump)."""
    found, cur, want = {}, None, 0
    for line in open(log, errors="replace"):
        m = re.search(r"(Sk_e[ir]) secret => (\d+) bytes", line)
        if m:
            cur, want = m.group(1), int(m.group(2))
            found[cur] = b""
            continue
        if cur:
            m = re.search(r"\]\s+\d+: ((?:[0-9A-F]{2} ){1,16})", line)
            if m and len(found[cur]) < want:
                found[cur] += bytes.fromhex(m.group(1).replace(" ", ""))
                if len(found[cur]) == want:
                    cur = None
            else:
                cur = None
    return found


def sk_payload(msg):
    """(offset of the SK body, first inner type) if the chain ends in SK, else None."""
    nxt, off = msg[16], 28
    while nxt != 0:
        if off + 4 > len(msg):
            return None
        this = nxt
        nxt, plen = msg[off], struct.unpack(">H", msg[off + 2:off + 4])[0]
        if this == 46:
            return off + 4, nxt
        off += plen
    return None


def hexlines(b):
    return "\n".join(b[i:i + 32].hex() for i in range(0, len(b), 32))


def main():
    cap, log, scen, out = sys.argv[1:5]
    k = keys(log)
    seen, n = set(), 0
    for src, sport, dst, dport, p in udp_payloads(cap):
        marker = ""
        if 4500 in (sport, dport):
            if p[:4] != b"\0\0\0\0":
                continue  # ESP, not IKE
            p, marker = p[4:], " (non-ESP marker removed)"
        if p in seen or len(p) < 28:
            continue
        seen.add(p)
        n += 1
        exch, flags = p[18], p[19]
        role = "resp" if flags & 0x20 else "req"
        name = f"{scen}_{n:02d}_{EXCHANGES.get(exch, str(exch))}_{role}"
        head = (f"# strongSwan 5.9.8 (charon, kernel-libipsec) scenario '{scen}', message {n}: "
                f"{EXCHANGES.get(exch, exch)} {'response' if role == 'resp' else 'request'}\n"
                f"# {src}:{sport} -> {dst}:{dport}{marker}; SPIi {p[0:8].hex()} SPIr {p[8:16].hex()} "
                f"msgid {struct.unpack('>I', p[20:24])[0]}\n"
                "# made by tests/vectors/capture.sh (two charons in network namespaces), UDP payload in hex\n")
        open(f"{out}/{name}.txt", "w").write(head + hexlines(p) + "\n")
        print(name, len(p))
        sk = sk_payload(p)
        if sk is None:
            continue
        body, first = sk
        key = k.get("Sk_ei" if flags & 0x08 else "Sk_er")
        if key is None:
            print("  no key logged, not decrypted")
            continue
        iv, ct = p[body:body + 8], p[body + 8:]
        pt = AESGCM(key[:-4]).decrypt(key[-4:] + iv, ct, p[:body])
        inner = pt[:len(pt) - pt[-1] - 1]
        open(f"{out}/{name}.inner.txt", "w").write(
            f"# inner payload chain of {name}.txt (first inner payload type {first}), decrypted by\n"
            "# tests/vectors/extract.py with the AES-GCM key charon logged (ike = 4); padding removed\n"
            + hexlines(inner) + "\n")
        print("  inner", len(inner), "first", first)


main()
