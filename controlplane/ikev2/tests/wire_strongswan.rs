//! IKEv2 messages captured between two strongSwan 5.9.8 charons (tests/vectors/capture.sh):
//! every message parses to what swanctl.conf configured, and emits back to the same bytes.
//! The inner payloads of SK messages were decrypted by tests/vectors/extract.py.

use ikev2::wire::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn hex(text: &str) -> Vec<u8> {
    let h: String = text.lines().filter(|l| !l.starts_with('#')).flat_map(|l| l.trim().chars()).collect();
    assert!(h.len().is_multiple_of(2));
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()
}

macro_rules! vector {
    ($name:literal) => {
        hex(include_str!(concat!("vectors/", $name, ".txt")))
    };
}

/// Parses, checks the exact round trip, and returns the message.
fn message(bytes: &[u8]) -> Message {
    let m = Message::parse(bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.emit(), bytes, "emit(parse(bytes)) != bytes");
    assert_eq!(m.header.length as usize, bytes.len());
    m
}

/// For a message ending in SK: checks the AAD helpers against the real bytes, then parses the
/// decrypted inner chain and checks its round trip.
fn inner(bytes: &[u8], m: &Message, plain: &[u8]) -> Vec<Payload> {
    let sk = m.encrypted().expect("an SK payload");
    let preceding = &m.payloads[..m.payloads.len() - 1];
    let prefix = sk_message_prefix(&m.header, sk.first_inner, sk.body.len(), preceding).unwrap();
    assert_eq!(sk.aad(bytes), Some(&prefix[..]));
    assert_eq!(prefix.len(), HEADER_LEN + GENERIC_HEADER_LEN);
    let ps = parse_payload_chain(sk.first_inner, plain).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(emit_payload_chain(&ps), (if plain.is_empty() { 0 } else { sk.first_inner }, plain.to_vec()));
    // AES-GCM in SK: 8-byte IV, 16-byte ICV, at least the pad length octet in between.
    assert!(sk.body.len() > 8 + 16 + plain.len());
    ps
}

fn types(ps: &[Payload]) -> Vec<u8> {
    ps.iter().map(Payload::payload_type).collect()
}

fn notifies(ps: &[Payload]) -> Vec<NotifyType> {
    ps.iter()
        .filter_map(|p| match p {
            Payload::Notify(n) => Some(n.notify_type),
            _ => None,
        })
        .collect()
}

fn notify(ps: &[Payload], t: NotifyType) -> &Notify {
    ps.iter()
        .find_map(|p| match p {
            Payload::Notify(n) if n.notify_type == t => Some(n),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {t} notify"))
}

fn sa(ps: &[Payload]) -> &[Proposal] {
    ps.iter().find_map(|p| if let Payload::Sa(s) = p { Some(&s[..]) } else { None }).expect("an SA payload")
}

fn ke(ps: &[Payload]) -> &KeyExchange {
    ps.iter().find_map(|p| if let Payload::Ke(k) = p { Some(k) } else { None }).expect("a KE payload")
}

fn nonce(ps: &[Payload]) -> &[u8] {
    ps.iter().find_map(|p| if let Payload::Nonce(n) = p { Some(&n[..]) } else { None }).expect("a Nonce payload")
}

/// (type, id, key length) of each transform.
fn transforms(p: &Proposal) -> Vec<(TransformType, u16, Option<u16>)> {
    p.transforms.iter().map(|t| (t.transform_type, t.id, t.key_length())).collect()
}

use TransformType as T;

fn gcm(bits: u16) -> (TransformType, u16, Option<u16>) {
    (T::ENCR, encr::AES_GCM_16, Some(bits))
}
const PRF_SHA256: (TransformType, u16, Option<u16>) = (T::PRF, prf::HMAC_SHA2_256, None);
const NO_ESN: (TransformType, u16, Option<u16>) = (T::ESN, esn::NO_ESN, None);

fn dh_t(group: u16) -> (TransformType, u16, Option<u16>) {
    (T::DH, group, None)
}

/// The notifications strongSwan puts in every IKE_SA_INIT request.
const INIT_REQ_NOTIFIES: [NotifyType; 5] = [
    NotifyType::NAT_DETECTION_SOURCE_IP,
    NotifyType::NAT_DETECTION_DESTINATION_IP,
    NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
    NotifyType::SIGNATURE_HASH_ALGORITHMS,
    NotifyType::REDIRECT_SUPPORTED,
];

fn check_init_notifies(ps: &[Payload]) {
    for t in [NotifyType::NAT_DETECTION_SOURCE_IP, NotifyType::NAT_DETECTION_DESTINATION_IP] {
        let n = notify(ps, t);
        assert_eq!(n.data.len(), 20, "SHA-1 hash");
        assert_eq!((n.protocol, n.spi.len()), (ProtocolId::NONE, 0));
    }
    assert!(notify(ps, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).data.is_empty());
    // RFC 7427: SHA2-256, SHA2-384, SHA2-512 and Identity (RFC 8420).
    let h = &notify(ps, NotifyType::SIGNATURE_HASH_ALGORITHMS).data;
    let algs: Vec<u16> = h.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    assert_eq!(algs, [hash::SHA2_256, hash::SHA2_384, hash::SHA2_512, hash::IDENTITY]);
}

// ---- scenario psk: aes256gcm16-prfsha256-x25519, aes128gcm16-prfsha256-ecp256, PSK, virtual IP

const PSK_SPI_I: u64 = 0x3873_1ac1_f066_5fc9;
const PSK_SPI_R: u64 = 0xc1e2_bed3_cf58_bcf5;

#[test]
fn psk_ike_sa_init_request() {
    let b = vector!("psk_01_ike_sa_init_req");
    let m = message(&b);
    let h = &m.header;
    assert_eq!((h.spi_i, h.spi_r, h.message_id), (PSK_SPI_I, 0, 0));
    assert_eq!(h.exchange, ExchangeType::IKE_SA_INIT);
    assert!(h.initiator && !h.response);
    assert_eq!(types(&m.payloads), [33, 34, 40, 41, 41, 41, 41, 41]);
    let ps = sa(&m.payloads);
    assert_eq!(ps.len(), 2);
    assert_eq!((ps[0].number, ps[0].protocol, ps[0].spi), (1, ProtocolId::IKE, Spi::Empty));
    assert_eq!(transforms(&ps[0]), [gcm(256), PRF_SHA256, dh_t(dh::CURVE25519)]);
    assert_eq!((ps[1].number, ps[1].protocol, ps[1].spi), (2, ProtocolId::IKE, Spi::Empty));
    assert_eq!(transforms(&ps[1]), [gcm(128), PRF_SHA256, dh_t(dh::ECP_256)]);
    // The KE is for the first proposal's group.
    assert_eq!((ke(&m.payloads).group, ke(&m.payloads).data.len()), (dh::CURVE25519, 32));
    assert_eq!(nonce(&m.payloads).len(), 32);
    assert_eq!(notifies(&m.payloads), INIT_REQ_NOTIFIES);
    check_init_notifies(&m.payloads);
}

#[test]
fn psk_ike_sa_init_response() {
    let b = vector!("psk_02_ike_sa_init_resp");
    let m = message(&b);
    let h = &m.header;
    assert_eq!((h.spi_i, h.spi_r, h.message_id), (PSK_SPI_I, PSK_SPI_R, 0));
    assert!(!h.initiator && h.response);
    let ps = sa(&m.payloads);
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].number, 1);
    assert_eq!(transforms(&ps[0]), [gcm(256), PRF_SHA256, dh_t(dh::CURVE25519)]);
    assert_eq!((ke(&m.payloads).group, ke(&m.payloads).data.len()), (dh::CURVE25519, 32));
    assert_eq!(nonce(&m.payloads).len(), 32);
    assert_eq!(
        notifies(&m.payloads),
        [
            NotifyType::NAT_DETECTION_SOURCE_IP,
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
            NotifyType::SIGNATURE_HASH_ALGORITHMS,
            NotifyType::CHILDLESS_IKEV2_SUPPORTED,
            NotifyType::MULTIPLE_AUTH_SUPPORTED,
        ]
    );
    check_init_notifies(&m.payloads);
}

#[test]
fn psk_ike_auth_request() {
    let b = vector!("psk_03_ike_auth_req");
    let m = message(&b);
    let h = &m.header;
    assert_eq!((h.spi_i, h.spi_r, h.message_id, h.exchange), (PSK_SPI_I, PSK_SPI_R, 1, ExchangeType::IKE_AUTH));
    assert!(h.initiator && !h.response);
    assert_eq!(m.payloads.len(), 1);
    assert_eq!(m.encrypted().unwrap().first_inner, payload_type::IDI);
    let ps = inner(&b, &m, &vector!("psk_03_ike_auth_req.inner"));
    assert_eq!(types(&ps), [35, 41, 36, 39, 47, 33, 44, 45, 41, 41, 41, 41, 41]);
    assert_eq!(ps[0], Payload::IdI(Identification::rfc822("left@example.test")));
    assert_eq!(ps[1], Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT, vec![])));
    assert_eq!(ps[2], Payload::IdR(Identification::rfc822("right@example.test")));
    let Payload::Auth(auth) = &ps[3] else { panic!() };
    assert_eq!((auth.method, auth.data.len()), (AuthMethod::SHARED_KEY_MIC, 32));
    // vips = 0.0.0.0: an empty INTERNAL_IP4_ADDRESS request.
    assert_eq!(
        ps[4],
        Payload::Cp(Config {
            cfg_type: cfg_type::REQUEST,
            attributes: vec![ConfigAttribute { attr_type: cfg_attr::INTERNAL_IP4_ADDRESS, value: vec![] }],
        })
    );
    // esp_proposals = aes128gcm16, aes256gcm16; the same inbound SPI in both proposals.
    let esp = sa(&ps);
    assert_eq!(esp.len(), 2);
    for (p, (n, bits)) in esp.iter().zip([(1, 128), (2, 256)]) {
        assert_eq!((p.number, p.protocol, p.spi), (n, ProtocolId::ESP, Spi::Four(0x32a4_5176)));
        assert_eq!(transforms(p), [gcm(bits), NO_ESN]);
    }
    // With a virtual IP requested, TSi is everything (0.0.0.0-255.255.255.255) for the
    // responder to narrow; TSr is remote_ts = 10.2.0.0/24.
    assert_eq!(ps[6], Payload::TsI(vec![TrafficSelector::ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)]));
    assert_eq!(ps[7], Payload::TsR(vec![TrafficSelector::ipv4([10, 2, 0, 0].into(), [10, 2, 0, 255].into())]));
    assert_eq!(
        notifies(&ps[8..]),
        [
            NotifyType::MOBIKE_SUPPORTED,
            NotifyType::NO_ADDITIONAL_ADDRESSES,
            NotifyType::MULTIPLE_AUTH_SUPPORTED,
            NotifyType::EAP_ONLY_AUTHENTICATION,
            NotifyType::IKEV2_MESSAGE_ID_SYNC_SUPPORTED,
        ]
    );
}

#[test]
fn psk_ike_auth_response() {
    let b = vector!("psk_04_ike_auth_resp");
    let m = message(&b);
    assert_eq!((m.header.message_id, m.header.exchange), (1, ExchangeType::IKE_AUTH));
    assert!(!m.header.initiator && m.header.response);
    let ps = inner(&b, &m, &vector!("psk_04_ike_auth_resp.inner"));
    assert_eq!(types(&ps), [36, 39, 47, 33, 44, 45, 41, 41]);
    assert_eq!(ps[0], Payload::IdR(Identification::rfc822("right@example.test")));
    let Payload::Auth(auth) = &ps[1] else { panic!() };
    assert_eq!((auth.method, auth.data.len()), (AuthMethod::SHARED_KEY_MIC, 32));
    // The address from pool p4 = 10.3.0.0/28, and TSi narrowed to it.
    assert_eq!(
        ps[2],
        Payload::Cp(Config {
            cfg_type: cfg_type::REPLY,
            attributes: vec![ConfigAttribute { attr_type: cfg_attr::INTERNAL_IP4_ADDRESS, value: vec![10, 3, 0, 1] }],
        })
    );
    let esp = sa(&ps);
    assert_eq!(esp.len(), 1);
    assert_eq!((esp[0].number, esp[0].protocol, esp[0].spi), (1, ProtocolId::ESP, Spi::Four(0xbbd4_669c)));
    assert_eq!(transforms(&esp[0]), [gcm(128), NO_ESN]);
    let vip = Ipv4Addr::new(10, 3, 0, 1);
    assert_eq!(ps[4], Payload::TsI(vec![TrafficSelector::ipv4(vip, vip)]));
    assert_eq!(ps[5], Payload::TsR(vec![TrafficSelector::ipv4([10, 2, 0, 0].into(), [10, 2, 0, 255].into())]));
    assert_eq!(notifies(&ps), [NotifyType::MOBIKE_SUPPORTED, NotifyType::NO_ADDITIONAL_ADDRESSES]);
}

#[test]
fn psk_delete() {
    let b = vector!("psk_05_informational_req");
    let m = message(&b);
    assert_eq!((m.header.message_id, m.header.exchange), (2, ExchangeType::INFORMATIONAL));
    assert!(m.header.initiator && !m.header.response);
    let ps = inner(&b, &m, &vector!("psk_05_informational_req.inner"));
    assert_eq!(ps, [Payload::Delete(Delete { protocol: ProtocolId::IKE, spis: vec![] })]);

    // The answer is an SK payload with nothing inside: Next Payload 0.
    let b = vector!("psk_06_informational_resp");
    let m = message(&b);
    assert_eq!((m.header.message_id, m.header.response, m.header.initiator), (2, true, false));
    assert_eq!(m.encrypted().unwrap().first_inner, payload_type::NONE);
    assert!(inner(&b, &m, &vector!("psk_06_informational_resp.inner")).is_empty());
}

// ---- scenario cert: ECDSA certificates; the responder accepts only aes128gcm16-prfsha256-ecp256

const CERT_SPI_I: u64 = 0x15b2_3d03_d394_e726;
const CERT_SPI_R: u64 = 0x2015_99c5_4da8_664d;

fn cbc256_sha256_x25519() -> Vec<(TransformType, u16, Option<u16>)> {
    vec![
        (T::ENCR, encr::AES_CBC, Some(256)),
        (T::INTEG, integ::HMAC_SHA2_256_128, None),
        PRF_SHA256,
        dh_t(dh::CURVE25519),
    ]
}

#[test]
fn cert_invalid_ke_and_retry() {
    let first = message(&vector!("cert_01_ike_sa_init_req"));
    assert_eq!((first.header.spi_i, first.header.spi_r), (CERT_SPI_I, 0));
    let ps = sa(&first.payloads);
    assert_eq!(transforms(&ps[0]), cbc256_sha256_x25519());
    assert_eq!(transforms(&ps[1]), [gcm(128), PRF_SHA256, dh_t(dh::ECP_256)]);
    assert_eq!((ke(&first.payloads).group, ke(&first.payloads).data.len()), (dh::CURVE25519, 32));
    assert_eq!(notifies(&first.payloads), INIT_REQ_NOTIFIES);
    check_init_notifies(&first.payloads);

    // The responder wants group 19: a bare INVALID_KE_PAYLOAD, no SPIr.
    let b = vector!("cert_02_ike_sa_init_resp");
    let refusal = message(&b);
    assert_eq!(b.len(), 38);
    assert_eq!((refusal.header.spi_i, refusal.header.spi_r, refusal.header.response), (CERT_SPI_I, 0, true));
    let n = refusal.notify(NotifyType::INVALID_KE_PAYLOAD).unwrap();
    assert_eq!(n.data, dh::ECP_256.to_be_bytes());
    assert_eq!(refusal.payloads.len(), 1);

    // The retry keeps SPIi, nonce and NAT hashes, moves the ecp256 proposal to the front
    // (renumbered 1) and sends a 64-byte ecp256 KE.
    let retry = message(&vector!("cert_03_ike_sa_init_req"));
    assert_eq!((retry.header.spi_i, retry.header.spi_r, retry.header.message_id), (CERT_SPI_I, 0, 0));
    let ps = sa(&retry.payloads);
    assert_eq!((ps[0].number, ps[1].number), (1, 2));
    assert_eq!(transforms(&ps[0]), [gcm(128), PRF_SHA256, dh_t(dh::ECP_256)]);
    assert_eq!(transforms(&ps[1]), cbc256_sha256_x25519());
    assert_eq!((ke(&retry.payloads).group, ke(&retry.payloads).data.len()), (dh::ECP_256, 64));
    assert_eq!(nonce(&retry.payloads), nonce(&first.payloads));
    assert_eq!(
        notify(&retry.payloads, NotifyType::NAT_DETECTION_SOURCE_IP),
        notify(&first.payloads, NotifyType::NAT_DETECTION_SOURCE_IP)
    );
}

/// SHA-1 of the CA's public key, as CERTREQ (X509_SIGNATURE) carries it.
fn ca_keyid(ps: &[Payload]) -> &[u8] {
    ps.iter()
        .find_map(|p| match p {
            Payload::CertReq(c) => {
                assert_eq!(c.encoding, CertEncoding::X509_SIGNATURE);
                Some(&c.data[..])
            }
            _ => None,
        })
        .expect("a CERTREQ payload")
}

#[test]
fn cert_ike_sa_init_response() {
    let m = message(&vector!("cert_04_ike_sa_init_resp"));
    assert_eq!((m.header.spi_i, m.header.spi_r), (CERT_SPI_I, CERT_SPI_R));
    let ps = sa(&m.payloads);
    assert_eq!(ps.len(), 1);
    assert_eq!(transforms(&ps[0]), [gcm(128), PRF_SHA256, dh_t(dh::ECP_256)]);
    assert_eq!((ke(&m.payloads).group, ke(&m.payloads).data.len()), (dh::ECP_256, 64));
    // The CERTREQ sits between the NAT detection notifies and the others.
    assert_eq!(types(&m.payloads), [33, 34, 40, 41, 41, 38, 41, 41, 41, 41]);
    assert_eq!(ca_keyid(&m.payloads).len(), 20);
    check_init_notifies(&m.payloads);
}

/// RFC 7427 AUTH data: length octet, AlgorithmIdentifier ecdsa-with-SHA256, DER signature.
fn check_ecdsa_auth(ps: &[Payload]) {
    let a = ps.iter().find_map(|p| if let Payload::Auth(a) = p { Some(a) } else { None }).unwrap();
    assert_eq!(a.method, AuthMethod::DIGITAL_SIGNATURE);
    let alg = [0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    assert_eq!(a.data[0] as usize, alg.len());
    assert_eq!(a.data[1..13], alg);
    assert_eq!(a.data[13], 0x30, "DER ECDSA-Sig-Value");
}

fn check_cert(ps: &[Payload], cn: &str) {
    let c = ps.iter().find_map(|p| if let Payload::Cert(c) = p { Some(c) } else { None }).unwrap();
    assert_eq!(c.encoding, CertEncoding::X509_SIGNATURE);
    assert_eq!(c.data[0], 0x30, "DER certificate");
    assert!(c.data.windows(cn.len()).any(|w| w == cn.as_bytes()));
}

fn cert_selectors() -> (Vec<TrafficSelector>, Vec<TrafficSelector>) {
    let v6 = |net: u16| {
        TrafficSelector::ipv6(
            Ipv6Addr::new(0xfd00, net, 0, 0, 0, 0, 0, 0),
            Ipv6Addr::new(0xfd00, net, 0, 0, 0xffff, 0xffff, 0xffff, 0xffff),
        )
    };
    let tsi = vec![TrafficSelector::ipv4([10, 1, 0, 0].into(), [10, 1, 0, 255].into()), v6(1)];
    // remote_ts = 10.2.0.0/24[udp/53]: protocol 17, port 53..53.
    let tsr = vec![
        TrafficSelector::Ipv4(AddrRange {
            ip_protocol: 17,
            start_port: 53,
            end_port: 53,
            start: [10, 2, 0, 0].into(),
            end: [10, 2, 0, 255].into(),
        }),
        v6(2),
    ];
    (tsi, tsr)
}

#[test]
fn cert_ike_auth_request() {
    let b = vector!("cert_05_ike_auth_req");
    let m = message(&b);
    assert_eq!((m.header.spi_i, m.header.spi_r, m.header.message_id), (CERT_SPI_I, CERT_SPI_R, 1));
    let ps = inner(&b, &m, &vector!("cert_05_ike_auth_req.inner"));
    assert_eq!(types(&ps), [35, 37, 41, 38, 36, 39, 33, 44, 45, 41, 41, 41, 41, 41]);
    assert_eq!(ps[0], Payload::IdI(Identification::fqdn("left.example.test")));
    assert_eq!(ps[4], Payload::IdR(Identification::fqdn("right.example.test")));
    check_cert(&ps, "left.example.test");
    assert_eq!(ca_keyid(&ps), ca_keyid(&message(&vector!("cert_04_ike_sa_init_resp")).payloads));
    check_ecdsa_auth(&ps);
    // esp_proposals = aes256-sha256-esn-noesn, aes128gcm16: both ESN transforms in the first.
    let esp = sa(&ps);
    assert_eq!(esp.len(), 2);
    assert_eq!((esp[0].protocol, esp[0].spi), (ProtocolId::ESP, Spi::Four(0x720d_2490)));
    assert_eq!(
        transforms(&esp[0]),
        [
            (T::ENCR, encr::AES_CBC, Some(256)),
            (T::INTEG, integ::HMAC_SHA2_256_128, None),
            (T::ESN, esn::ESN, None),
            NO_ESN
        ]
    );
    assert_eq!((esp[1].number, esp[1].spi), (2, Spi::Four(0x720d_2490)));
    assert_eq!(transforms(&esp[1]), [gcm(128), NO_ESN]);
    let (tsi, tsr) = cert_selectors();
    assert_eq!(ps[7], Payload::TsI(tsi));
    assert_eq!(ps[8], Payload::TsR(tsr));
    assert_eq!(notifies(&ps)[0], NotifyType::INITIAL_CONTACT);
}

#[test]
fn cert_ike_auth_response() {
    let b = vector!("cert_06_ike_auth_resp");
    let m = message(&b);
    assert!(m.header.response);
    let ps = inner(&b, &m, &vector!("cert_06_ike_auth_resp.inner"));
    assert_eq!(types(&ps), [36, 37, 39, 33, 44, 45, 41, 41]);
    assert_eq!(ps[0], Payload::IdR(Identification::fqdn("right.example.test")));
    check_cert(&ps, "right.example.test");
    check_ecdsa_auth(&ps);
    // The responder prefers its own order (aes128gcm16 first) and echoes proposal number 2.
    let esp = sa(&ps);
    assert_eq!(esp.len(), 1);
    assert_eq!((esp[0].number, esp[0].spi), (2, Spi::Four(0x2b7d_a0a3)));
    assert_eq!(transforms(&esp[0]), [gcm(128), NO_ESN]);
    let (tsi, tsr) = cert_selectors();
    assert_eq!(ps[4], Payload::TsI(tsi));
    assert_eq!(ps[5], Payload::TsR(tsr));
}

#[test]
fn cert_delete() {
    let b = vector!("cert_07_informational_req");
    let m = message(&b);
    let ps = inner(&b, &m, &vector!("cert_07_informational_req.inner"));
    assert_eq!(ps, [Payload::Delete(Delete { protocol: ProtocolId::IKE, spis: vec![] })]);
    let b = vector!("cert_08_informational_resp");
    let m = message(&b);
    assert!(inner(&b, &m, &vector!("cert_08_informational_resp.inner")).is_empty());
}

/// Every vector: truncated anywhere it is an error, never a panic; with reserved bits set it
/// parses to the same message (RFC 7296: ignored on receipt).
#[test]
fn every_vector_survives_truncation() {
    for b in [
        vector!("psk_01_ike_sa_init_req"),
        vector!("psk_02_ike_sa_init_resp"),
        vector!("cert_04_ike_sa_init_resp"),
        vector!("cert_05_ike_auth_req"),
    ] {
        let m = Message::parse(&b).unwrap();
        for n in 0..b.len() {
            let mut t = b[..n].to_vec();
            if n >= HEADER_LEN {
                // With the length field fixed up, the payload chain itself must catch it.
                t[24..28].copy_from_slice(&(n as u32).to_be_bytes());
            }
            assert!(Message::parse(&t).is_err(), "{n} bytes");
        }
        let mut v = b.clone();
        v[19] |= flags::VERSION;
        v[17] |= 0x01; // minor version
        v[29] |= 0x01; // first payload's RESERVED bits
        assert_eq!(Message::parse(&v).unwrap(), m);
    }
}
