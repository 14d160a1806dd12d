#!/usr/bin/env python3
"""The dataplane binary on net_pcap ports, checked by scapy's ESP (an implementation we did
not write) and by tshark's ESP dissector.

Outbound: a pcap of plaintext frames goes in on the protected port; the ESP frames written on
the unprotected port must decrypt (scapy, and tshark with the SA keys) to exactly the input
packets, one hop further (TTL - 1). Inbound: scapy encrypts the same packets; the dataplane
must write exactly those packets, decrypted and one hop further, on the protected port.

usage: pcap_roundtrip.py DATAPLANE_BINARY
"""
import os
import subprocess
import sys
import tempfile

from scapy.all import Ether, IP, IPv6, UDP, TCP, ICMP, Raw, rdpcap, wrpcap
from scapy.layers.ipsec import ESP, SecurityAssociation

GW_PROT_MAC = "02:00:00:aa:00:01"
GW_UNPROT_MAC = "02:00:00:aa:00:02"
HOST_MAC = "02:00:00:11:00:01"
PEER_MAC = "02:00:00:bb:00:02"
ENDPOINTS = {False: ("10.77.0.1", "10.77.0.2"), True: ("2001:db8:77::1", "2001:db8:77::2")}
KEY_OUT, SALT_OUT = bytes.fromhex("00112233445566778899aabbccddeeff"), bytes.fromhex("0a0b0c0d")
KEY_IN, SALT_IN = bytes.fromhex("1f1e1d1c1b1a19181716151413121110" * 2), bytes.fromhex("01020304")
SPI_OUT, SPI_IN = 0x1001, 0x2001

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def config(d, rx_prot, rx_unprot, udp, v6):
    LOCAL, REMOTE = ENDPOINTS[v6]
    plen = 64 if v6 else 24
    return f"""
[eal]
args = ["--no-huge", "-m", "256", "--no-pci", "-l", "0", "--file-prefix", "pcaptest{os.getpid()}",
        "--vdev=net_pcap0,rx_pcap={rx_prot},tx_pcap={d}/prot_out.pcap",
        "--vdev=net_pcap1,rx_pcap={rx_unprot},tx_pcap={d}/unprot_out.pcap"]

[[port]]
name = "net_pcap0"
role = "protected"
mac = "{GW_PROT_MAC}"
addresses = ["10.1.0.1/24", "fd01::1/64"]
tap = "pcaptap0"

[[port]]
name = "net_pcap1"
role = "unprotected"
mac = "{GW_UNPROT_MAC}"
addresses = ["{LOCAL}/{plen}"]
tap = "pcaptap1"
mtu = 1600

[[neighbor]]
ip = "{REMOTE}"
mac = "{PEER_MAC}"
port = "net_pcap1"

[[neighbor]]
ip = "10.1.0.10"
mac = "{HOST_MAC}"
port = "net_pcap0"

[[neighbor]]
ip = "fd01::10"
mac = "{HOST_MAC}"
port = "net_pcap0"

[[sa]]
name = "out"
spi = {SPI_OUT}
direction = "out"
algorithm = "aes128gcm16"
key = "{KEY_OUT.hex()}"
salt = "{SALT_OUT.hex()}"
local = "{LOCAL}"
remote = "{REMOTE}"
udp_encap = {str(udp).lower()}

[[sa]]
name = "in"
spi = {SPI_IN}
direction = "in"
algorithm = "aes256gcm16"
key = "{KEY_IN.hex()}"
salt = "{SALT_IN.hex()}"
local = "{LOCAL}"
remote = "{REMOTE}"
udp_encap = {str(udp).lower()}
esn = true

[[policy]]
name = "v4"
src = "10.1.0.0/24"
dst = "10.2.0.0/24"
action = "protect"
sa_out = "out"
sa_in = "in"

[[policy]]
name = "v6"
src = "fd01::/64"
dst = "fd02::/64"
action = "protect"
sa_out = "out"
sa_in = "in"
"""


def inner_packets():
    pkts = []
    for n in range(0, 40):
        size = 1 + n * 37 % 1300
        if n % 3 == 0:
            p = IP(src="10.1.0.10", dst="10.2.0.%d" % (10 + n % 5), ttl=64) / UDP(sport=1000 + n, dport=9999) / Raw((bytes(range(256)) * 6)[:size])
        elif n % 3 == 1:
            p = IP(src="10.1.0.10", dst="10.2.0.10", ttl=17) / TCP(sport=40000, dport=443, flags="PA", seq=n) / Raw(b"x" * size)
        else:
            p = IPv6(src="fd01::10", dst="fd02::10", hlim=9) / UDP(sport=5000, dport=6000) / Raw(b"\x5a" * size)
        pkts.append(p.__class__(bytes(p)))  # freeze checksums and lengths
    return pkts


def one_hop(p):
    q = p.copy()
    if IP in q:
        q[IP].ttl -= 1
        del q[IP].chksum
    else:
        q[IPv6].hlim -= 1
    return bytes(q.__class__(bytes(q)))


def run_dataplane(binary, d, cfg_text):
    path = os.path.join(d, "gw.toml")
    with open(path, "w") as f:
        f.write(cfg_text)
    r = subprocess.run([binary, "run", "--config", path, "--run-for", "3", "--json"], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
    check(r.returncode == 0, "dataplane exit status")
    import json
    try:
        return json.loads(r.stdout[r.stdout.index("{"):])
    except ValueError:
        print(r.stdout, r.stderr)
        return {}


def tshark_inner(pcap, udp, v6):
    """Inner IPv4/IPv6 sources tshark finds after decrypting with our SA keys."""
    LOCAL, REMOTE = ENDPOINTS[v6]
    sa = f'"{"IPv6" if v6 else "IPv4"}","{LOCAL}","{REMOTE}","{hex(SPI_OUT)}","AES-GCM with 16 octet ICV [RFC4106]","0x{(KEY_OUT + SALT_OUT).hex()}","NULL",""'
    args = ["tshark", "-r", pcap, "-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE",
            "-o", f"uat:esp_sa:{sa}", "-Y", "esp", "-T", "fields", "-e", "esp.sequence", "-e", "ip.src", "-e", "ipv6.src", "-e", "esp.icv_good"]
    if udp:
        args[3:3] = ["-o", "udp.try_heuristic_first:TRUE"]
        args += ["-d", "udp.port==4500,udpencap"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    return r.stdout.strip().splitlines(), r.stderr


def main():
    binary = sys.argv[1]
    for udp, v6 in ((False, False), (True, False), (False, True), (True, True)):
        LOCAL, REMOTE = ENDPOINTS[v6]
        OuterIP = IPv6 if v6 else IP
        what = f"udp={udp} outer={'IPv6' if v6 else 'IPv4'}"
        with tempfile.TemporaryDirectory() as d:
            pkts = inner_packets()
            plain = os.path.join(d, "plain.pcap")
            wrpcap(plain, [Ether(dst=GW_PROT_MAC, src=HOST_MAC) / p for p in pkts])
            empty = os.path.join(d, "empty.pcap")
            wrpcap(empty, [])

            # Outbound: plaintext in, ESP out.
            stats = run_dataplane(binary, d, config(d, plain, empty, udp, v6))
            out = rdpcap(os.path.join(d, "unprot_out.pcap"))
            def outer_is_esp(f):
                if v6:
                    return f.type == 0x86DD and (f[IPv6].nh == 50 or (f[IPv6].nh == 17 and f[UDP].dport == 4500))
                return f.type == 0x0800 and (f[IP].proto == 50 or (f[IP].proto == 17 and f[UDP].dport == 4500))
            esp_frames = [f for f in out if outer_is_esp(f)]
            check(len(esp_frames) == len(pkts), f"{what}: {len(esp_frames)} ESP frames for {len(pkts)} packets")
            sa_out = SecurityAssociation(ESP, spi=SPI_OUT, crypt_algo="AES-GCM", crypt_key=KEY_OUT + SALT_OUT, auth_algo="NULL",
                                         tunnel_header=OuterIP(src=LOCAL, dst=REMOTE),
                                         nat_t_header=UDP(sport=4500, dport=4500) if udp else None)
            for i, (f, p) in enumerate(zip(esp_frames, pkts)):
                check(f.dst == PEER_MAC and f.src == GW_UNPROT_MAC, f"frame {i} MACs")
                check(f[OuterIP].src == LOCAL and f[OuterIP].dst == REMOTE, f"{what} frame {i} outer addresses")
                check(ESP in f and f[ESP].spi == SPI_OUT and f[ESP].seq == i + 1, f"frame {i} SPI/seq")
                try:
                    inner = sa_out.decrypt(f[OuterIP])
                    check(bytes(inner) == one_hop(p), f"{what} frame {i}: scapy decrypts to the input, one hop on")
                except Exception as e:  # noqa: BLE001 - any failure is a test failure
                    check(False, f"{what} frame {i}: scapy could not decrypt: {e!r}")
            lines, err = tshark_inner(os.path.join(d, "unprot_out.pcap"), udp, v6)
            good = [l for l in lines if l.strip()]
            check(len(good) == len(pkts), f"tshark sees {len(good)} ESP packets, want {len(pkts)}")
            check(all(l.rstrip().endswith("1") or "True" in l for l in good), "tshark finds every ICV good")
            inner_src = sum(1 for l in good if "10.1.0.10" in l or "fd01::10" in l)
            check(inner_src == len(pkts), f"tshark decrypted {inner_src}/{len(pkts)} inner packets")
            check(stats.get("drops", []) == [], f"no drops outbound: {stats.get('drops')}")
            # The ports' own counters (rte_eth_stats) in the dataplane's summary: every frame of
            # the pcap received, every ESP frame sent, nothing lost by a port.
            ports = {p["name"]: p for p in stats.get("ports", [])}
            prot, unprot = ports.get("net_pcap0", {}), ports.get("net_pcap1", {})
            check(prot.get("role") == "protected" and prot.get("rx") == len(pkts),
                  f"{what}: protected port counted {prot.get('rx')} frames received, want {len(pkts)}")
            check(unprot.get("role") == "unprotected" and unprot.get("tx", 0) >= len(esp_frames),
                  f"{what}: unprotected port counted {unprot.get('tx')} frames sent, want {len(esp_frames)} or more")
            lost = {n: p for n, p in ports.items()
                    if any(p.get(k) for k in ("rx_missed", "rx_errors", "rx_nombuf", "tx_errors"))}
            check(not lost, f"{what}: no port lost a frame: {lost}")

            # Inbound: scapy encrypts, we decrypt.
            sa_in = SecurityAssociation(ESP, spi=SPI_IN, crypt_algo="AES-GCM", crypt_key=KEY_IN + SALT_IN, auth_algo="NULL",
                                        tunnel_header=OuterIP(src=REMOTE, dst=LOCAL), esn_en=True, esn=0,
                                        nat_t_header=UDP(sport=4500, dport=4500) if udp else None)
            back = [IP(bytes(p)) if IP in p else IPv6(bytes(p)) for p in pkts]
            back = [p.__class__(bytes(p)) for p in back]
            # Reverse direction: swap addresses so the inbound policy (mirrored) matches.
            rev = []
            for p in back:
                q = p.copy()
                if IP in q:
                    q[IP].src, q[IP].dst = q[IP].dst, "10.1.0.10"
                    del q[IP].chksum
                else:
                    q[IPv6].src, q[IPv6].dst = q[IPv6].dst, "fd01::10"
                if UDP in q:
                    del q[UDP].chksum
                if TCP in q:
                    del q[TCP].chksum
                rev.append(q.__class__(bytes(q)))
            enc = []
            for n, p in enumerate(rev):
                e = sa_in.encrypt(p, seq_num=n + 1)
                enc.append(Ether(dst=GW_UNPROT_MAC, src=PEER_MAC) / e)
            esp_in = os.path.join(d, "esp_in.pcap")
            wrpcap(esp_in, enc)
            stats = run_dataplane(binary, d, config(d, empty, esp_in, udp, v6))
            got = rdpcap(os.path.join(d, "prot_out.pcap"))
            got = [f for f in got if f.type in (0x0800, 0x86DD) and f.dst == HOST_MAC]
            check(len(got) == len(rev), f"{what}: {len(got)} decrypted frames for {len(rev)}")
            for i, (f, p) in enumerate(zip(got, rev)):
                check(bytes(f.payload) == one_hop(p), f"{what} inbound frame {i} equals scapy's input, one hop on")
                check(f.src == GW_PROT_MAC, f"inbound frame {i} source MAC")
            check(stats.get("drops", []) == [], f"no drops inbound: {stats.get('drops')}")
            sas = {s["name"]: s for s in stats.get("sas", [])}
            check(sas.get("in", {}).get("packets") == len(rev), f"SA 'in' counted {sas.get('in')}")

    print(f"pcap roundtrip: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
