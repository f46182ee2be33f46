//! The platform's 易支付 V2 key pair: generated at first use, stored with its private half sealed,
//! the same for every instance (the first to store one wins).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use diesel::PgConnection;

use crate::core::error::RuleError;
use crate::core::rsa_signing::PlatformKey;
use crate::core::secrets::sha256;
use crate::db::platform_keys::{self as key_rows, StoredKeyPair};
use crate::db::sealed::Sealed;

/// The name of the key pair that signs 易支付 V2 answers and notifications.
const EPAY_V2: &str = "epay_v2";

/// The platform's 易支付 V2 key pair, generated and stored at first use.
pub fn epay_v2_key(conn: &mut PgConnection) -> Result<Arc<PlatformKey>, RuleError> {
    let stored = match key_rows::find(conn, EPAY_V2)? {
        Some(stored) => stored,
        None => {
            let pair = PlatformKey::generate().map_err(RuleError::internal)?;
            let stored = StoredKeyPair {
                private_key: Sealed::new(pair.private_pem),
                public_key: pair.public_base64,
            };
            key_rows::insert_if_absent(conn, EPAY_V2, &stored)?;
            // Another instance may have stored its own first: use the stored one.
            key_rows::find(conn, EPAY_V2)?
                .ok_or_else(|| RuleError::internal("the platform key was not stored"))?
        }
    };
    opened(stored)
}

/// The stored pair, opened once per process (parsing and checking an RSA key on every signed
/// answer would cost more than the rest of the request): cached by both halves as stored, so a
/// database that holds another pair (a test's, a restored backup's) gets its own.
fn opened(stored: StoredKeyPair) -> Result<Arc<PlatformKey>, RuleError> {
    static OPENED: LazyLock<Mutex<HashMap<String, Arc<PlatformKey>>>> =
        LazyLock::new(Default::default);
    let cached = |public: &str| {
        OPENED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(public)
            .cloned()
    };
    let name = format!(
        "{}:{}",
        stored.public_key,
        hex::encode(sha256(stored.private_key.expose().as_bytes()))
    );
    if let Some(key) = cached(&name) {
        return Ok(key);
    }
    let key = Arc::new(
        PlatformKey::open(stored.private_key.expose(), &stored.public_key)
            .map_err(RuleError::internal)?,
    );
    OPENED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(name, Arc::clone(&key));
    Ok(key)
}
