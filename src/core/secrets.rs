//! Identifiers and secrets: prefixed unguessable ids, API keys, webhook and device secrets,
//! operator tokens; hashing what is only ever verified; constant-time comparison.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new prefixed id, e.g. `ord_019af3c2…` (32 hex digits): a UUIDv7, the creation time to the
/// millisecond followed by 74 random bits. Time-ordered, so that the indexes of the rows made on
/// every payment (orders, payments, events, and what refers to them by id) take new entries at
/// one edge instead of at random places across a year of history, each of which would dirty
/// (and after a checkpoint, write whole to the WAL) a page of its own. Still unguessable: an
/// order's id is what its shop page polls with.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::fill(&mut bytes[..]);
    bytes
}

/// A merchant's secret API key (192 random bits).
pub fn new_api_key() -> String {
    format!("sk_{}", hex::encode(random_bytes::<24>()))
}

/// A Standard Webhooks signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_webhook_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>())
    )
}

/// A listener device's HMAC secret (128 random bits as 32 hex digits, easy to paste into an app).
pub fn new_device_secret() -> String {
    hex::encode(random_bytes::<16>())
}

/// The key of the old protocols' md5 signatures (易支付, V免签): 32 characters of [0-9a-z]
/// (128 random bits), which every plugin accepts.
pub fn new_md5_key() -> String {
    hex::encode(random_bytes::<16>())
}

/// An operator token (192 random bits).
pub fn new_operator_token() -> String {
    format!("sop_{}", hex::encode(random_bytes::<24>()))
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// Compares two secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_at_least_96_random_bits() {
        let id = new_id("ord");
        let random = id.strip_prefix("ord_").unwrap_or_default();
        assert_eq!(random.len(), 32);
        assert!(random.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(new_id("ord"), new_id("ord"));
    }

    #[test]
    fn secrets_have_their_documented_shapes() {
        assert!(new_api_key().starts_with("sk_") && new_api_key().len() == 3 + 48);
        let whsec = new_webhook_secret();
        let key = base64::engine::general_purpose::STANDARD
            .decode(whsec.trim_start_matches("whsec_"))
            .unwrap_or_default();
        assert_eq!(key.len(), 32);
        assert_eq!(new_device_secret().len(), 32);
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
