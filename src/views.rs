//! The order as the outside world sees it: in merchant answers and webhook payloads ([`Order`]),
//! and on the public status endpoint a shop page polls ([`PublicOrder`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db;
use crate::domain::{Channel, OrderStatus};
use crate::money::Amount;

/// An order, as its merchant sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Order {
    #[schema(example = "ord_3f2a9c1d8e7b4a6f9c0d1e2f3a4b5c6d")]
    pub id: String,
    #[schema(example = "A1001")]
    pub merchant_order_id: String,
    pub status: OrderStatus,
    pub channel: Channel,
    /// The price the merchant asked for.
    pub amount: Amount,
    /// What the payer must send: `amount` plus (or minus) a few fen, unique on the payee.
    pub payable_amount: Amount,
    /// The text to render as a QR code.
    #[schema(example = "wxp://f2f0abcdef")]
    pub qr_code: String,
    /// Whether `qr_code` already carries `payable_amount` (the payer need not type it).
    pub qr_fixed_amount: bool,
    pub subject: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub return_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    /// Paid after `expires_at`, within the late-payment grace.
    pub paid_late: bool,
}

/// An order as anyone who knows its id may see it (a shop page polling for the result).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublicOrder {
    pub id: String,
    pub status: OrderStatus,
    pub channel: Channel,
    pub amount: Amount,
    pub payable_amount: Amount,
    pub qr_code: String,
    pub qr_fixed_amount: bool,
    pub subject: Option<String>,
    pub return_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub paid_late: bool,
}

impl From<&db::orders::Order> for Order {
    fn from(row: &db::orders::Order) -> Self {
        Order {
            id: row.id.clone(),
            merchant_order_id: row.merchant_order_id.clone(),
            status: row.status,
            channel: row.channel,
            amount: Amount::from_stored(row.amount),
            payable_amount: Amount::from_stored(row.payable_amount),
            qr_code: row.qr_code.clone(),
            qr_fixed_amount: row.qr_fixed_amount,
            subject: row.subject.clone(),
            metadata: row.metadata.clone(),
            return_url: row.return_url.clone(),
            created_at: row.created_at,
            expires_at: row.expires_at,
            paid_at: row.paid_at,
            paid_late: row.paid_late,
        }
    }
}

impl From<&db::orders::Order> for PublicOrder {
    fn from(row: &db::orders::Order) -> Self {
        let Order {
            id,
            status,
            channel,
            amount,
            payable_amount,
            qr_code,
            qr_fixed_amount,
            subject,
            return_url,
            created_at,
            expires_at,
            paid_at,
            paid_late,
            merchant_order_id: _,
            metadata: _,
        } = Order::from(row);
        PublicOrder {
            id,
            status,
            channel,
            amount,
            payable_amount,
            qr_code,
            qr_fixed_amount,
            subject,
            return_url,
            created_at,
            expires_at,
            paid_at,
            paid_late,
        }
    }
}
