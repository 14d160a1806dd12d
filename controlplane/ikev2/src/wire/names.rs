//! Numbered fields of IKEv2 as newtypes over their wire integer, with the IANA names as associated
//! constants. A newtype rather than an enum with an `Other(n)` arm: every wire value has exactly
//! one representation, so parse and emit are inverse without a canonicalisation step, and unknown
//! values pass through unchanged. Constants are usable as match patterns.

macro_rules! named_number {
    (
        $(#[$meta:meta])*
        $name:ident($int:ty) {
            $( $(#[$cmeta:meta])* $konst:ident = $value:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub $int);

        impl $name {
            $( $(#[$cmeta])* pub const $konst: $name = $name($value); )*

            /// The IANA name of this value, if it is one this crate knows.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some(stringify!($konst)), )*
                    _ => None,
                }
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::Debug::fmt(self, f)
            }
        }

        impl From<$int> for $name {
            fn from(v: $int) -> Self {
                $name(v)
            }
        }

        impl From<$name> for $int {
            fn from(v: $name) -> Self {
                v.0
            }
        }
    };
}

named_number! {
    /// Exchange Type of the IKE header (RFC 7296 section 3.1, IANA "IKEv2 Exchange Types").
    ExchangeType(u8) {
        IKE_SA_INIT = 34,
        IKE_AUTH = 35,
        CREATE_CHILD_SA = 36,
        INFORMATIONAL = 37,
        /// RFC 5723.
        IKE_SESSION_RESUME = 38,
        /// RFC 9242.
        IKE_INTERMEDIATE = 43,
        /// RFC 9370.
        IKE_FOLLOWUP_KE = 44,
    }
}

named_number! {
    /// Protocol ID of a proposal, notification or delete (RFC 7296 section 3.3.1). Zero means
    /// "none" in a Notify payload that concerns no SA.
    ProtocolId(u8) {
        NONE = 0,
        IKE = 1,
        AH = 2,
        ESP = 3,
    }
}

named_number! {
    /// Transform Type (RFC 7296 section 3.3.2).
    TransformType(u8) {
        ENCR = 1,
        PRF = 2,
        INTEG = 3,
        /// Diffie-Hellman group ("Key Exchange Method" since RFC 9370).
        DH = 4,
        ESN = 5,
    }
}

named_number! {
    /// ID Type of an IDi/IDr payload (RFC 7296 section 3.5).
    IdType(u8) {
        IPV4_ADDR = 1,
        FQDN = 2,
        RFC822_ADDR = 3,
        IPV6_ADDR = 5,
        DER_ASN1_DN = 9,
        DER_ASN1_GN = 10,
        KEY_ID = 11,
        /// RFC 4595.
        FC_NAME = 12,
        /// RFC 7619.
        NULL = 13,
    }
}

named_number! {
    /// Auth Method of an AUTH payload (RFC 7296 section 3.8, RFC 4754, RFC 7427, RFC 7619).
    AuthMethod(u8) {
        RSA_SIG = 1,
        SHARED_KEY_MIC = 2,
        DSS_SIG = 3,
        ECDSA_SHA256_P256 = 9,
        ECDSA_SHA384_P384 = 10,
        ECDSA_SHA512_P521 = 11,
        GENERIC_SECURE_PASSWORD = 12,
        NULL = 13,
        /// RFC 7427: the AUTH data starts with an AlgorithmIdentifier.
        DIGITAL_SIGNATURE = 14,
    }
}

named_number! {
    /// Cert Encoding of a CERT or CERTREQ payload (RFC 7296 section 3.6).
    CertEncoding(u8) {
        PKCS7_X509 = 1,
        PGP = 2,
        DNS_SIGNED_KEY = 3,
        X509_SIGNATURE = 4,
        KERBEROS_TOKEN = 6,
        CRL = 7,
        ARL = 8,
        SPKI = 9,
        X509_ATTRIBUTE = 10,
        RAW_RSA_KEY = 11,
        HASH_URL_X509_CERT = 12,
        HASH_URL_X509_BUNDLE = 13,
        /// RFC 4806.
        OCSP_CONTENT = 14,
        /// RFC 7670.
        RAW_PUBLIC_KEY = 15,
    }
}

named_number! {
    /// Notify Message Type (RFC 7296 section 3.10.1 and the IANA registry). Values below 16384
    /// are errors, the rest status notifications.
    NotifyType(u16) {
        UNSUPPORTED_CRITICAL_PAYLOAD = 1,
        INVALID_IKE_SPI = 4,
        INVALID_MAJOR_VERSION = 5,
        INVALID_SYNTAX = 7,
        INVALID_MESSAGE_ID = 9,
        INVALID_SPI = 11,
        NO_PROPOSAL_CHOSEN = 14,
        /// Data: the accepted DH group, 2 octets.
        INVALID_KE_PAYLOAD = 17,
        AUTHENTICATION_FAILED = 24,
        SINGLE_PAIR_REQUIRED = 34,
        NO_ADDITIONAL_SAS = 35,
        INTERNAL_ADDRESS_FAILURE = 36,
        FAILED_CP_REQUIRED = 37,
        TS_UNACCEPTABLE = 38,
        INVALID_SELECTORS = 39,
        UNACCEPTABLE_ADDRESSES = 40,
        UNEXPECTED_NAT_DETECTED = 41,
        USE_ASSIGNED_HOA = 42,
        TEMPORARY_FAILURE = 43,
        CHILD_SA_NOT_FOUND = 44,
        INVALID_GROUP_ID = 45,
        AUTHORIZATION_FAILED = 46,
        STATE_NOT_FOUND = 47,
        INITIAL_CONTACT = 16384,
        SET_WINDOW_SIZE = 16385,
        ADDITIONAL_TS_POSSIBLE = 16386,
        IPCOMP_SUPPORTED = 16387,
        /// Data: SHA-1(SPIi | SPIr | source IP | source port) (RFC 7296 section 2.23).
        NAT_DETECTION_SOURCE_IP = 16388,
        NAT_DETECTION_DESTINATION_IP = 16389,
        COOKIE = 16390,
        USE_TRANSPORT_MODE = 16391,
        HTTP_CERT_LOOKUP_SUPPORTED = 16392,
        REKEY_SA = 16393,
        ESP_TFC_PADDING_NOT_SUPPORTED = 16394,
        NON_FIRST_FRAGMENTS_ALSO = 16395,
        MOBIKE_SUPPORTED = 16396,
        ADDITIONAL_IP4_ADDRESS = 16397,
        ADDITIONAL_IP6_ADDRESS = 16398,
        NO_ADDITIONAL_ADDRESSES = 16399,
        UPDATE_SA_ADDRESSES = 16400,
        COOKIE2 = 16401,
        NO_NATS_ALLOWED = 16402,
        AUTH_LIFETIME = 16403,
        MULTIPLE_AUTH_SUPPORTED = 16404,
        ANOTHER_AUTH_FOLLOWS = 16405,
        REDIRECT_SUPPORTED = 16406,
        REDIRECT = 16407,
        REDIRECTED_FROM = 16408,
        TICKET_LT_OPAQUE = 16409,
        TICKET_REQUEST = 16410,
        TICKET_ACK = 16411,
        TICKET_NACK = 16412,
        TICKET_OPAQUE = 16413,
        LINK_ID = 16414,
        USE_WESP_MODE = 16415,
        ROHC_SUPPORTED = 16416,
        EAP_ONLY_AUTHENTICATION = 16417,
        CHILDLESS_IKEV2_SUPPORTED = 16418,
        QUICK_CRASH_DETECTION = 16419,
        IKEV2_MESSAGE_ID_SYNC_SUPPORTED = 16420,
        IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED = 16421,
        IKEV2_MESSAGE_ID_SYNC = 16422,
        IPSEC_REPLAY_COUNTER_SYNC = 16423,
        SECURE_PASSWORD_METHODS = 16424,
        PSK_PERSIST = 16425,
        PSK_CONFIRM = 16426,
        ERX_SUPPORTED = 16427,
        IFOM_CAPABILITY = 16428,
        SENDER_REQUEST_ID = 16429,
        /// RFC 7383.
        IKEV2_FRAGMENTATION_SUPPORTED = 16430,
        /// RFC 7427. Data: a list of 2-octet hash algorithm identifiers.
        SIGNATURE_HASH_ALGORITHMS = 16431,
        CLONE_IKE_SA_SUPPORTED = 16432,
        CLONE_IKE_SA = 16433,
        PUZZLE = 16434,
        USE_PPK = 16435,
        PPK_IDENTITY = 16436,
        NO_PPK_AUTH = 16437,
        INTERMEDIATE_EXCHANGE_SUPPORTED = 16438,
        IP4_ALLOWED = 16439,
        IP6_ALLOWED = 16440,
        ADDITIONAL_KEY_EXCHANGE = 16441,
        USE_AGGFRAG = 16442,
    }
}

impl NotifyType {
    /// Error types are below 16384 (RFC 7296 section 3.10.1); an unrecognised error type in a
    /// response means the request failed (section 3.10.1: "MUST assume ... the request failed").
    pub const fn is_error(self) -> bool {
        self.0 < 16384
    }
}

/// Transform IDs of type ENCR (RFC 7296 section 3.3.2, IANA "Transform Type 1").
pub mod encr {
    pub const DES: u16 = 2;
    pub const TRIPLE_DES: u16 = 3;
    pub const NULL: u16 = 11;
    /// Needs a Key Length attribute.
    pub const AES_CBC: u16 = 12;
    pub const AES_CTR: u16 = 13;
    pub const AES_CCM_8: u16 = 14;
    pub const AES_CCM_12: u16 = 15;
    pub const AES_CCM_16: u16 = 16;
    pub const AES_GCM_8: u16 = 18;
    pub const AES_GCM_12: u16 = 19;
    /// RFC 4106 / RFC 5282; needs a Key Length attribute.
    pub const AES_GCM_16: u16 = 20;
    pub const NULL_AUTH_AES_GMAC: u16 = 21;
    pub const CAMELLIA_CBC: u16 = 23;
    pub const CHACHA20_POLY1305: u16 = 28;
}

/// Transform IDs of type PRF.
pub mod prf {
    pub const HMAC_MD5: u16 = 1;
    pub const HMAC_SHA1: u16 = 2;
    pub const AES128_XCBC: u16 = 4;
    pub const HMAC_SHA2_256: u16 = 5;
    pub const HMAC_SHA2_384: u16 = 6;
    pub const HMAC_SHA2_512: u16 = 7;
    pub const AES128_CMAC: u16 = 8;
}

/// Transform IDs of type INTEG.
pub mod integ {
    pub const NONE: u16 = 0;
    pub const HMAC_MD5_96: u16 = 1;
    pub const HMAC_SHA1_96: u16 = 2;
    pub const AES_XCBC_96: u16 = 5;
    pub const AES_CMAC_96: u16 = 8;
    pub const HMAC_SHA2_256_128: u16 = 12;
    pub const HMAC_SHA2_384_192: u16 = 13;
    pub const HMAC_SHA2_512_256: u16 = 14;
}

/// Transform IDs of type DH (Diffie-Hellman groups), also the group of a KE payload.
pub mod dh {
    pub const NONE: u16 = 0;
    pub const MODP_1024: u16 = 2;
    pub const MODP_1536: u16 = 5;
    pub const MODP_2048: u16 = 14;
    pub const MODP_3072: u16 = 15;
    pub const MODP_4096: u16 = 16;
    pub const MODP_6144: u16 = 17;
    pub const MODP_8192: u16 = 18;
    pub const ECP_256: u16 = 19;
    pub const ECP_384: u16 = 20;
    pub const ECP_521: u16 = 21;
    pub const BRAINPOOL_P256R1: u16 = 28;
    pub const BRAINPOOL_P384R1: u16 = 29;
    pub const BRAINPOOL_P512R1: u16 = 30;
    /// RFC 8031.
    pub const CURVE25519: u16 = 31;
    pub const CURVE448: u16 = 32;
}

/// Transform IDs of type ESN.
pub mod esn {
    pub const NO_ESN: u16 = 0;
    pub const ESN: u16 = 1;
}

/// Hash algorithm identifiers of SIGNATURE_HASH_ALGORITHMS (RFC 7427 section 4).
pub mod hash {
    pub const SHA1: u16 = 1;
    pub const SHA2_256: u16 = 2;
    pub const SHA2_384: u16 = 3;
    pub const SHA2_512: u16 = 4;
    /// RFC 8420.
    pub const IDENTITY: u16 = 5;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(format!("{:?}", ExchangeType::IKE_AUTH), "IKE_AUTH");
        assert_eq!(format!("{}", ExchangeType(99)), "ExchangeType(99)");
        assert_eq!(NotifyType(16431), NotifyType::SIGNATURE_HASH_ALGORITHMS);
        assert_eq!(NotifyType::INVALID_KE_PAYLOAD.name(), Some("INVALID_KE_PAYLOAD"));
        assert!(NotifyType::TS_UNACCEPTABLE.is_error());
        assert!(!NotifyType::COOKIE.is_error());
        assert_eq!(u8::from(AuthMethod::DIGITAL_SIGNATURE), 14);
        assert!(matches!(ProtocolId(3), ProtocolId::ESP));
    }
}
