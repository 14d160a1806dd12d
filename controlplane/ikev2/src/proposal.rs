//! Proposals as operators write them (strongSwan's syntax: `aes256gcm16-prfsha256-x25519`,
//! `aes128-sha256-modp2048`, `aes128gcm16-esn`), as the SA payload carries them, and the choice
//! a responder makes among them (RFC 7296 sections 2.7 and 3.3.6).

use crate::wire::{Proposal, ProtocolId, Spi, Transform, TransformType, dh, encr, esn, integ, prf};

/// What may be negotiated for one SA, each list in order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Algorithms {
    /// (ENCR transform id, key length in bits).
    pub encr: Vec<(u16, u16)>,
    pub prf: Vec<u16>,
    pub integ: Vec<u16>,
    pub dh: Vec<u16>,
    pub esn: Vec<u16>,
}

/// One algorithm of each kind: the outcome of a negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chosen {
    pub encr: u16,
    pub key_bits: u16,
    pub prf: Option<u16>,
    pub integ: Option<u16>,
    pub dh: Option<u16>,
    pub esn: Option<bool>,
}

/// Which SA a proposal is for: the transforms each kind needs differ (RFC 7296 3.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ike,
    Esp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    #[error("unknown algorithm {0:?} in proposal {1:?}")]
    Unknown(String, String),
    #[error("proposal {0:?} names no encryption algorithm")]
    NoEncr(String),
    #[error("proposal {0:?}: {1}")]
    Incomplete(String, &'static str),
}

fn is_aead(id: u16) -> bool {
    matches!(id, encr::AES_GCM_16 | encr::AES_GCM_12 | encr::AES_GCM_8 | encr::CHACHA20_POLY1305)
}

/// The PRF that strongSwan pairs with an integrity algorithm when a proposal names none.
fn prf_for_integ(i: u16) -> Option<u16> {
    match i {
        integ::HMAC_SHA2_256_128 => Some(prf::HMAC_SHA2_256),
        integ::HMAC_SHA2_384_192 => Some(prf::HMAC_SHA2_384),
        integ::HMAC_SHA2_512_256 => Some(prf::HMAC_SHA2_512),
        _ => None,
    }
}

impl Algorithms {
    /// Parses one proposal string for an IKE or ESP SA.
    pub fn parse(kind: Kind, s: &str) -> Result<Self, ProposalError> {
        let mut a = Algorithms { encr: vec![], prf: vec![], integ: vec![], dh: vec![], esn: vec![] };
        for word in s.split('-').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "aes128" => a.encr.push((encr::AES_CBC, 128)),
                "aes256" => a.encr.push((encr::AES_CBC, 256)),
                "aes128gcm16" | "aes128gcm128" | "aes128gcm" => a.encr.push((encr::AES_GCM_16, 128)),
                "aes256gcm16" | "aes256gcm128" | "aes256gcm" => a.encr.push((encr::AES_GCM_16, 256)),
                "sha256" => a.integ.push(integ::HMAC_SHA2_256_128),
                "sha384" => a.integ.push(integ::HMAC_SHA2_384_192),
                "sha512" => a.integ.push(integ::HMAC_SHA2_512_256),
                "prfsha256" => a.prf.push(prf::HMAC_SHA2_256),
                "prfsha384" => a.prf.push(prf::HMAC_SHA2_384),
                "prfsha512" => a.prf.push(prf::HMAC_SHA2_512),
                "modp2048" => a.dh.push(dh::MODP_2048),
                "ecp256" => a.dh.push(dh::ECP_256),
                "ecp384" => a.dh.push(dh::ECP_384),
                "x25519" | "curve25519" => a.dh.push(dh::CURVE25519),
                "esn" => a.esn.push(esn::ESN),
                "noesn" => a.esn.push(esn::NO_ESN),
                _ => return Err(ProposalError::Unknown(word.to_string(), s.to_string())),
            }
        }
        if a.encr.is_empty() {
            return Err(ProposalError::NoEncr(s.to_string()));
        }
        let aead = a.encr.iter().all(|e| is_aead(e.0));
        if a.encr.iter().any(|e| is_aead(e.0)) && !aead {
            return Err(ProposalError::Incomplete(s.to_string(), "AEAD and non-AEAD ciphers cannot share a proposal"));
        }
        if !aead && a.integ.is_empty() {
            return Err(ProposalError::Incomplete(s.to_string(), "a non-AEAD cipher needs an integrity algorithm"));
        }
        if aead && !a.integ.is_empty() {
            return Err(ProposalError::Incomplete(s.to_string(), "an AEAD cipher takes no integrity algorithm"));
        }
        match kind {
            Kind::Ike => {
                if a.prf.is_empty() {
                    // strongSwan derives the PRF from the integrity algorithm.
                    a.prf = a.integ.iter().filter_map(|&i| prf_for_integ(i)).collect();
                }
                if a.prf.is_empty() {
                    return Err(ProposalError::Incomplete(
                        s.to_string(),
                        "an IKE proposal needs a PRF (prfsha256, ...)",
                    ));
                }
                if a.dh.is_empty() {
                    return Err(ProposalError::Incomplete(s.to_string(), "an IKE proposal needs a DH group"));
                }
                if !a.esn.is_empty() {
                    return Err(ProposalError::Incomplete(s.to_string(), "ESN is for ESP proposals"));
                }
            }
            Kind::Esp => {
                if !a.prf.is_empty() {
                    return Err(ProposalError::Incomplete(s.to_string(), "an ESP proposal takes no PRF"));
                }
                if a.esn.is_empty() {
                    a.esn.push(esn::NO_ESN);
                }
            }
        }
        Ok(a)
    }

    /// The proposal as the SA payload carries it (RFC 7296 3.3). A DH group in an ESP
    /// proposal asks for PFS when the SA is created or rekeyed with CREATE_CHILD_SA.
    pub fn to_wire(&self, number: u8, protocol: ProtocolId, spi: Spi, with_dh: bool) -> Proposal {
        let mut t = Vec::new();
        for &(id, bits) in &self.encr {
            t.push(Transform::new(TransformType::ENCR, id).with_key_length(bits));
        }
        t.extend(self.prf.iter().map(|&id| Transform::new(TransformType::PRF, id)));
        t.extend(self.integ.iter().map(|&id| Transform::new(TransformType::INTEG, id)));
        if with_dh {
            t.extend(self.dh.iter().map(|&id| Transform::new(TransformType::DH, id)));
        }
        t.extend(self.esn.iter().map(|&id| Transform::new(TransformType::ESN, id)));
        Proposal { number, protocol, spi, transforms: t }
    }

    /// The first of our preferences that the peer's proposal also offers, one of each kind,
    /// or None if some kind has no match. Transforms with attributes we do not know, and ENCR
    /// without a key length where one is needed, are never chosen (RFC 7296 3.3.6).
    pub fn choose(&self, theirs: &Proposal, kind: Kind, with_dh: bool) -> Option<Chosen> {
        let offered = |t: TransformType| theirs.transforms_of(t).filter(|x| !x.has_unknown_attributes());
        let encr = self
            .encr
            .iter()
            .copied()
            .find(|&(id, bits)| offered(TransformType::ENCR).any(|x| x.id == id && x.key_length() == Some(bits)))?;
        let pick = |ours: &[u16], t: TransformType| ours.iter().copied().find(|&id| offered(t).any(|x| x.id == id));
        let prf = match kind {
            Kind::Ike => Some(pick(&self.prf, TransformType::PRF)?),
            Kind::Esp => None,
        };
        let theirs_integ: Vec<u16> =
            offered(TransformType::INTEG).map(|x| x.id).filter(|&i| i != integ::NONE).collect();
        let integ = if is_aead(encr.0) {
            // RFC 7296 3.3.3: with an AEAD cipher, integrity is absent or NONE.
            if !theirs_integ.is_empty() {
                return None;
            }
            None
        } else {
            Some(pick(&self.integ, TransformType::INTEG)?)
        };
        let dh = if with_dh {
            let theirs_dh: Vec<u16> = offered(TransformType::DH).map(|x| x.id).collect();
            match (self.dh.is_empty(), theirs_dh.iter().all(|&d| d == dh::NONE)) {
                (true, true) => None,
                (false, false) => Some(pick(&self.dh, TransformType::DH)?),
                // One side wants PFS and the other does not.
                _ => return None,
            }
        } else {
            None
        };
        let esn = match kind {
            Kind::Esp => Some(pick(&self.esn, TransformType::ESN)? == esn::ESN),
            Kind::Ike => None,
        };
        Some(Chosen { encr: encr.0, key_bits: encr.1, prf, integ, dh, esn })
    }
}

impl Chosen {
    /// The accepted proposal as a responder returns it: one transform of each kind, the
    /// proposal number of the peer's (RFC 7296 2.7).
    pub fn to_wire(&self, number: u8, protocol: ProtocolId, spi: Spi) -> Proposal {
        let mut t = vec![Transform::new(TransformType::ENCR, self.encr).with_key_length(self.key_bits)];
        t.extend(self.prf.map(|id| Transform::new(TransformType::PRF, id)));
        t.extend(self.integ.map(|id| Transform::new(TransformType::INTEG, id)));
        t.extend(self.dh.map(|id| Transform::new(TransformType::DH, id)));
        t.extend(self.esn.map(|e| Transform::new(TransformType::ESN, if e { esn::ESN } else { esn::NO_ESN })));
        Proposal { number, protocol, spi, transforms: t }
    }
}

/// A responder's choice among the peer's proposals (RFC 7296 2.7): our proposals in our order
/// of preference, the first acceptable one of theirs for each. Returns the peer's proposal
/// that was accepted and what was chosen from it.
pub fn select<'a>(
    ours: &[Algorithms],
    theirs: &'a [Proposal],
    kind: Kind,
    with_dh: bool,
) -> Option<(&'a Proposal, Chosen)> {
    let protocol = match kind {
        Kind::Ike => ProtocolId::IKE,
        Kind::Esp => ProtocolId::ESP,
    };
    ours.iter().find_map(|o| {
        theirs.iter().filter(|p| p.protocol == protocol).find_map(|p| o.choose(p, kind, with_dh).map(|c| (p, c)))
    })
}

/// Checks that a responder's answer picks one transform of each kind out of what we offered
/// (RFC 7296 2.7: the initiator MUST check the accepted proposal is one of those it sent).
pub fn check_accepted(ours: &[Algorithms], accepted: &Proposal, kind: Kind, with_dh: bool) -> Option<Chosen> {
    let kinds = [TransformType::ENCR, TransformType::PRF, TransformType::INTEG, TransformType::DH, TransformType::ESN];
    if kinds.iter().any(|&t| accepted.transforms_of(t).count() > 1) {
        return None;
    }
    select(ours, std::slice::from_ref(accepted), kind, with_dh)
        .map(|(_, c)| c)
        // The answer must not carry kinds we did not negotiate.
        .filter(|c| c.integ.is_some() || accepted.transforms_of(TransformType::INTEG).all(|x| x.id == integ::NONE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strongswan_style_proposals() {
        let a = Algorithms::parse(Kind::Ike, "aes256gcm16-prfsha256-x25519").unwrap();
        assert_eq!(a.encr, vec![(encr::AES_GCM_16, 256)]);
        assert_eq!((a.prf.clone(), a.dh.clone()), (vec![prf::HMAC_SHA2_256], vec![dh::CURVE25519]));
        let c = Algorithms::parse(Kind::Ike, "aes128-sha256-modp2048").unwrap();
        assert_eq!(c.prf, vec![prf::HMAC_SHA2_256], "PRF follows the integrity algorithm");
        let e = Algorithms::parse(Kind::Esp, "aes128gcm16").unwrap();
        assert_eq!(e.esn, vec![esn::NO_ESN]);
        assert!(e.dh.is_empty());
        let e = Algorithms::parse(Kind::Esp, "aes256gcm16-ecp256-esn").unwrap();
        assert_eq!((e.dh.clone(), e.esn.clone()), (vec![dh::ECP_256], vec![esn::ESN]));
        for bad in
            ["aes128gcm16-sha256-prfsha256-x25519", "aes128-x25519-prfsha256", "3des-sha1-modp1024", "prfsha256-x25519"]
        {
            assert!(Algorithms::parse(Kind::Ike, bad).is_err(), "{bad}");
        }
        assert!(Algorithms::parse(Kind::Ike, "aes128gcm16-prfsha256").is_err(), "no DH group");
        assert!(Algorithms::parse(Kind::Esp, "aes128gcm16-prfsha256").is_err(), "ESP takes no PRF");
    }

    #[test]
    fn responder_takes_its_own_first_preference_the_peer_offers() {
        let ours = vec![
            Algorithms::parse(Kind::Ike, "aes256gcm16-prfsha384-ecp384").unwrap(),
            Algorithms::parse(Kind::Ike, "aes128gcm16-prfsha256-x25519").unwrap(),
        ];
        let theirs = vec![
            Algorithms::parse(Kind::Ike, "aes128gcm16-aes256gcm16-prfsha256-x25519-ecp256").unwrap().to_wire(
                1,
                ProtocolId::IKE,
                Spi::Empty,
                true,
            ),
            Algorithms::parse(Kind::Ike, "aes256gcm16-prfsha384-ecp384").unwrap().to_wire(
                2,
                ProtocolId::IKE,
                Spi::Empty,
                true,
            ),
        ];
        let (p, c) = select(&ours, &theirs, Kind::Ike, true).unwrap();
        assert_eq!(p.number, 2);
        assert_eq!(
            (c.encr, c.key_bits, c.prf, c.dh),
            (encr::AES_GCM_16, 256, Some(prf::HMAC_SHA2_384), Some(dh::ECP_384))
        );
        let answer = c.to_wire(p.number, ProtocolId::IKE, Spi::Empty);
        assert_eq!(check_accepted(&ours, &answer, Kind::Ike, true), Some(c));
        // Nothing in common.
        let other = vec![Algorithms::parse(Kind::Ike, "aes128-sha256-modp2048").unwrap().to_wire(
            1,
            ProtocolId::IKE,
            Spi::Empty,
            true,
        )];
        assert!(select(&ours, &other, Kind::Ike, true).is_none());
    }

    #[test]
    fn key_length_and_unknown_attributes_matter() {
        let ours = vec![Algorithms::parse(Kind::Esp, "aes256gcm16").unwrap()];
        let mut p =
            Algorithms::parse(Kind::Esp, "aes128gcm16").unwrap().to_wire(1, ProtocolId::ESP, Spi::Four(7), false);
        assert!(select(&ours, std::slice::from_ref(&p), Kind::Esp, false).is_none(), "128 is not 256");
        p.transforms[0] = Transform::new(TransformType::ENCR, encr::AES_GCM_16).with_key_length(256);
        assert!(select(&ours, std::slice::from_ref(&p), Kind::Esp, false).is_some());
        p.transforms[0].attributes.push(crate::wire::Attribute::Tv { attr_type: 99, value: 1 });
        assert!(select(&ours, std::slice::from_ref(&p), Kind::Esp, false).is_none(), "unknown attribute");
    }

    #[test]
    fn pfs_must_agree() {
        let with = vec![Algorithms::parse(Kind::Esp, "aes128gcm16-x25519").unwrap()];
        let without =
            Algorithms::parse(Kind::Esp, "aes128gcm16").unwrap().to_wire(1, ProtocolId::ESP, Spi::Four(1), true);
        assert!(select(&with, std::slice::from_ref(&without), Kind::Esp, true).is_none());
        // In IKE_AUTH no DH is negotiated for the first child SA (RFC 7296 1.2).
        assert!(select(&with, std::slice::from_ref(&without), Kind::Esp, false).is_some());
    }

    #[test]
    fn a_responder_answer_with_two_ciphers_is_refused() {
        let ours = vec![Algorithms::parse(Kind::Esp, "aes128gcm16-aes256gcm16").unwrap()];
        let answer = ours[0].to_wire(1, ProtocolId::ESP, Spi::Four(1), false);
        assert!(check_accepted(&ours, &answer, Kind::Esp, false).is_none());
    }
}
