#!/usr/bin/env python3
"""Independent reference values for the ikev2 crate's key derivation and SK payload code.

Everything here is computed from the formulas of the RFCs with Python's own
hmac/hashlib and the `cryptography` package (OpenSSL), not from the Rust code:

  prf+                    RFC 7296 2.13
  SKEYSEED, IKE SA keys   RFC 7296 2.14
  rekeyed IKE SA keys     RFC 7296 2.18 (old SA's PRF for SKEYSEED, new SA's for prf+)
  Child SA KEYMAT         RFC 7296 2.17 (with and without PFS)
  shared-key AUTH         RFC 7296 2.15
  NAT detection hash      RFC 7296 2.23
  cookie                  RFC 7296 2.6 (4-byte version | SHA-256, the crate's choice)
  SK payload bodies       RFC 7296 3.14, RFC 5282 (zero padding, as the crate sends)
  Diffie-Hellman          X25519 and P-256 via OpenSSL; MODP-2048 with pow() over the
                          prime rebuilt from the RFC 3526 formula

Run from this directory:  python3 crypto_prfplus.py > crypto_prfplus.txt
The output is fully deterministic; inputs are derived from fixed labels.
"""

import hashlib
import hmac
import ipaddress

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HASHES = {5: hashlib.sha256, 6: hashlib.sha384, 7: hashlib.sha512}


def fixed(label, n):
    """n deterministic bytes named by label (SHA-256 in counter mode)."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(label.encode() + i.to_bytes(4, "big")).digest()
        i += 1
    return out[:n]


def prf(alg, key, data):
    return hmac.new(key, data, HASHES[alg]).digest()


def prf_plus(alg, key, seed, n):
    # RFC 7296 2.13: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n)
    assert n <= 255 * HASHES[alg]().digest_size
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = prf(alg, key, t + seed + bytes([i]))
        out += t
        i += 1
    return out[:n]


def suite_lens(encr, key_bits):
    """(encryption key length incl. GCM salt, integrity key length)."""
    if encr == "aes-gcm-16":
        return key_bits // 8 + 4, 0
    return key_bits // 8, 32  # AES-CBC with AUTH_HMAC_SHA2_256_128


def split(data, lens):
    out, at = [], 0
    for n in lens:
        out.append(data[at:at + n])
        at += n
    assert at == len(data)
    return out


def ike_keys(alg, encr, key_bits, skeyseed, ni, nr, spi_i, spi_r):
    e, a = suite_lens(encr, key_bits)
    d = HASHES[alg]().digest_size  # preferred key length of HMAC-SHA-2 PRFs (RFC 4868)
    lens = [d, a, a, e, e, d, d]
    keymat = prf_plus(alg, skeyseed, ni + nr + spi_i + spi_r, sum(lens))
    return dict(zip(["sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"], split(keymat, lens)))


# --- Diffie-Hellman ------------------------------------------------------------

def pi_fixed(bits):
    """floor(pi * 2^bits) with Machin's formula in integer arithmetic."""
    guard = 64
    one = 1 << (bits + guard)

    def arctan_inv(x):
        total, term, n, sign = 0, one // x, 1, 1
        while term:
            total += sign * (term // n)
            term //= x * x
            n += 2
            sign = -sign
        return total

    return (4 * (4 * arctan_inv(5) - arctan_inv(239))) >> guard


# RFC 3526 section 3: p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }
MODP_2048_P = 2**2048 - 2**1984 - 1 + 2**64 * (pi_fixed(1918) + 124476)
# ...which must be the hex printed in RFC 3526 (also the constant in dh.rs).
assert MODP_2048_P == int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)


def dh(group, priv_i, priv_r):
    """(public i, public r, shared) as the KE payload and SKEYSEED use them."""
    if group == 14:
        xi, xr = int.from_bytes(priv_i, "big"), int.from_bytes(priv_r, "big")
        gi, gr = pow(2, xi, MODP_2048_P), pow(2, xr, MODP_2048_P)
        shared = pow(gr, xi, MODP_2048_P)
        assert shared == pow(gi, xr, MODP_2048_P)
        return gi.to_bytes(256, "big"), gr.to_bytes(256, "big"), shared.to_bytes(256, "big")
    if group == 31:
        ki = x25519.X25519PrivateKey.from_private_bytes(priv_i)
        kr = x25519.X25519PrivateKey.from_private_bytes(priv_r)
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        return (ki.public_key().public_bytes(*raw), kr.public_key().public_bytes(*raw),
                ki.exchange(kr.public_key()))
    if group == 19:
        ki = ec.derive_private_key(int.from_bytes(priv_i, "big"), ec.SECP256R1())
        kr = ec.derive_private_key(int.from_bytes(priv_r, "big"), ec.SECP256R1())

        def xy(k):  # RFC 5903 7: x | y without the SEC1 prefix
            n = k.public_key().public_numbers()
            return n.x.to_bytes(32, "big") + n.y.to_bytes(32, "big")

        return xy(ki), xy(kr), ki.exchange(ec.ECDH(), kr.public_key())
    raise ValueError(group)


# --- output --------------------------------------------------------------------

def record(kind, **fields):
    print(f"[{kind}]")
    for k, v in fields.items():
        print(f"{k} = {v.hex() if isinstance(v, bytes) else v}")
    print()


def main():
    print("# Generated by crypto_prfplus.py (Python hmac/hashlib + the cryptography package).")
    print("# Records are separated by blank lines; byte strings are hex.")
    print()

    # prf+ alone, for each PRF, across block boundaries.
    for alg in (5, 6, 7):
        for n in (1, 32, 48, 64, 100, 300):
            key, seed = fixed(f"prf+ key {alg}", 40), fixed(f"prf+ seed {alg}", 72)
            record("prf_plus", prf=alg, key=key, seed=seed, len=n, out=prf_plus(alg, key, seed, n))

    # IKE_SA_INIT key derivation with a real Diffie-Hellman exchange.
    cases = [
        (5, "aes-gcm-16", 256, 31, 32),
        (5, "aes-gcm-16", 128, 19, 32),
        (6, "aes-cbc", 128, 14, 48),
        (7, "aes-cbc", 256, 31, 32),
        (7, "aes-gcm-16", 256, 14, 48),
    ]
    for n, (alg, encr, bits, group, priv_len) in enumerate(cases):
        priv_i = fixed(f"ike {n} dh i", priv_len)
        priv_r = fixed(f"ike {n} dh r", priv_len)
        pub_i, pub_r, shared = dh(group, priv_i, priv_r)
        ni, nr = fixed(f"ike {n} ni", 32), fixed(f"ike {n} nr", 48)
        spi_i, spi_r = fixed(f"ike {n} spi i", 8), fixed(f"ike {n} spi r", 8)
        skeyseed = prf(alg, ni + nr, shared)  # RFC 7296 2.14
        keys = ike_keys(alg, encr, bits, skeyseed, ni, nr, spi_i, spi_r)
        record("ike_sa", prf=alg, encr=encr, key_bits=bits, group=group,
               priv_i=priv_i, priv_r=priv_r, pub_i=pub_i, pub_r=pub_r, shared=shared,
               ni=ni, nr=nr, spi_i=spi_i, spi_r=spi_r, skeyseed=skeyseed, **keys)

    # IKE SA rekey: the old PRF makes SKEYSEED, the new one expands it.
    for n, (old_alg, alg, encr, bits) in enumerate([(5, 5, "aes-gcm-16", 256), (7, 6, "aes-cbc", 256)]):
        old_sk_d = fixed(f"rekey {n} old sk_d", HASHES[old_alg]().digest_size)
        shared = fixed(f"rekey {n} g^ir", 32)
        ni, nr = fixed(f"rekey {n} ni", 32), fixed(f"rekey {n} nr", 32)
        spi_i, spi_r = fixed(f"rekey {n} spi i", 8), fixed(f"rekey {n} spi r", 8)
        skeyseed = prf(old_alg, old_sk_d, shared + ni + nr)  # RFC 7296 2.18
        keys = ike_keys(alg, encr, bits, skeyseed, ni, nr, spi_i, spi_r)
        record("rekey", old_prf=old_alg, old_sk_d=old_sk_d, prf=alg, encr=encr, key_bits=bits,
               shared=shared, ni=ni, nr=nr, spi_i=spi_i, spi_r=spi_r, skeyseed=skeyseed, **keys)

    # Child SA keying material: initiator-to-responder first, encryption before integrity.
    for n, (alg, encr, bits, pfs) in enumerate([(5, "aes-gcm-16", 256, False), (5, "aes-gcm-16", 128, True),
                                                (6, "aes-cbc", 128, False), (7, "aes-cbc", 256, True)]):
        sk_d = fixed(f"child {n} sk_d", HASHES[alg]().digest_size)
        shared = fixed(f"child {n} g^ir", 256) if pfs else b""
        ni, nr = fixed(f"child {n} ni", 32), fixed(f"child {n} nr", 32)
        e, a = suite_lens(encr, bits)
        keymat = prf_plus(alg, sk_d, shared + ni + nr, 2 * (e + a))  # RFC 7296 2.17
        ei, ai, er, ar = split(keymat, [e, a, e, a])
        record("child_sa", prf=alg, encr=encr, key_bits=bits, sk_d=sk_d, shared=shared or "none",
               ni=ni, nr=nr, encr_i2r=ei, integ_i2r=ai or "none", encr_r2i=er, integ_r2i=ar or "none")

    # Shared-key AUTH (RFC 7296 2.15).
    for alg in (5, 6, 7):
        real_message = fixed(f"auth {alg} message", 300)
        peer_nonce = fixed(f"auth {alg} nonce", 32)
        sk_p = fixed(f"auth {alg} sk_p", HASHES[alg]().digest_size)
        id_body = bytes([1, 0, 0, 0, 192, 0, 2, 1])  # ID_IPV4_ADDR 192.0.2.1
        psk = b"correct horse battery staple"
        signed = real_message + peer_nonce + prf(alg, sk_p, id_body)
        auth = prf(alg, prf(alg, psk, b"Key Pad for IKEv2"), signed)
        record("psk_auth", prf=alg, psk=psk, real_message=real_message, peer_nonce=peer_nonce,
               sk_p=sk_p, id_body=id_body, signed_octets=signed, auth=auth)

    # NAT detection (RFC 7296 2.23): SHA-1(SPIi | SPIr | IP | Port).
    for ip, port, spi_r in (("192.0.2.1", 500, bytes(8)), ("2001:db8::17", 4500, fixed("nat spi r", 8))):
        spi_i = fixed("nat spi i", 8)
        addr = ipaddress.ip_address(ip)
        h = hashlib.sha1(spi_i + spi_r + addr.packed + port.to_bytes(2, "big")).digest()
        record("nat", spi_i=spi_i, spi_r=spi_r, ip=ip, port=port, hash=h)

    # Cookie (RFC 7296 2.6): <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>).
    for version, ip in ((1, "198.51.100.7"), (0x01020304, "2001:db8::1")):
        secret, ni, spi_i = fixed(f"cookie secret {version}", 32), fixed(f"cookie ni {version}", 32), fixed("cookie spi", 8)
        h = hashlib.sha256(ni + ipaddress.ip_address(ip).packed + spi_i + secret).digest()
        record("cookie", version=version, secret=secret, ni=ni, ip=ip, spi_i=spi_i,
               cookie=version.to_bytes(4, "big") + h)

    # SK payload bodies: IV | E(payloads | zero padding | Pad Length) | ICV.
    for n, (encr, bits, pt_len) in enumerate([("aes-gcm-16", 128, 0), ("aes-gcm-16", 256, 45),
                                              ("aes-cbc", 128, 15), ("aes-cbc", 256, 16), ("aes-cbc", 128, 70)]):
        e, a = suite_lens(encr, bits)
        encr_key, integ_key = fixed(f"sk {n} encr", e), fixed(f"sk {n} integ", a)
        aad = fixed(f"sk {n} header", 28 + 4)  # IKE header + SK generic header
        plaintext = fixed(f"sk {n} payloads", pt_len)
        if encr == "aes-gcm-16":
            iv = fixed(f"sk {n} iv", 8)
            data = plaintext + bytes([0])  # block size 1: only the Pad Length byte
            # RFC 5282: nonce = salt | IV, AAD = everything before the IV.
            sealed = AESGCM(encr_key[:-4]).encrypt(encr_key[-4:] + iv, data, aad)
            body = iv + sealed
        else:
            iv = fixed(f"sk {n} iv", 16)
            pad = 15 - pt_len % 16
            data = plaintext + bytes(pad) + bytes([pad])
            enc = Cipher(algorithms.AES(encr_key), modes.CBC(iv)).encryptor()
            ct = enc.update(data) + enc.finalize()
            # RFC 7296 3.14 / RFC 4868: ICV = first 16 bytes of HMAC-SHA-256 over header .. ciphertext.
            icv = hmac.new(integ_key, aad + iv + ct, hashlib.sha256).digest()[:16]
            body = iv + ct + icv
        record("sk", encr=encr, key_bits=bits, encr_key=encr_key, integ_key=integ_key or "none",
               aad=aad, plaintext=plaintext or "none", iv=iv, body=body)


if __name__ == "__main__":
    main()
