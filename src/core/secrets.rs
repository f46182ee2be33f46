//! Identifiers and secrets: prefixed unguessable ids, API keys, webhook and device secrets,
//! operator tokens; hashing what is only ever verified; constant-time comparison.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new prefixed id of 32 hex digits, e.g. `ord_019af3c2` + `3f2a…`: the time it was made, in
/// milliseconds modulo 2^32 (8 digits: the count wraps every 49.7 days), then 96 random bits (24
/// digits). Unguessable by its random part (an order's id is what its shop page polls with; the
/// old protocols pass it on as `trade_no`, so its length stays what it was); time-local by its
/// prefix, so that the indexes of the rows made on every payment (orders, payments, events, and
/// what refers to them by id) take new entries in one place instead of at random places across a
/// year of history, each of which would dirty (and after a checkpoint, write whole to the WAL) a
/// page of its own. The time is this machine's clock and decides nothing.
pub fn new_id(prefix: &str) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    format!(
        "{prefix}_{:08x}{}",
        millis & 0xffff_ffff,
        hex::encode(random_bytes::<12>())
    )
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
    fn ids_carry_their_prefix_a_time_and_96_random_bits() {
        let first = new_id("ord");
        let rest = first.strip_prefix("ord_").unwrap_or_default();
        assert_eq!(rest.len(), 8 + 24);
        assert!(rest.bytes().all(|b| b.is_ascii_hexdigit()));
        // Two ids made in the same millisecond still differ, in their random part.
        let second = new_id("ord");
        assert_ne!(first[4 + 8..], second[4 + 8..]);
        // Ids made 2 ms apart carry times 2 ms apart (modulo the wrap): new index entries land
        // next to each other.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = new_id("ord");
        let time = |id: &str| u32::from_str_radix(&id[4..4 + 8], 16).unwrap_or_default();
        let elapsed = time(&later).wrapping_sub(time(&first));
        assert!((2..10_000).contains(&elapsed), "{first} then {later}");
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
