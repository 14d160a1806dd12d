//! What certificate authentication reads from the network: CERT payload contents
//! (`Cert::from_der`, then the chain check and identity binding), DER_ASN1_DN identities
//! (`Dn::from_der`, `id_matches`), AUTH data (`verify_auth`, RFC 7427 and RFC 4754 methods) and
//! SIGNATURE_HASH_ALGORITHMS data. None may panic; no random input may verify.
#![no_main]

use ikev2::pki::{Cert, Dn, TrustStore, id_matches, id_text, parse_hash_algorithms, verify_auth};
use ikev2::wire::{AuthMethod, IdType, Identification};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Fixed {
    cas: TrustStore,
    gw: Cert,
    pattern: Identification,
}

fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let ca = Cert::load_all(include_bytes!("../../tests/vectors/pki/ec-ca.pem")).unwrap().remove(0);
        let gw = Cert::load_all(include_bytes!("../../tests/vectors/pki/ec-gw.pem")).unwrap().remove(0);
        let pattern = Identification {
            id_type: IdType::DER_ASN1_DN,
            data: Dn::parse("C=CH, O=Test, CN=*").unwrap().der().to_vec(),
        };
        Fixed { cas: TrustStore::new(vec![ca]).unwrap(), gw, pattern }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    if let Ok(c) = Cert::from_der(data) {
        // Random bytes may parse, but the CA never signed them.
        assert!(f.cas.verify(&c, &[], 1_796_083_200).is_err() || c.der() == f.gw.der());
        let _ = c.binds(&Identification::fqdn("gw.example.test"));
        let _ = c.binds(&c.subject_id());
        let _ = c.key_id();
        let _ = format!("{} {:?}", c.subject, c);
    }
    let dn = Identification { id_type: IdType::DER_ASN1_DN, data: data.to_vec() };
    let _ = id_matches(&f.pattern, &dn);
    let _ = id_text(&dn);
    let _ = f.gw.binds(&dn);
    if let Ok(d) = Dn::from_der(data) {
        let _ = d.to_string();
    }
    for method in [AuthMethod::DIGITAL_SIGNATURE, AuthMethod::ECDSA_SHA256_P256, AuthMethod::RSA_SIG] {
        assert!(verify_auth(&f.gw.key, method, data, b"signed octets").is_err());
    }
    let _ = parse_hash_algorithms(data);
});
