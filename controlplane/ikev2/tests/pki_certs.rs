//! Certificates and signatures made by strongSwan's pki and OpenSSL (tests/vectors/pki/make.sh)
//! through our chain checks and our RFC 7427 signer and verifier.

use ikev2::pki::{Cert, Dn, PrivateKey, TrustStore, id_matches, verify_auth};
use ikev2::wire::{AuthMethod, IdType, Identification, hash};

/// 2026-12-01T00:00:00Z, inside every test certificate's validity but that of `old.pem`.
const NOW: i64 = 1_796_083_200;

fn file(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/vectors/pki/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn cert(name: &str) -> Cert {
    Cert::load_all(&file(name)).unwrap().remove(0)
}

fn key(name: &str) -> PrivateKey {
    PrivateKey::load(&file(name)).unwrap()
}

fn store(names: &[&str]) -> TrustStore {
    TrustStore::new(names.iter().map(|n| cert(n)).collect()).unwrap()
}

fn dn_id(s: &str) -> Identification {
    Identification { id_type: IdType::DER_ASN1_DN, data: Dn::parse(s).unwrap().der().to_vec() }
}

#[test]
fn strongswan_ecdsa_certificate_chains_and_binds_its_names() {
    let gw = cert("ec-gw.pem");
    let cas = store(&["ec-ca.pem"]);
    cas.verify(&gw, &[], NOW).unwrap();
    assert_eq!(gw.subject.to_string(), "C=CH, O=Test, CN=gw.example.test");
    assert!(gw.binds(&Identification::fqdn("gw.example.test")));
    assert!(gw.binds(&Identification::rfc822("gw@example.test")));
    assert!(gw.binds(&Identification::ip("10.77.0.1".parse().unwrap())));
    assert!(gw.binds(&dn_id("C=CH, O=Test, CN=gw.example.test")));
    assert!(gw.binds(&gw.subject_id()));
    assert!(!gw.binds(&Identification::fqdn("other.example.test")));
    assert!(!gw.binds(&Identification::ip("10.77.0.2".parse().unwrap())));
    assert!(!gw.binds(&dn_id("C=CH, O=Test, CN=other")));
    // The RSA CA did not issue it.
    assert!(store(&["rsa-ca.pem"]).verify(&gw, &[], NOW).is_err());
    // A CERTREQ names the CA by the SHA-1 of its public key info.
    assert_eq!(cas.certreq(), cert("ec-ca.pem").key_id().to_vec());
}

#[test]
fn rsa_chain_needs_its_intermediate() {
    let gw = cert("rsa-gw.pem");
    let sub = cert("rsa-sub.pem");
    let cas = store(&["rsa-ca.pem"]);
    cas.verify(&gw, std::slice::from_ref(&sub), NOW).unwrap();
    let err = cas.verify(&gw, &[], NOW).unwrap_err().to_string();
    assert!(err.contains("no trusted CA issued"), "{err}");
    // The intermediate alone as trust anchor is enough, too.
    store(&["rsa-sub.pem"]).verify(&gw, &[], NOW).unwrap();
    // An end-entity certificate cannot stand in for a CA.
    assert!(TrustStore::new(vec![cert("ec-gw.pem")]).is_err());
    assert!(cas.verify(&gw, &[cert("ec-gw.pem")], NOW).is_err());
}

#[test]
fn validity_is_checked_along_the_chain() {
    let cas = store(&["ec-ca.pem"]);
    let err = cas.verify(&cert("old.pem"), &[], NOW).unwrap_err().to_string();
    assert!(err.contains("expired"), "{err}");
    // In 2020 the certificate was valid, but not yet its CA (2026-01-01 on).
    let err = cas.verify(&cert("old.pem"), &[], 1_590_000_000).unwrap_err().to_string();
    assert!(err.contains("Test EC CA"), "{err}");
    assert!(err.contains("not valid yet"), "{err}");
}

#[test]
fn openssl_pss_signed_p384_certificate() {
    let c = cert("p384.pem");
    store(&["rsa-ca.pem"]).verify(&c, &[], NOW).unwrap();
    assert!(c.binds(&Identification::rfc822("p384@example.test")));
    assert!(store(&["ec-ca.pem", "rsa-ca.pem"]).verify(&cert("stranger.pem"), &[], NOW).is_err());
}

#[test]
fn keys_in_every_format_match_their_certificates() {
    for (k, c, other) in [
        ("ec-gw.key.pem", "ec-gw.pem", "rsa-gw.pem"),
        ("rsa-gw.key.pem", "rsa-gw.pem", "ec-gw.pem"),
        ("p384.key.pem", "p384.pem", "ec-gw.pem"),
        ("rsa-ca.key.pem", "rsa-ca.pem", "rsa-gw.pem"),
    ] {
        let key = key(k);
        assert!(key.matches(&cert(c)), "{k} and {c}");
        assert!(!key.matches(&cert(other)), "{k} and {other}");
        assert!(!format!("{key:?}").contains("0x"), "the key's Debug shows nothing of it");
    }
}

#[test]
fn rfc7427_signatures_round_trip_and_fail_when_tampered() {
    let all = [hash::SHA2_256, hash::SHA2_384, hash::SHA2_512];
    for (k, c) in [("ec-gw.key.pem", "ec-gw.pem"), ("rsa-gw.key.pem", "rsa-gw.pem"), ("p384.key.pem", "p384.pem")] {
        let (key, cert) = (key(k), cert(c));
        let octets = b"signed octets".to_vec();
        for hashes in [Some(&all[..]), None] {
            let Ok((method, data)) = key.sign_auth(hashes, &octets) else {
                // Only RSA without RFC 7427 is refused (method 1 is SHA-1).
                assert!(hashes.is_none() && k.starts_with("rsa"));
                continue;
            };
            verify_auth(&cert.key, method, &data, &octets).unwrap_or_else(|e| panic!("{k} {hashes:?}: {e}"));
            assert!(verify_auth(&cert.key, method, &data, b"other octets").is_err());
            let mut bad = data.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert!(verify_auth(&cert.key, method, &bad, &octets).is_err());
        }
        // A peer that accepts only SHA-1 gets no signature.
        assert!(key.sign_auth(Some(&[hash::SHA1]), b"x").is_err());
    }
    // With the wrong certificate.
    let (method, data) = key("ec-gw.key.pem").sign_auth(Some(&all), b"m").unwrap();
    assert!(verify_auth(&cert("p384.pem").key, method, &data, b"m").is_err());
}

/// The AlgorithmIdentifiers of RFC 7427 appendix A, as published.
const RFC7427_SHA256_RSA: &[u8] =
    &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00];
const RFC7427_ECDSA_SHA256: &[u8] = &[0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

fn auth_data(alg_id: &[u8], signature: &[u8]) -> Vec<u8> {
    [&[alg_id.len() as u8][..], alg_id, signature].concat()
}

#[test]
fn openssl_signatures_verify_with_rfc7427_algorithm_identifiers() {
    let msg = file("msg.bin");
    let ec = auth_data(RFC7427_ECDSA_SHA256, &file("ec-gw.msg.sig"));
    verify_auth(&cert("ec-gw.pem").key, AuthMethod::DIGITAL_SIGNATURE, &ec, &msg).unwrap();
    let rsa = auth_data(RFC7427_SHA256_RSA, &file("rsa-gw.msg.sig"));
    verify_auth(&cert("rsa-gw.pem").key, AuthMethod::DIGITAL_SIGNATURE, &rsa, &msg).unwrap();
    assert!(verify_auth(&cert("rsa-gw.pem").key, AuthMethod::DIGITAL_SIGNATURE, &rsa, b"not it").is_err());
    // What we send starts with the same identifiers.
    let (_, ours) = key("rsa-gw.key.pem").sign_auth(Some(&[hash::SHA2_256]), &msg).unwrap();
    assert_eq!(&ours[1..=RFC7427_SHA256_RSA.len()], RFC7427_SHA256_RSA);
    let (_, ours) = key("ec-gw.key.pem").sign_auth(Some(&[hash::SHA2_256]), &msg).unwrap();
    assert_eq!(&ours[1..=RFC7427_ECDSA_SHA256.len()], RFC7427_ECDSA_SHA256);
    // OpenSSL checks ours: the signature after the identifier is a plain ECDSA-with-SHA256 one.
    let dir = std::env::temp_dir().join(format!("pki-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sig"), &ours[1 + RFC7427_ECDSA_SHA256.len()..]).unwrap();
    std::fs::write(dir.join("msg"), &msg).unwrap();
    let pubkey = std::process::Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(format!("{}/tests/vectors/pki/ec-gw.pem", env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("openssl (scripts/deps.sh installs it)");
    assert!(pubkey.status.success());
    std::fs::write(dir.join("pub.pem"), pubkey.stdout).unwrap();
    {
        let status = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(dir.join("pub.pem"))
            .arg("-signature")
            .arg(dir.join("sig"))
            .arg(dir.join("msg"))
            .output()
            .unwrap();
        assert!(status.status.success(), "openssl: {}", String::from_utf8_lossy(&status.stdout));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn dn_identities_match_certificates_from_strongswan() {
    let gw = cert("rsa-gw.pem");
    let pattern = dn_id("C=CH, O=Test, OU=Branches, CN=*");
    assert!(id_matches(&pattern, &gw.subject_id()));
    assert!(!id_matches(&pattern, &cert("ec-gw.pem").subject_id()));
    assert!(id_matches(&Identification::fqdn("*.example.test"), &Identification::fqdn("branch7.example.test")));
}
