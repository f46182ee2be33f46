//! Payees: the owner's collection codes, each listened for by one device.

use diesel::PgConnection;

use crate::core::error::RuleError;
use crate::core::reconciliation::audit;
use crate::core::secrets::new_id;
use crate::db::payees::{self as payee_rows, FixedCode, NewPayee, Payee, PayeeChanges};
use crate::db::{StorageError, devices as device_rows, transaction_with_retry};
use crate::domain::Channel;
use crate::domain::{AuditAction, Operator};
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
    operator: Operator<'_>,
    request: &PayeeRequest,
) -> Result<(Payee, Vec<FixedCode>), RuleError> {
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        if !device_rows::exists(conn, &request.device_id)? {
            return Err(RuleError::InvalidRequest(format!(
                "device_id {:?} does not name a device",
                request.device_id
            )));
        }
        refuse_shared_code(conn, request.channel, &request.qr_code, None)?;
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
        .map_err(|e| match StorageError::from(e) {
            error if error.is_unique_violation() => RuleError::Conflict(format!(
                "device {} already listens for a {} payee: a notification names only the \
                     device and the channel, so each device has at most one payee per channel",
                request.device_id, request.channel
            )),
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
        audit(
            conn,
            operator,
            AuditAction::PayeeCreate,
            &payee.id,
            None,
            serde_json::json!({
                "channel": request.channel,
                "name": request.name,
                "device_id": request.device_id,
                "fixed_amount_codes": codes.len(),
            }),
        )?;
        Ok((payee, codes))
    })
}

/// Renames a payee, enables or disables it, or changes its QR code or fixed-amount codes (all
/// replaced). Orders made before keep the code they were given.
pub fn update_payee(
    conn: &mut PgConnection,
    operator: Operator<'_>,
    id: &str,
    changes: &PayeeChanges<'_>,
    fixed_amount_codes: Option<&[(Amount, String)]>,
) -> Result<(Payee, Vec<FixedCode>), RuleError> {
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        if let (Some(qr_code), Some(current)) = (changes.qr_code, payee_rows::find(conn, id)?) {
            refuse_shared_code(conn, current.channel, qr_code, Some(id))?;
        }
        let payee =
            payee_rows::update(conn, id, changes)?.ok_or_else(|| RuleError::not_found("payee"))?;
        if let Some(codes) = fixed_amount_codes {
            let rows: Vec<FixedCode> = codes
                .iter()
                .map(|(amount, qr_code)| FixedCode {
                    payee_id: id.to_string(),
                    amount: amount.as_decimal(),
                    qr_code: qr_code.clone(),
                })
                .collect();
            payee_rows::replace_fixed_codes(conn, id, &rows)?;
        }
        audit(
            conn,
            operator,
            AuditAction::PayeeUpdate,
            id,
            None,
            serde_json::json!({
                "name": changes.name,
                "qr_code": changes.qr_code,
                "enabled": changes.enabled,
                "fixed_amount_codes": fixed_amount_codes.map(<[_]>::len),
            }),
        )?;
        let codes = payee_rows::fixed_codes(conn, id)?;
        Ok((payee, codes))
    })
}

/// One collection code is one account: two payees for it (two phones listening to one account)
/// would each hand out amounts on their own, and one payment, reported by both phones, could pay
/// an order on each.
fn refuse_shared_code(
    conn: &mut PgConnection,
    channel: Channel,
    qr_code: &str,
    except: Option<&str>,
) -> Result<(), RuleError> {
    match payee_rows::with_qr_code(conn, channel, qr_code, except)? {
        Some(other) => Err(RuleError::Conflict(format!(
            "payee {} already has this collection code: one account must be one payee (one \
             payment reported by two phones would otherwise pay an order of each)",
            other.id
        ))),
        None => Ok(()),
    }
}
