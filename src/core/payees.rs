//! Payees: the owner's collection codes, each listened for by one device.

use diesel::PgConnection;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::core::secrets::new_id;
use crate::db::payees::{self as payee_rows, FixedCode, NewPayee, Payee};
use crate::db::{devices as device_rows, transaction_with_retry};
use crate::domain::Channel;
use crate::error::ApiError;
use crate::money::Amount;

/// A validated payee to create.
#[derive(Debug)]
pub struct PayeeRequest {
    pub channel: Channel,
    pub name: String,
    pub qr_code: String,
    pub device_id: String,
    pub fixed_amount_codes: Vec<(Amount, String)>,
    pub enabled: bool,
}

pub fn create_payee(
    conn: &mut PgConnection,
    request: &PayeeRequest,
) -> Result<(Payee, Vec<FixedCode>), ApiError> {
    transaction_with_retry(conn, |conn| {
        if !device_rows::exists(conn, &request.device_id)? {
            return Err(ApiError::InvalidRequest(format!(
                "device_id {:?} does not name a device",
                request.device_id
            )));
        }
        let id = new_id("pye");
        let payee = payee_rows::insert(
            conn,
            &NewPayee {
                id: &id,
                channel: request.channel,
                name: &request.name,
                qr_code: &request.qr_code,
                device_id: &request.device_id,
                enabled: request.enabled,
            },
        )
        .map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                ApiError::Conflict(format!(
                    "device {} already listens for a {} payee: a notification names only the \
                     device and the channel, so each device has at most one payee per channel",
                    request.device_id, request.channel
                ))
            }
            other => other.into(),
        })?;
        let codes: Vec<FixedCode> = request
            .fixed_amount_codes
            .iter()
            .map(|(amount, qr_code)| FixedCode {
                payee_id: id.clone(),
                amount: amount.as_decimal(),
                qr_code: qr_code.clone(),
            })
            .collect();
        if !codes.is_empty() {
            payee_rows::insert_fixed_codes(conn, &codes)?;
        }
        Ok((payee, codes))
    })
}
