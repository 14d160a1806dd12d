//! The IKEv2 wire codec on bytes from the network: `Message::parse` and `parse_payload_chain`.
//!
//! Each input is tried three ways: as a whole message; as a message after fixing up the header
//! (major version 2, Length = input length), so that random bytes get past those two checks and
//! reach the payload chain; and as a payload chain whose first type is the first byte (the
//! plaintext of an SK payload).
//!
//! For everything that parses, emitting must give bytes that parse back to the same value, of
//! the same length, and differing from the input only by cleared bits: the codec drops only what
//! RFC 7296 says to ignore on receipt and send as zero (minor version, flag bits other than I and
//! R, the Critical and RESERVED bits of recognised payloads, RESERVED fields inside payloads), so
//! `emitted & !input == 0` byte by byte, and an input without such bits comes back bit for bit.
//! For a message ending in SK, `sk_message_prefix` must rebuild exactly the emitted bytes before
//! the SK body (the AEAD additional data).
#![no_main]

use ikev2::wire::{HEADER_LEN, Message, emit_payload_chain, parse_payload_chain, payload_type, sk_message_prefix};
use libfuzzer_sys::fuzz_target;

/// `out` may only clear bits of `input`.
fn only_clears_bits(input: &[u8], out: &[u8], what: &str) {
    assert_eq!(input.len(), out.len(), "{what}: emitted length differs");
    for (i, (a, b)) in input.iter().zip(out).enumerate() {
        assert_eq!(b & !a, 0, "{what}: emit set bits at offset {i}: input {a:#04x}, emitted {b:#04x}");
    }
}

fn check_message(input: &[u8]) {
    let Ok(m) = Message::parse(input) else { return };
    let out = m.emit();
    only_clears_bits(input, &out, "message");
    let again = Message::parse(&out).expect("emitted message must parse");
    assert_eq!(again, m, "parse(emit(m)) != m");
    assert_eq!(again.emit(), out, "emit is not idempotent");
    if let Some(sk) = m.encrypted() {
        let aad = sk.aad(&out).expect("emitted message ends with the SK body");
        let preceding = &m.payloads[..m.payloads.len() - 1];
        let prefix = sk_message_prefix(&m.header, sk.first_inner, sk.body.len(), preceding).unwrap();
        assert_eq!(prefix, aad, "sk_message_prefix differs from the emitted message");
    }
}

fn check_chain(first: u8, input: &[u8]) {
    let Ok(ps) = parse_payload_chain(first, input) else { return };
    let (t, out) = emit_payload_chain(&ps);
    if ps.is_empty() {
        assert_eq!((first, input.len()), (payload_type::NONE, 0));
    }
    assert_eq!(t, first, "first payload type");
    only_clears_bits(input, &out, "chain");
    assert_eq!(parse_payload_chain(t, &out).expect("emitted chain must parse"), ps);
}

fuzz_target!(|data: &[u8]| {
    check_message(data);
    if data.len() >= HEADER_LEN {
        let mut fixed = data.to_vec();
        fixed[17] = 0x20 | (fixed[17] & 0x0f);
        let len = u32::try_from(fixed.len()).unwrap_or(u32::MAX);
        fixed[24..28].copy_from_slice(&len.to_be_bytes());
        check_message(&fixed);
    }
    if let Some((&first, rest)) = data.split_first() {
        check_chain(first, rest);
    }
});
