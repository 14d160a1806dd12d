#!/usr/bin/env bash
# Makes the certificates and keys tests/pki_certs.rs reads, with tools nobody here wrote:
# strongSwan's pki and OpenSSL. Run once and commit the output; the test checks them at a fixed
# time inside their validity (2026-12-01), so they need not be remade.
set -euo pipefail
cd "$(dirname "$0")"
rm -f ./*.pem ./*.der
pki() { command pki "$@" 2>/dev/null; }
F="--dateform %Y-%m-%d --not-before 2026-01-01 --not-after 2036-01-01"

# ECDSA P-256 CA and a gateway under it (strongSwan pki, SEC1 key).
pki --gen --type ecdsa --size 256 --outform pem >ec-ca.key.pem
pki --self --ca --in ec-ca.key.pem --type ecdsa $F --dn "C=CH, O=Test, CN=Test EC CA" --outform pem >ec-ca.pem
pki --gen --type ecdsa --size 256 --outform pem >ec-gw.key.pem
pki --pub --in ec-gw.key.pem --type ecdsa | pki --issue $F --cacert ec-ca.pem --cakey ec-ca.key.pem \
  --dn "C=CH, O=Test, CN=gw.example.test" --san gw.example.test --san gw@example.test --san 10.77.0.1 \
  --flag serverAuth --outform pem >ec-gw.pem

# RSA-3072 CA, an intermediate under it and a gateway under that (PKCS#1 keys).
pki --gen --type rsa --size 3072 --outform pem >rsa-ca.key.pem
pki --self --ca --in rsa-ca.key.pem --type rsa $F --dn "C=CH, O=Test, CN=Test RSA CA" --outform pem >rsa-ca.pem
pki --gen --type rsa --size 2048 --outform pem >rsa-sub.key.pem
pki --pub --in rsa-sub.key.pem --type rsa | pki --issue $F --ca --cacert rsa-ca.pem --cakey rsa-ca.key.pem \
  --dn "C=CH, O=Test, OU=Branches, CN=Test RSA Sub CA" --outform pem >rsa-sub.pem
pki --gen --type rsa --size 2048 --outform pem >rsa-gw.key.pem
pki --pub --in rsa-gw.key.pem --type rsa | pki --issue $F --cacert rsa-sub.pem --cakey rsa-sub.key.pem \
  --dn "C=CH, O=Test, OU=Branches, CN=branch7.example.test" --san branch7.example.test --outform pem >rsa-gw.pem

# Expired (2020) under the EC CA.
pki --gen --type ecdsa --size 256 --outform pem >old.key.pem
pki --pub --in old.key.pem --type ecdsa | pki --issue --dateform %Y-%m-%d --not-before 2020-01-01 \
  --not-after 2021-01-01 --cacert ec-ca.pem --cakey ec-ca.key.pem --dn "C=CH, O=Test, CN=old" --outform pem >old.pem

# OpenSSL: a P-384 key in PKCS#8 with an RSA-PSS signed certificate from the RSA CA, and a
# self-signed certificate that no configured CA issued.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out p384.key.pem 2>/dev/null
openssl req -new -key p384.key.pem -subj "/C=CH/O=Test/CN=p384.example.test" -out p384.csr 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in rsa-ca.key.pem -out rsa-ca.pk8.pem
printf 'subjectAltName=email:p384@example.test,DNS:p384.example.test\nkeyUsage=digitalSignature\n' >ext.cnf
openssl x509 -req -in p384.csr -CA rsa-ca.pem -CAkey rsa-ca.pk8.pem -set_serial 7 -days 3650 \
  -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -sha256 -extfile ext.cnf -out p384.pem 2>/dev/null
openssl req -x509 -new -key p384.key.pem -subj "/CN=stranger" -days 3650 -out stranger.pem 2>/dev/null
rm -f p384.csr ext.cnf rsa-ca.pk8.pem

# Signatures by OpenSSL over a fixed message, checked by our RFC 7427 verifier.
printf 'RealMessage1 | NonceRData | MACedIDForI, as RFC 7296 2.15 has it' >msg.bin
openssl dgst -sha256 -sign ec-gw.key.pem -out ec-gw.msg.sig msg.bin
openssl dgst -sha256 -sign rsa-gw.key.pem -out rsa-gw.msg.sig msg.bin
