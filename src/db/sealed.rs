//! Secrets that must sign or verify a signature (device secrets, webhook secrets, md5 keys) are
//! stored sealed: XChaCha20-Poly1305 under the key of `SOLOPAY_SECRET_KEY` (or its key file), as
//! `sealed:v1:<base64 nonce ‖ ciphertext>`. [`Sealed`] seals when written and opens when read,
//! so rows hold the plain secret in memory only. A value stored before sealing (no prefix) is
//! read as it is and sealed at the next start.

use std::fmt;
use std::io::Write;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;

const PREFIX: &str = "sealed:v1:";
const NONCE_BYTES: usize = 24;

static KEY: OnceLock<[u8; 32]> = OnceLock::new();

/// Installs the sealing key of this process. Installing another key later is refused (several
/// instances in one test process share one).
pub fn install_key(key: [u8; 32]) -> Result<(), String> {
    let installed = KEY.get_or_init(|| key);
    if *installed == key {
        Ok(())
    } else {
        Err("another sealing key is already installed in this process".into())
    }
}

fn cipher() -> Result<XChaCha20Poly1305, String> {
    let key = KEY.get().ok_or("no sealing key installed")?;
    XChaCha20Poly1305::new_from_slice(key).map_err(|e| e.to_string())
}

pub fn seal(plain: &str) -> Result<String, String> {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::fill(&mut nonce[..]);
    let sealed = cipher()?
        .encrypt(&XNonce::from(nonce), plain.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut bytes = nonce.to_vec();
    bytes.extend_from_slice(&sealed);
    Ok(format!("{PREFIX}{}", BASE64.encode(bytes)))
}

pub fn open(stored: &str) -> Result<String, String> {
    let Some(encoded) = stored.strip_prefix(PREFIX) else {
        return Ok(stored.to_string());
    };
    let bytes = BASE64.decode(encoded).map_err(|e| e.to_string())?;
    if bytes.len() < NONCE_BYTES {
        return Err("a sealed value is too short".into());
    }
    let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| "bad nonce".to_string())?;
    let plain = cipher()?
        .decrypt(&XNonce::from(nonce), sealed)
        .map_err(|_| "a sealed value does not open with this key (SOLOPAY_SECRET_KEY changed?)")?;
    String::from_utf8(plain).map_err(|e| e.to_string())
}

pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// A secret stored sealed; in memory, the plain secret.
#[derive(Clone, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub struct Sealed(String);

impl Sealed {
    pub fn new(plain: impl Into<String>) -> Sealed {
        Sealed(plain.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A secret as a column stores it, opened (read as text where one row that does not open
    /// must not fail the others read with it).
    pub fn open_stored(stored: &str) -> Result<Sealed, String> {
        open(stored).map(Sealed)
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealed(<hidden>)")
    }
}

impl ToSql<Text, Pg> for Sealed {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(seal(&self.0)?.as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<Text, Pg> for Sealed {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let stored = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
        Ok(Sealed(open(&stored)?))
    }
}

/// Seals every secret still stored in plain (written before sealing existed, or by SQL).
/// Returns how many were sealed.
pub fn seal_stored_plaintext(conn: &mut PgConnection) -> QueryResult<usize> {
    use super::schema::{devices, merchants};
    conn.transaction(|conn| {
        let unsealed = |column: &str| format!("{column} NOT LIKE '{PREFIX}%'");
        let mut sealed = 0;
        let devices_in_plain: Vec<(String, Sealed)> = devices::table
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(&unsealed(
                "devices.secret",
            )))
            .select((devices::id, devices::secret))
            .load(conn)?;
        for (id, secret) in devices_in_plain {
            sealed += diesel::update(devices::table.find(id))
                .set(devices::secret.eq(secret))
                .execute(conn)?;
        }
        let merchants_in_plain: Vec<(String, Sealed, Sealed, Option<Sealed>)> = merchants::table
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
                "{} OR {} OR {}",
                unsealed("merchants.webhook_secret"),
                unsealed("merchants.md5_key"),
                unsealed(&format!(
                    "coalesce(merchants.previous_webhook_secret, '{PREFIX}')"
                ))
            )))
            .select((
                merchants::id,
                merchants::webhook_secret,
                merchants::md5_key,
                merchants::previous_webhook_secret,
            ))
            .load(conn)?;
        for (id, webhook_secret, md5_key, previous) in merchants_in_plain {
            sealed += diesel::update(merchants::table.find(id))
                .set((
                    merchants::webhook_secret.eq(webhook_secret),
                    merchants::md5_key.eq(md5_key),
                    merchants::previous_webhook_secret.eq(previous),
                ))
                .execute(conn)?;
        }
        Ok(sealed)
    })
}

/// What the check row holds, sealed.
const CHECK_VALUE: &str = "solopay sealing key check v1";

/// Whether the installed key is the database's: the first instance to start seals a known value
/// into `sealing_key_check`, and every start must open it (and one stored secret of each table,
/// for databases sealed before the check row existed). A wrong key stops the service with a
/// clear message instead of failing every request that needs a secret.
pub fn check_key_opens_stored(conn: &mut PgConnection) -> Result<(), String> {
    use super::schema::{devices, merchants, sealing_key_check};
    let wrong_key = || {
        "the key does not open the secrets stored in this database (they were sealed with \
         another key): give this instance the key the others use"
            .to_string()
    };
    diesel::insert_into(sealing_key_check::table)
        .values((
            sealing_key_check::id.eq(1),
            sealing_key_check::sealed.eq(seal(CHECK_VALUE)?),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .map_err(|e| e.to_string())?;
    let check: String = sealing_key_check::table
        .select(sealing_key_check::sealed)
        .first(conn)
        .map_err(|e| e.to_string())?;
    if open(&check).map_err(|_| wrong_key())? != CHECK_VALUE {
        return Err(wrong_key());
    }
    let sealed_like = format!("{PREFIX}%");
    let device: Option<String> = devices::table
        .select(devices::secret)
        .filter(devices::secret.like(&sealed_like))
        .first(conn)
        .optional()
        .map_err(|e| e.to_string())?;
    let merchant: Option<String> = merchants::table
        .select(merchants::webhook_secret)
        .filter(merchants::webhook_secret.like(&sealed_like))
        .first(conn)
        .optional()
        .map_err(|e| e.to_string())?;
    for stored in device.iter().chain(merchant.iter()) {
        open(stored).map_err(|_| wrong_key())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_sealed_value_opens_to_the_same_and_never_shows_it() {
        install_key([7u8; 32]).unwrap();
        let sealed = seal("whsec_secret").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("whsec_secret"));
        assert_ne!(
            seal("whsec_secret").unwrap(),
            sealed,
            "a fresh nonce each time"
        );
        assert_eq!(open(&sealed).unwrap(), "whsec_secret");
        assert_eq!(open("plain from before").unwrap(), "plain from before");
        let mut tampered = sealed;
        tampered.replace_range(tampered.len() - 4.., "AAAA");
        assert!(open(&tampered).is_err());
        assert!(install_key([8u8; 32]).is_err());
        assert_eq!(format!("{:?}", Sealed::new("x")), "Sealed(<hidden>)");
    }
}
