//! Message-level tests on strongSwan's bytes (the vectors of tests/vectors, see capture.sh).

use super::*;

fn vector(text: &str) -> Vec<u8> {
    let h: String = text.lines().filter(|l| !l.starts_with('#')).flat_map(|l| l.trim().chars()).collect();
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()
}

const INIT_RESP: &str = include_str!("../../tests/vectors/psk_02_ike_sa_init_resp.txt");
const DELETE_REQ: &str = include_str!("../../tests/vectors/psk_05_informational_req.txt");

#[test]
fn ike_sa_init_response() {
    let b = vector(INIT_RESP);
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.header.exchange, ExchangeType::IKE_SA_INIT);
    assert!(m.header.response && !m.header.initiator);
    assert_eq!(m.header.spi_r, 0xc1e2_bed3_cf58_bcf5);
    let types: Vec<u8> = m.payloads.iter().map(Payload::payload_type).collect();
    assert_eq!(types, [33, 34, 40, 41, 41, 41, 41, 41, 41]);
    assert!(m.notify(NotifyType::CHILDLESS_IKEV2_SUPPORTED).is_some());
    assert!(m.notify(NotifyType::COOKIE).is_none());
    assert_eq!(m.emit(), b);
    // Emit computes next payload and length, whatever the header says.
    let mut m2 = m.clone();
    m2.header.length = 1;
    m2.header.next_payload = 99;
    assert_eq!(m2.emit(), b);
    m2.payloads.pop();
    let shorter = m2.emit();
    assert_eq!(shorter.len(), b.len() - 8);
    assert_eq!(Message::parse(&shorter).unwrap().payloads, m2.payloads);
}

#[test]
fn message_errors() {
    let b = vector(INIT_RESP);
    assert_eq!(Message::parse(&b[..27]), Err(WireError::HeaderTruncated { len: 27 }));
    assert_eq!(Message::parse(&b[..b.len() - 1]), Err(WireError::LengthMismatch { header: 240, actual: 239 }));
    let mut long = b.clone();
    long.push(0);
    assert_eq!(Message::parse(&long), Err(WireError::LengthMismatch { header: 240, actual: 241 }));
    // Fix the length field to cover the extra byte: now it is trailing garbage after the chain.
    long[24..28].copy_from_slice(&241u32.to_be_bytes());
    assert_eq!(Message::parse(&long), Err(WireError::TrailingBytes { count: 1 }));
    let mut v3 = b.clone();
    v3[17] = 0x30;
    assert_eq!(Message::parse(&v3), Err(WireError::UnsupportedMajorVersion { major: 3, minor: 0 }));
    // A payload length that overruns: the SA payload claims one byte more.
    let mut bad = b.clone();
    bad[31] += 1;
    assert!(matches!(Message::parse(&bad), Err(WireError::Malformed { payload_type: 33, .. })));
    // An unknown critical payload in the middle of a real message.
    let mut crit = b.clone();
    crit[28] = 99; // the SA payload's next payload: the KE payload becomes type 99
    crit[28 + 40 + 1] = 0x80;
    let e = Message::parse(&crit).unwrap_err();
    assert_eq!(e, WireError::UnsupportedCriticalPayload { payload_type: 99 });
    // Without the Critical bit it is kept, and emitted back identically.
    crit[28 + 40 + 1] = 0;
    let m = Message::parse(&crit).unwrap();
    assert!(matches!(m.payloads[1], Payload::Unknown { payload_type: 99, .. }));
    assert_eq!(m.emit(), crit);
}

#[test]
fn sk_prefix_matches_strongswan() {
    let b = vector(DELETE_REQ);
    let m = Message::parse(&b).unwrap();
    let sk = m.encrypted().unwrap();
    assert_eq!(sk.first_inner, payload_type::DELETE);
    let aad = sk.aad(&b).unwrap();
    assert_eq!(aad.len(), HEADER_LEN + GENERIC_HEADER_LEN);
    let prefix = sk_message_prefix(&m.header, sk.first_inner, sk.body.len(), &[]).unwrap();
    assert_eq!(prefix, aad);
    let mut whole = prefix;
    whole.extend_from_slice(&sk.body);
    assert_eq!(whole, b);
    assert_eq!(Encrypted { first_inner: 0, body: vec![1] }.aad(&b), None);
}

#[test]
fn sk_prefix_with_preceding_payloads() {
    let header = Header {
        spi_i: 1,
        spi_r: 2,
        next_payload: 0,
        exchange: ExchangeType::INFORMATIONAL,
        initiator: true,
        response: false,
        message_id: 7,
        length: 0,
    };
    let vid = Payload::VendorId(b"test".to_vec());
    let body = vec![0xa5; 40];
    let mut b = sk_message_prefix(&header, payload_type::NOTIFY, body.len(), std::slice::from_ref(&vid)).unwrap();
    assert_eq!(b.len(), HEADER_LEN + 8 + GENERIC_HEADER_LEN);
    b.extend_from_slice(&body);
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.header.next_payload, payload_type::VENDOR_ID);
    assert_eq!(m.payloads, vec![vid.clone(), Payload::Sk(Encrypted { first_inner: payload_type::NOTIFY, body })]);
    assert_eq!(m.emit(), b);
    // The same through Message::emit.
    let m2 = Message { header, payloads: m.payloads.clone() };
    assert_eq!(m2.emit(), b);
    // An SK payload in `preceding` is refused; an SK body too large for a payload, too.
    let sk = Payload::Sk(Encrypted { first_inner: 0, body: vec![] });
    assert!(sk_message_prefix(&m.header, 0, 0, &[sk]).is_err());
    assert!(sk_message_prefix(&m.header, 0, 65532, &[]).is_err());
    assert!(sk_message_prefix(&m.header, 0, 65531, &[]).is_ok());
}

#[test]
fn skf_prefix() {
    let b = vector(DELETE_REQ);
    let h = Message::parse(&b).unwrap().header;
    let mut f = skf_message_prefix(&h, payload_type::IDI, 1, 2, 30).unwrap();
    f.extend_from_slice(&[7; 30]);
    let m = Message::parse(&f).unwrap();
    assert_eq!(
        m.payloads,
        vec![Payload::Skf(EncryptedFragment {
            first_inner: payload_type::IDI,
            fragment_number: 1,
            total_fragments: 2,
            body: vec![7; 30]
        })]
    );
    assert_eq!(m.emit(), f);
}

#[test]
fn unencodable_is_an_error_not_a_panic() {
    let m = Message {
        header: Message::parse(&vector(DELETE_REQ)).unwrap().header,
        payloads: vec![Payload::Nonce(vec![0; 70_000])],
    };
    assert_eq!(m.try_emit(), Err(WireError::Unencodable { what: "payload over 65535 bytes" }));
    let sa = Payload::Sa(vec![Proposal {
        number: 1,
        protocol: ProtocolId::ESP,
        spi: Spi::Four(1),
        transforms: vec![Transform::new(TransformType::ESN, esn::NO_ESN); 256],
    }]);
    assert!(try_emit_payload_chain(&[sa]).is_err());
    assert!(try_emit_payload_chain(&[Payload::Sa(vec![])]).is_err());
    assert!(try_emit_payload_chain(&[Payload::Delete(Delete { protocol: ProtocolId::IKE, spis: vec![1] })]).is_err());
}
