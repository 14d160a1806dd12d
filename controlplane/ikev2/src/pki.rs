//! Certificate authentication: X.509 certificates checked against configured CAs, identities
//! bound to them (RFC 7296 sections 3.5 and 3.6, RFC 5280), and the signatures of the AUTH
//! payload (RFC 7296 2.15 with RFC 7427 Digital Signature, RFC 4754 ECDSA).
//!
//! Parsing of certificates is x509-parser's; every signature (certificate or AUTH) is checked
//! and made by ring. What the peer sends (CERT payloads, AUTH data, DER_ASN1_DN identities)
//! goes through [`Cert::from_der`], [`verify_auth`] and [`Dn::from_der`], which return errors
//! and never panic; fuzz/fuzz_targets/certificate.rs exercises them.

use crate::wire::{AuthMethod, IdType, Identification, hash};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use sha1::{Digest, Sha1};
use std::fmt;
use std::net::IpAddr;
use x509_parser::der_parser::asn1_rs::ToDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkiError {
    #[error("not a valid certificate: {0}")]
    BadCertificate(String),
    #[error("not a usable private key: {0}")]
    BadKey(String),
    #[error("unsupported {0}")]
    Unsupported(String),
    #[error("{0}")]
    Chain(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("bad AUTH data: {0}")]
    BadAuth(&'static str),
    #[error("the peer accepts none of the hash algorithms this key can sign with (RFC 7427 section 4)")]
    NoCommonHash,
}

// Object identifiers, as DER content octets.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const OID_RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const OID_SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];

/// The hash algorithms we can sign and verify with, as SIGNATURE_HASH_ALGORITHMS announces
/// them (RFC 7427 section 4).
pub const SIGNATURE_HASHES: [u16; 3] = [hash::SHA2_256, hash::SHA2_384, hash::SHA2_512];

// ---- a minimal DER reader and writer, for the few structures x509-parser does not cover ----

/// One DER element: tag and content. Only definite lengths, as DER requires.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |a, &b| (a << 8) | usize::from(b)), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn der_expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, content, rest) = der_next(input)?;
    (tag == want).then_some((content, rest))
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    let n = content.len();
    if n < 0x80 {
        v.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
        v.push(0x80 | bytes.len() as u8);
        v.extend_from_slice(&bytes);
    }
    v.extend_from_slice(content);
    v
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const BIT_STRING: u8 = 0x03;
const INTEGER: u8 = 0x02;
const NULL: u8 = 0x05;

/// An AlgorithmIdentifier: its OID and the DER of its parameters (empty if absent).
fn parse_algorithm_identifier(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (body, rest) = der_expect(der, SEQUENCE)?;
    if !rest.is_empty() {
        return None;
    }
    let (oid, params) = der_expect(body, OID)?;
    Some((oid, params))
}

/// The hash of RSASSA-PSS-params (RFC 4055 section 3.1); ring supports MGF1 with the same
/// hash and a salt as long as the hash, which is what IKE implementations send (RFC 7427 A.4).
fn pss_hash(params: &[u8]) -> Option<HashAlg> {
    let (body, _) = der_expect(params, SEQUENCE)?;
    // [0] hashAlgorithm; absent means SHA-1, which ring does not offer for PSS.
    let (hash_alg, _) = der_expect(body, 0xa0)?;
    let (oid, _) = parse_algorithm_identifier(hash_alg)?;
    HashAlg::from_oid(oid)
}

// ---- keys and algorithms ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    fn from_oid(oid: &[u8]) -> Option<Self> {
        match oid {
            OID_SHA256 => Some(HashAlg::Sha256),
            OID_SHA384 => Some(HashAlg::Sha384),
            OID_SHA512 => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    fn ike_id(self) -> u16 {
        match self {
            HashAlg::Sha256 => hash::SHA2_256,
            HashAlg::Sha384 => hash::SHA2_384,
            HashAlg::Sha512 => hash::SHA2_512,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    EcdsaP256,
    EcdsaP384,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::Rsa => "RSA",
            KeyType::EcdsaP256 => "ECDSA P-256",
            KeyType::EcdsaP384 => "ECDSA P-384",
        })
    }
}

/// A public key from a SubjectPublicKeyInfo.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_type: KeyType,
    /// What ring verifies with: the RSAPublicKey DER, or the uncompressed EC point.
    raw: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_type)
    }
}

impl PublicKey {
    fn from_spki(alg_oid: &[u8], params: &[u8], key: &[u8]) -> Result<Self, PkiError> {
        let key_type = match alg_oid {
            OID_RSA => KeyType::Rsa,
            OID_EC_PUBLIC_KEY => match der_expect(params, OID).map(|(c, _)| c) {
                Some(OID_P256) => KeyType::EcdsaP256,
                Some(OID_P384) => KeyType::EcdsaP384,
                _ => return Err(PkiError::Unsupported("elliptic curve (only P-256 and P-384)".into())),
            },
            _ => return Err(PkiError::Unsupported("public key algorithm (only RSA and ECDSA)".into())),
        };
        Ok(PublicKey { key_type, raw: key.to_vec() })
    }

    /// Checks `signature` over `message` made with the algorithm `alg_oid` (+ `params`) names.
    fn verify(&self, alg_oid: &[u8], params: &[u8], message: &[u8], signature: &[u8]) -> Result<(), PkiError> {
        let alg: &dyn sig::VerificationAlgorithm = match (self.key_type, alg_oid) {
            (KeyType::Rsa, OID_RSA_SHA256) => &sig::RSA_PKCS1_2048_8192_SHA256,
            (KeyType::Rsa, OID_RSA_SHA384) => &sig::RSA_PKCS1_2048_8192_SHA384,
            (KeyType::Rsa, OID_RSA_SHA512) => &sig::RSA_PKCS1_2048_8192_SHA512,
            (KeyType::Rsa, OID_RSA_PSS) => match pss_hash(params) {
                Some(HashAlg::Sha256) => &sig::RSA_PSS_2048_8192_SHA256,
                Some(HashAlg::Sha384) => &sig::RSA_PSS_2048_8192_SHA384,
                Some(HashAlg::Sha512) => &sig::RSA_PSS_2048_8192_SHA512,
                None => return Err(PkiError::Unsupported("RSASSA-PSS parameters".into())),
            },
            (KeyType::EcdsaP256, OID_ECDSA_SHA256) => &sig::ECDSA_P256_SHA256_ASN1,
            (KeyType::EcdsaP256, OID_ECDSA_SHA384) => &sig::ECDSA_P256_SHA384_ASN1,
            (KeyType::EcdsaP384, OID_ECDSA_SHA256) => &sig::ECDSA_P384_SHA256_ASN1,
            (KeyType::EcdsaP384, OID_ECDSA_SHA384) => &sig::ECDSA_P384_SHA384_ASN1,
            (kt, _) => return Err(PkiError::Unsupported(format!("signature algorithm for a {kt} key"))),
        };
        sig::UnparsedPublicKey::new(alg, &self.raw).verify(message, signature).map_err(|_| PkiError::BadSignature)
    }
}

// ---- distinguished names ----

/// A distinguished name as a sequence of (attribute OID, value) pairs, compared the way
/// RFC 5280 7.1 suggests in practice: same attributes in the same order, values equal
/// ignoring ASCII case and the ASN.1 string type.
#[derive(Clone, PartialEq, Eq)]
pub struct Dn {
    rdns: Vec<(Vec<u8>, String)>,
    der: Vec<u8>,
}

/// Attribute short names as strongSwan and OpenSSL print them.
const DN_ATTRS: &[(&str, &[u8])] = &[
    ("C", &[0x55, 0x04, 0x06]),
    ("ST", &[0x55, 0x04, 0x08]),
    ("L", &[0x55, 0x04, 0x07]),
    ("O", &[0x55, 0x04, 0x0a]),
    ("OU", &[0x55, 0x04, 0x0b]),
    ("CN", &[0x55, 0x04, 0x03]),
    ("SN", &[0x55, 0x04, 0x04]),
    ("serialNumber", &[0x55, 0x04, 0x05]),
    ("T", &[0x55, 0x04, 0x0c]),
    ("G", &[0x55, 0x04, 0x2a]),
    ("E", &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]),
    ("DC", &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19]),
    ("UID", &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01]),
];

impl Dn {
    /// `C=CH, O=strongSwan, CN=moon` (strongSwan's and RFC 4514's order: most significant
    /// first, as the DER has it). Values are PrintableString where they can be, IA5String for
    /// E and DC, UTF8String otherwise; a `,` inside a value is written `\,`.
    pub fn parse(s: &str) -> Result<Dn, String> {
        let mut rdns = Vec::new();
        let mut der = Vec::new();
        for part in split_unescaped(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').ok_or_else(|| format!("'{part}' is not attribute=value"))?;
            let (k, v) = (k.trim(), v.trim().replace("\\,", ","));
            let &(name, oid) = DN_ATTRS
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k) || (k.eq_ignore_ascii_case("emailAddress") && *n == "E"))
                .ok_or_else(|| format!("unknown DN attribute '{k}'"))?;
            if v.is_empty() {
                return Err(format!("empty value for {k}"));
            }
            let string_tag = if name == "E" || name == "DC" {
                0x16 // IA5String
            } else if v.bytes().all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?*".contains(&b)) {
                0x13 // PrintableString ('*' is not printable, but only patterns carry it)
            } else {
                0x0c // UTF8String
            };
            let atv = der_tlv(SEQUENCE, &[der_tlv(OID, oid), der_tlv(string_tag, v.as_bytes())].concat());
            der.extend(der_tlv(SET, &atv));
            rdns.push((oid.to_vec(), v));
        }
        if rdns.is_empty() {
            return Err("empty distinguished name".into());
        }
        Ok(Dn { rdns, der: der_tlv(SEQUENCE, &der) })
    }

    /// A Name as it appears in a certificate or a DER_ASN1_DN identity.
    pub fn from_der(der: &[u8]) -> Result<Dn, PkiError> {
        let (rest, name) =
            X509Name::from_der(der).map_err(|e| PkiError::BadCertificate(format!("distinguished name: {e}")))?;
        if !rest.is_empty() {
            return Err(PkiError::BadCertificate("bytes after the distinguished name".into()));
        }
        Self::from_name(&name, der)
    }

    fn from_name(name: &X509Name, der: &[u8]) -> Result<Dn, PkiError> {
        let mut rdns = Vec::new();
        for rdn in name.iter() {
            for atv in rdn.iter() {
                let value = atv
                    .as_str()
                    .map_err(|_| PkiError::Unsupported("distinguished name value that is not a string".into()))?;
                rdns.push((atv.attr_type().as_bytes().to_vec(), value.to_string()));
            }
        }
        Ok(Dn { rdns, der: der.to_vec() })
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Whether `self`, read as a pattern, matches `other`: same attributes in the same order,
    /// each value equal ignoring case, or `*` in the pattern for any value (strongSwan's
    /// wildcards, so that one connection accepts every branch of an organisation).
    pub fn matches(&self, other: &Dn) -> bool {
        self.rdns.len() == other.rdns.len()
            && self
                .rdns
                .iter()
                .zip(&other.rdns)
                .all(|((ka, va), (kb, vb))| ka == kb && (va == "*" || va.eq_ignore_ascii_case(vb)))
    }
}

fn split_unescaped(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        match c {
            ',' if !escaped => parts.push(String::new()),
            _ => parts.last_mut().expect("never empty").push(c),
        }
        escaped = c == '\\' && !escaped;
    }
    parts
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (oid, value)) in self.rdns.iter().enumerate() {
            let name = DN_ATTRS.iter().find(|(_, o)| *o == oid.as_slice()).map(|(n, _)| n.to_string());
            let name = name.unwrap_or_else(|| oid.iter().map(|b| format!("{b:02x}")).collect());
            write!(f, "{}{name}={}", if i > 0 { ", " } else { "" }, value.replace(',', "\\,"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dn(\"{self}\")")
    }
}

/// Whether the identity `id` matches the configured pattern `pattern`: equal, or a
/// DN with `*` values, or `*.example.com` / `*@example.com` (any host of a domain, any user of
/// it), or `%any` (an FQDN "%any", as strongSwan writes it).
pub fn id_matches(pattern: &Identification, id: &Identification) -> bool {
    if pattern == id {
        return true;
    }
    if pattern.id_type == IdType::FQDN && pattern.data == b"%any" {
        return true;
    }
    if pattern.id_type != id.id_type {
        return false;
    }
    match pattern.id_type {
        IdType::DER_ASN1_DN => match (Dn::from_der(&pattern.data), Dn::from_der(&id.data)) {
            (Ok(p), Ok(i)) => p.matches(&i),
            _ => false,
        },
        IdType::FQDN | IdType::RFC822_ADDR => {
            let (p, i) = (pattern.data.to_ascii_lowercase(), id.data.to_ascii_lowercase());
            match p.strip_prefix(b"*") {
                Some(suffix) => i.len() > suffix.len() && i.ends_with(suffix),
                None => p == i,
            }
        }
        _ => false,
    }
}

/// An identity for printing: the address, name or DN.
pub fn id_text(id: &Identification) -> String {
    match id.id_type {
        IdType::IPV4_ADDR if id.data.len() == 4 => {
            IpAddr::from(<[u8; 4]>::try_from(id.data.as_slice()).expect("4 bytes")).to_string()
        }
        IdType::IPV6_ADDR if id.data.len() == 16 => {
            IpAddr::from(<[u8; 16]>::try_from(id.data.as_slice()).expect("16 bytes")).to_string()
        }
        IdType::FQDN | IdType::RFC822_ADDR => String::from_utf8_lossy(&id.data).into_owned(),
        IdType::DER_ASN1_DN => Dn::from_der(&id.data).map(|d| d.to_string()).unwrap_or_else(|_| "(bad DN)".into()),
        t => format!("{t:?} ({} bytes)", id.data.len()),
    }
}

// ---- certificates ----

/// An X.509 certificate with what authentication needs from it.
#[derive(Clone)]
pub struct Cert {
    der: Vec<u8>,
    pub subject: Dn,
    pub issuer: Dn,
    /// Validity, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// basicConstraints cA (RFC 5280 4.2.1.9), with its pathLenConstraint.
    pub is_ca: bool,
    path_len: Option<u32>,
    /// keyUsage present without keyCertSign: not for signing certificates.
    no_cert_sign: bool,
    /// keyUsage present without digitalSignature: not for signing AUTH payloads.
    no_digital_signature: bool,
    pub key: PublicKey,
    spki_der: Vec<u8>,
    pub dns_names: Vec<String>,
    pub emails: Vec<String>,
    pub ips: Vec<IpAddr>,
    tbs: Vec<u8>,
    sig_oid: Vec<u8>,
    sig_params: Vec<u8>,
    signature: Vec<u8>,
}

impl fmt::Debug for Cert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cert").field("subject", &self.subject).field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl Cert {
    pub fn from_der(der: &[u8]) -> Result<Cert, PkiError> {
        let bad = |e: String| PkiError::BadCertificate(e);
        let (rest, c) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
        if !rest.is_empty() {
            return Err(bad("bytes after the certificate".into()));
        }
        let spki = c.public_key();
        let params = spki.algorithm.parameters.as_ref().map(|p| p.to_der_vec().unwrap_or_default()).unwrap_or_default();
        let key = PublicKey::from_spki(spki.algorithm.algorithm.as_bytes(), &params, &spki.subject_public_key.data)?;
        let bc = c.basic_constraints().map_err(|e| bad(format!("basicConstraints: {e}")))?;
        let ku = c.key_usage().map_err(|e| bad(format!("keyUsage: {e}")))?;
        let (mut dns_names, mut emails, mut ips) = (Vec::new(), Vec::new(), Vec::new());
        if let Some(san) = c.subject_alternative_name().map_err(|e| bad(format!("subjectAltName: {e}")))? {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => dns_names.push(n.to_string()),
                    GeneralName::RFC822Name(n) => emails.push(n.to_string()),
                    GeneralName::IPAddress(a) => match a.len() {
                        4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*a).expect("4 bytes"))),
                        16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*a).expect("16 bytes"))),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        let sig_params =
            c.signature_algorithm.parameters.as_ref().map(|p| p.to_der_vec().unwrap_or_default()).unwrap_or_default();
        Ok(Cert {
            subject: Dn::from_name(c.subject(), c.subject().as_raw())?,
            issuer: Dn::from_name(c.issuer(), c.issuer().as_raw())?,
            not_before: c.validity().not_before.timestamp(),
            not_after: c.validity().not_after.timestamp(),
            is_ca: bc.as_ref().is_some_and(|b| b.value.ca),
            path_len: bc.and_then(|b| b.value.path_len_constraint),
            no_cert_sign: ku.as_ref().is_some_and(|k| !k.value.key_cert_sign()),
            no_digital_signature: ku.as_ref().is_some_and(|k| !k.value.digital_signature()),
            key,
            spki_der: spki.raw.to_vec(),
            dns_names,
            emails,
            ips,
            tbs: c.tbs_certificate.as_ref().to_vec(),
            sig_oid: c.signature_algorithm.algorithm.as_bytes().to_vec(),
            sig_params,
            signature: c.signature_value.data.to_vec(),
            der: der.to_vec(),
        })
    }

    /// Every certificate in a PEM file (or the one certificate of a DER file).
    pub fn load_all(bytes: &[u8]) -> Result<Vec<Cert>, PkiError> {
        if bytes.first() == Some(&SEQUENCE) {
            return Ok(vec![Cert::from_der(bytes)?]);
        }
        let mut certs = Vec::new();
        for pem in x509_parser::pem::Pem::iter_from_buffer(bytes) {
            let pem = pem.map_err(|e| PkiError::BadCertificate(format!("PEM: {e}")))?;
            if pem.label == "CERTIFICATE" {
                certs.push(Cert::from_der(&pem.contents)?);
            }
        }
        if certs.is_empty() {
            return Err(PkiError::BadCertificate("no CERTIFICATE in the file".into()));
        }
        Ok(certs)
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-1 of the SubjectPublicKeyInfo: how a CERTREQ names a CA (RFC 7296 3.7).
    pub fn key_id(&self) -> [u8; 20] {
        Sha1::digest(&self.spki_der).into()
    }

    /// Whether the certificate vouches for `id` (RFC 7296 3.5, 4: the identity must be the
    /// subject or one of its subjectAltNames).
    pub fn binds(&self, id: &Identification) -> bool {
        let text = || String::from_utf8_lossy(&id.data).to_ascii_lowercase();
        match id.id_type {
            IdType::DER_ASN1_DN => Dn::from_der(&id.data).is_ok_and(|d| d.matches(&self.subject)),
            IdType::FQDN => self.dns_names.iter().any(|n| n.eq_ignore_ascii_case(&text())),
            IdType::RFC822_ADDR => self.emails.iter().any(|n| n.eq_ignore_ascii_case(&text())),
            IdType::IPV4_ADDR | IdType::IPV6_ADDR => self
                .ips
                .iter()
                .any(|a| Identification::ip(*a).data == id.data && Identification::ip(*a).id_type == id.id_type),
            _ => false,
        }
    }

    /// The identity to send when none is configured: the subject DN, as in the certificate.
    pub fn subject_id(&self) -> Identification {
        Identification { id_type: IdType::DER_ASN1_DN, data: self.subject.der().to_vec() }
    }

    fn valid_at(&self, now: i64) -> Result<(), PkiError> {
        if now < self.not_before {
            return Err(PkiError::Chain(format!("certificate \"{}\" is not valid yet", self.subject)));
        }
        if now > self.not_after {
            return Err(PkiError::Chain(format!("certificate \"{}\" has expired", self.subject)));
        }
        Ok(())
    }

    /// Whether `issuer` signed this certificate.
    fn signed_by(&self, issuer: &Cert) -> bool {
        self.issuer.matches(&issuer.subject)
            && issuer.key.verify(&self.sig_oid, &self.sig_params, &self.tbs, &self.signature).is_ok()
    }
}

/// Trust anchors: the CA certificates a connection accepts peers of.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    cas: Vec<Cert>,
}

/// How many certificates a chain may hold below its trust anchor.
pub const MAX_CHAIN: usize = 8;

impl TrustStore {
    pub fn new(cas: Vec<Cert>) -> Result<Self, PkiError> {
        for ca in &cas {
            if !ca.is_ca {
                return Err(PkiError::Chain(format!(
                    "\"{}\" is not a CA certificate (no basicConstraints cA)",
                    ca.subject
                )));
            }
        }
        Ok(TrustStore { cas })
    }

    pub fn is_empty(&self) -> bool {
        self.cas.is_empty()
    }

    /// The CERTREQ data naming our CAs (RFC 7296 3.7): their key ids, concatenated.
    pub fn certreq(&self) -> Vec<u8> {
        self.cas.iter().flat_map(|c| c.key_id()).collect()
    }

    /// Checks that `end` chains to one of our CAs, through `intermediates` (the peer's other
    /// CERT payloads) if need be: every signature verifies, every certificate is valid at
    /// `now` (Unix seconds), every issuer is a CA allowed to sign certificates and within its
    /// path length (RFC 5280 6.1, without policies or name constraints).
    pub fn verify(&self, end: &Cert, intermediates: &[Cert], now: i64) -> Result<(), PkiError> {
        end.valid_at(now)?;
        if end.no_digital_signature {
            return Err(PkiError::Chain(format!("certificate \"{}\" may not sign (keyUsage)", end.subject)));
        }
        let mut cert = end;
        for depth in 0..MAX_CHAIN {
            let may_issue = |c: &Cert| c.is_ca && !c.no_cert_sign && c.path_len.is_none_or(|n| n as usize >= depth);
            if let Some(ca) = self.cas.iter().find(|ca| may_issue(ca) && cert.signed_by(ca)) {
                return ca.valid_at(now);
            }
            let Some(next) = intermediates.iter().find(|c| may_issue(c) && cert.signed_by(c)) else {
                return Err(PkiError::Chain(format!(
                    "no trusted CA issued \"{}\" (issuer \"{}\")",
                    cert.subject, cert.issuer
                )));
            };
            next.valid_at(now)?;
            cert = next;
        }
        Err(PkiError::Chain("certificate chain too long".into()))
    }
}

// ---- private keys and AUTH signatures ----

enum KeyPairInner {
    Rsa(sig::RsaKeyPair),
    Ecdsa(sig::EcdsaKeyPair, KeyType),
}

/// Our private key. ring keeps it; it is never printed.
pub struct PrivateKey {
    inner: KeyPairInner,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, redacted)", self.key_type())
    }
}

impl PrivateKey {
    /// A PEM or DER file: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
    /// (`EC PRIVATE KEY`), as `pki --gen` and `openssl genpkey` write them.
    pub fn load(bytes: &[u8]) -> Result<PrivateKey, PkiError> {
        if bytes.first() == Some(&SEQUENCE) {
            return Self::from_der(bytes);
        }
        for pem in x509_parser::pem::Pem::iter_from_buffer(bytes) {
            let pem = pem.map_err(|e| PkiError::BadKey(format!("PEM: {e}")))?;
            if pem.label.ends_with("PRIVATE KEY") {
                return Self::from_der(&pem.contents);
            }
        }
        Err(PkiError::BadKey("no PRIVATE KEY in the file".into()))
    }

    fn from_der(der: &[u8]) -> Result<PrivateKey, PkiError> {
        let rng = SystemRandom::new();
        let inner = if let Ok(k) = sig::RsaKeyPair::from_pkcs8(der) {
            KeyPairInner::Rsa(k)
        } else if let Ok(k) = sig::RsaKeyPair::from_der(der) {
            KeyPairInner::Rsa(k)
        } else if let Ok(k) = sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng) {
            KeyPairInner::Ecdsa(k, KeyType::EcdsaP256)
        } else if let Ok(k) = sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P384_SHA384_ASN1_SIGNING, der, &rng) {
            KeyPairInner::Ecdsa(k, KeyType::EcdsaP384)
        } else {
            Self::from_sec1(der, &rng)?
        };
        Ok(PrivateKey { inner })
    }

    /// ECPrivateKey (RFC 5915): version 1, the scalar, [0] the curve, [1] the public point.
    fn from_sec1(der: &[u8], rng: &SystemRandom) -> Result<KeyPairInner, PkiError> {
        let bad = || PkiError::BadKey("neither PKCS#8, PKCS#1 RSA nor SEC1 EC (P-256, P-384)".into());
        let (body, _) = der_expect(der, SEQUENCE).ok_or_else(bad)?;
        let (version, rest) = der_expect(body, INTEGER).ok_or_else(bad)?;
        let (scalar, rest) = der_expect(rest, OCTET_STRING).filter(|_| version == [1]).ok_or_else(bad)?;
        let (params, rest) = der_expect(rest, 0xa0).ok_or_else(bad)?;
        let (public, _) = der_expect(rest, 0xa1).and_then(|(p, _)| der_expect(p, BIT_STRING)).ok_or_else(bad)?;
        let point = public.strip_prefix(&[0]).ok_or_else(bad)?;
        let (alg, kt) = match der_expect(params, OID).map(|(c, _)| c) {
            Some(OID_P256) => (&sig::ECDSA_P256_SHA256_ASN1_SIGNING, KeyType::EcdsaP256),
            Some(OID_P384) => (&sig::ECDSA_P384_SHA384_ASN1_SIGNING, KeyType::EcdsaP384),
            _ => return Err(PkiError::Unsupported("elliptic curve (only P-256 and P-384)".into())),
        };
        let k = sig::EcdsaKeyPair::from_private_key_and_public_key(alg, scalar, point, rng)
            .map_err(|e| PkiError::BadKey(e.to_string()))?;
        Ok(KeyPairInner::Ecdsa(k, kt))
    }

    pub fn key_type(&self) -> KeyType {
        match &self.inner {
            KeyPairInner::Rsa(_) => KeyType::Rsa,
            KeyPairInner::Ecdsa(_, kt) => *kt,
        }
    }

    /// Whether `cert` holds our public key (a configuration check).
    pub fn matches(&self, cert: &Cert) -> bool {
        let public = match &self.inner {
            KeyPairInner::Rsa(k) => k.public().as_ref(),
            KeyPairInner::Ecdsa(k, _) => k.public_key().as_ref(),
        };
        cert.key.key_type == self.key_type() && cert.key.raw == public
    }

    /// Signs the AUTH octets (RFC 7296 2.15). With the peer's SIGNATURE_HASH_ALGORITHMS
    /// (`peer_hashes`, RFC 7427 section 4) the method is Digital Signature (14) and the data
    /// starts with the AlgorithmIdentifier (section 3); without it, ECDSA keys use the
    /// RFC 4754 methods (9, 10), and RSA, which would need SHA-1 (method 1), is refused.
    pub fn sign_auth(&self, peer_hashes: Option<&[u16]>, octets: &[u8]) -> Result<(AuthMethod, Vec<u8>), PkiError> {
        let rng = SystemRandom::new();
        let fail = |_| PkiError::BadKey("signing failed".into());
        match (&self.inner, peer_hashes) {
            (KeyPairInner::Rsa(k), Some(hashes)) => {
                let (_, padding, oid) = [
                    (HashAlg::Sha256, &sig::RSA_PKCS1_SHA256, OID_RSA_SHA256),
                    (HashAlg::Sha384, &sig::RSA_PKCS1_SHA384, OID_RSA_SHA384),
                    (HashAlg::Sha512, &sig::RSA_PKCS1_SHA512, OID_RSA_SHA512),
                ]
                .into_iter()
                .find(|(h, _, _)| hashes.contains(&h.ike_id()))
                .ok_or(PkiError::NoCommonHash)?;
                let mut signature = vec![0; k.public().modulus_len()];
                k.sign(padding, &rng, octets, &mut signature).map_err(fail)?;
                // sha*WithRSAEncryption carries NULL parameters (RFC 7427 A.1).
                let alg_id = der_tlv(SEQUENCE, &[der_tlv(OID, oid), der_tlv(NULL, &[])].concat());
                Ok((AuthMethod::DIGITAL_SIGNATURE, digital_signature_data(&alg_id, &signature)))
            }
            (KeyPairInner::Rsa(_), None) => Err(PkiError::Unsupported(
                "RSA without RFC 7427 (the peer did not send SIGNATURE_HASH_ALGORITHMS; method 1 needs SHA-1)".into(),
            )),
            (KeyPairInner::Ecdsa(k, kt), Some(hashes)) => {
                // ring signs P-256 with SHA-256 and P-384 with SHA-384 (RFC 5480 section 4).
                let (hash, oid) = match kt {
                    KeyType::EcdsaP384 => (HashAlg::Sha384, OID_ECDSA_SHA384),
                    _ => (HashAlg::Sha256, OID_ECDSA_SHA256),
                };
                if !hashes.contains(&hash.ike_id()) {
                    return Err(PkiError::NoCommonHash);
                }
                let signature = k.sign(&rng, octets).map_err(fail)?;
                // ecdsa-with-SHA* has no parameters (RFC 7427 A.3).
                let alg_id = der_tlv(SEQUENCE, &der_tlv(OID, oid));
                Ok((AuthMethod::DIGITAL_SIGNATURE, digital_signature_data(&alg_id, signature.as_ref())))
            }
            (KeyPairInner::Ecdsa(k, kt), None) => {
                // RFC 4754: r | s, fixed length, with the curve's own hash. ring fixes the
                // signature format per key pair, so the ASN.1 form is converted: same (r, s).
                let (len, method) = match kt {
                    KeyType::EcdsaP384 => (48, AuthMethod::ECDSA_SHA384_P384),
                    _ => (32, AuthMethod::ECDSA_SHA256_P256),
                };
                let asn1 = k.sign(&rng, octets).map_err(fail)?;
                let fixed = ecdsa_der_to_fixed(asn1.as_ref(), len).ok_or(PkiError::BadKey("signing failed".into()))?;
                Ok((method, fixed))
            }
        }
    }
}

/// Ecdsa-Sig-Value (DER SEQUENCE of two INTEGERs) to r | s of `len` bytes each.
fn ecdsa_der_to_fixed(der: &[u8], len: usize) -> Option<Vec<u8>> {
    let (body, _) = der_expect(der, SEQUENCE)?;
    let (r, rest) = der_expect(body, INTEGER)?;
    let (s, _) = der_expect(rest, INTEGER)?;
    let mut out = vec![0; 2 * len];
    for (i, v) in [r, s].into_iter().enumerate() {
        let v = v.strip_prefix(&[0]).unwrap_or(v);
        if v.len() > len {
            return None;
        }
        out[(i + 1) * len - v.len()..(i + 1) * len].copy_from_slice(v);
    }
    Some(out)
}

/// RFC 7427 section 3: ASN.1 Length (one octet), AlgorithmIdentifier, Signature Value.
fn digital_signature_data(alg_id: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + alg_id.len() + signature.len());
    v.push(alg_id.len() as u8);
    v.extend_from_slice(alg_id);
    v.extend_from_slice(signature);
    v
}

/// Checks a signature AUTH payload against the peer's certified key: Digital Signature
/// (RFC 7427) with any algorithm we support, or the RFC 4754 ECDSA methods. RSA method 1
/// (SHA-1) is refused.
pub fn verify_auth(key: &PublicKey, method: AuthMethod, data: &[u8], octets: &[u8]) -> Result<(), PkiError> {
    match method {
        AuthMethod::DIGITAL_SIGNATURE => {
            let (&len, rest) = data.split_first().ok_or(PkiError::BadAuth("empty"))?;
            let len = usize::from(len);
            if rest.len() <= len {
                return Err(PkiError::BadAuth("shorter than its AlgorithmIdentifier"));
            }
            let (alg_id, signature) = rest.split_at(len);
            let (oid, params) =
                parse_algorithm_identifier(alg_id).ok_or(PkiError::BadAuth("malformed AlgorithmIdentifier"))?;
            key.verify(oid, params, octets, signature)
        }
        AuthMethod::ECDSA_SHA256_P256 | AuthMethod::ECDSA_SHA384_P384 => {
            let alg = match (method, key.key_type) {
                (AuthMethod::ECDSA_SHA256_P256, KeyType::EcdsaP256) => &sig::ECDSA_P256_SHA256_FIXED,
                (AuthMethod::ECDSA_SHA384_P384, KeyType::EcdsaP384) => &sig::ECDSA_P384_SHA384_FIXED,
                _ => return Err(PkiError::BadAuth("ECDSA method does not match the certificate's key")),
            };
            sig::UnparsedPublicKey::new(alg, &key.raw).verify(octets, data).map_err(|_| PkiError::BadSignature)
        }
        _ => Err(PkiError::Unsupported(format!("AUTH method {method:?} for certificates"))),
    }
}

/// The hash algorithms a SIGNATURE_HASH_ALGORITHMS notify lists (2 octets each).
pub fn parse_hash_algorithms(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect()
}

/// Our SIGNATURE_HASH_ALGORITHMS notify data.
pub fn hash_algorithms_data() -> Vec<u8> {
    SIGNATURE_HASHES.iter().flat_map(|h| h.to_be_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_round_trip_and_wildcards() {
        let dn = Dn::parse("C=CH, O=strongSwan Project, CN=moon.strongswan.org").unwrap();
        assert_eq!(dn.to_string(), "C=CH, O=strongSwan Project, CN=moon.strongswan.org");
        let back = Dn::from_der(dn.der()).unwrap();
        assert!(dn.matches(&back) && back.matches(&dn));
        let any = Dn::parse("C=CH, O=strongswan project, CN=*").unwrap();
        assert!(any.matches(&dn));
        assert!(!dn.matches(&any));
        assert!(!Dn::parse("C=CH, CN=moon.strongswan.org").unwrap().matches(&dn));
        assert!(Dn::parse("X=1").is_err());
        assert!(Dn::parse("CN").is_err());
        let escaped = Dn::parse("O=Acme\\, Inc., CN=a").unwrap();
        assert_eq!(escaped.to_string(), "O=Acme\\, Inc., CN=a");
    }

    #[test]
    fn identity_patterns() {
        let f = Identification::fqdn;
        assert!(id_matches(&f("*.example.com"), &f("branch1.EXAMPLE.com")));
        assert!(!id_matches(&f("*.example.com"), &f("example.com")));
        assert!(id_matches(&f("%any"), &Identification::rfc822("x@y")));
        assert!(id_matches(&Identification::rfc822("*@example.com"), &Identification::rfc822("a@example.com")));
        assert!(!id_matches(&f("a.example.com"), &f("b.example.com")));
    }

    #[test]
    fn ecdsa_signature_formats() {
        // r with a leading zero octet and a short s.
        let der = [0x30, 0x08, 0x02, 0x03, 0x00, 0x81, 0x02, 0x02, 0x01, 0x05];
        let fixed = ecdsa_der_to_fixed(&der, 4).unwrap();
        assert_eq!(fixed, [0, 0, 0x81, 0x02, 0, 0, 0, 0x05]);
        assert!(ecdsa_der_to_fixed(&der[..5], 4).is_none());
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(Cert::from_der(&[]).is_err());
        assert!(Cert::from_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
        assert!(PrivateKey::load(b"nothing").is_err());
        assert!(Dn::from_der(&[0x30, 0x80]).is_err());
        let key = PublicKey { key_type: KeyType::EcdsaP256, raw: vec![4; 65] };
        for data in [&[][..], &[5, 0x30, 3], &[2, 0x30, 0, 1, 2, 3]] {
            assert!(verify_auth(&key, AuthMethod::DIGITAL_SIGNATURE, data, b"x").is_err());
        }
    }
}
