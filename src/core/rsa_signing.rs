//! 易支付 V2's RSA signatures: SHA256withRSA (PKCS#1 v1.5) over the sorted `k=v&…` text, in
//! base64. A merchant's public key as merchants paste it (PEM or bare base64; SubjectPublicKeyInfo
//! or PKCS#1), and the platform's key pair, which signs answers and notifications.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use sha2::Sha256;

/// The smallest modulus accepted from a merchant, and the size of the platform's.
const KEY_BITS: usize = 2048;

/// A merchant's RSA public key.
#[derive(Debug, Clone)]
pub struct MerchantPublicKey(PublicKey);

impl MerchantPublicKey {
    /// Reads a key as merchants paste it: a PEM block (`PUBLIC KEY` or `RSA PUBLIC KEY`), or the
    /// bare base64 of its DER (what 彩虹易支付's merchant page shows), line breaks allowed.
    pub fn parse(text: &str) -> Result<MerchantPublicKey, String> {
        let text = text.trim();
        let key = if text.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
            PublicKey::from_pkcs1_pem(text).map_err(|e| e.to_string())
        } else if text.starts_with("-----BEGIN") {
            PublicKey::from_public_key_pem(text).map_err(|e| e.to_string())
        } else {
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            let der = BASE64
                .decode(compact.as_bytes())
                .map_err(|_| "neither PEM nor base64".to_string())?;
            PublicKey::from_public_key_der(&der)
                .or_else(|_| PublicKey::from_pkcs1_der(&der))
                .map_err(|e| e.to_string())
        }
        .map_err(|reason| format!("not an RSA public key ({reason})"))?;
        if key.size() * 8 < KEY_BITS {
            return Err(format!("an RSA key of at least {KEY_BITS} bits is needed"));
        }
        Ok(MerchantPublicKey(key))
    }

    /// The key as solopay stores and shows it: the base64 of its DER SubjectPublicKeyInfo.
    pub fn to_base64(&self) -> Result<String, String> {
        let der = self.0.to_public_key_der().map_err(|e| e.to_string())?;
        Ok(BASE64.encode(der.as_bytes()))
    }

    /// Whether `sign` (base64) is this key's SHA256withRSA signature of `content`.
    pub fn verifies(&self, content: &str, sign: &str) -> bool {
        // A form decoder turns an unencoded '+' of base64 into a space; line breaks are dropped.
        let compact: String = sign
            .trim()
            .replace(' ', "+")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let Ok(signature) = BASE64.decode(compact.as_bytes()) else {
            return false;
        };
        self.0
            .pkcs1v15_verify::<Sha256>(content.as_bytes(), &signature)
            .is_ok()
    }
}

/// The platform's key pair, opened from storage.
pub struct PlatformKey {
    private: PrivateKey,
    /// Its public half, as merchants are given it: base64 of the DER SubjectPublicKeyInfo.
    pub public_base64: String,
}

/// A new key pair: its private half as PKCS#8 PEM (to be sealed) and its public half as base64.
pub struct NewKeyPair {
    pub private_pem: String,
    pub public_base64: String,
}

impl PlatformKey {
    /// Generates a 2048-bit key pair (彩虹易支付's size; every PHP OpenSSL reads it).
    pub fn generate() -> Result<NewKeyPair, String> {
        let private = PrivateKey::new(&mut rand::rng(), KEY_BITS).map_err(|e| e.to_string())?;
        let private_pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| e.to_string())?
            .to_string();
        let public = private
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| e.to_string())?;
        Ok(NewKeyPair {
            private_pem,
            public_base64: BASE64.encode(public.as_bytes()),
        })
    }

    /// Opens a stored pair, refusing one whose halves do not belong together.
    pub fn open(private_pem: &str, public_base64: &str) -> Result<PlatformKey, String> {
        let private = PrivateKey::from_pkcs8_pem(private_pem).map_err(|e| e.to_string())?;
        let public = private
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| e.to_string())?;
        if BASE64.encode(public.as_bytes()) != public_base64 {
            return Err("the stored platform key's halves do not belong together".into());
        }
        Ok(PlatformKey {
            private,
            public_base64: public_base64.to_string(),
        })
    }

    /// The SHA256withRSA signature of `content`, base64.
    pub fn sign(&self, content: &str) -> Result<String, String> {
        let signature = self
            .private
            .pkcs1v15_sign::<Sha256>(content.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(BASE64.encode(signature))
    }

    /// The public half as a PEM block, for clients that want one.
    pub fn public_pem(&self) -> String {
        let body: Vec<String> = self
            .public_base64
            .as_bytes()
            .chunks(64)
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            body.join("\n")
        )
    }
}

impl std::fmt::Debug for PlatformKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlatformKey({})", self.public_base64)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_platform_signature_verifies_under_its_public_key_in_every_spelling() {
        let pair = PlatformKey::generate().unwrap();
        let key = PlatformKey::open(&pair.private_pem, &pair.public_base64).unwrap();
        let sign = key.sign("a=1&b=2").unwrap();
        for spelling in [pair.public_base64.clone(), key.public_pem()] {
            let public = MerchantPublicKey::parse(&spelling).unwrap();
            assert!(public.verifies("a=1&b=2", &sign));
            assert!(public.verifies("a=1&b=2", &sign.replace('+', " ")));
            assert!(!public.verifies("a=1&b=3", &sign));
            assert!(!public.verifies("a=1&b=2", "not base64!"));
            assert_eq!(public.to_base64().unwrap(), pair.public_base64);
        }
        assert!(MerchantPublicKey::parse("MIIBIjAN").is_err());
        assert!(MerchantPublicKey::parse("").is_err());
    }
}
