//! How the operator sees orders and payments: the shapes several admin resources share.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::orders::Order as OrderRow;
use crate::db::payments::Payment;
use crate::domain::{Channel, PaymentResult};
use crate::money::Amount;
use crate::views;

/// An order as the operator sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AdminOrder {
    #[serde(flatten)]
    pub order: views::Order,
    pub merchant_id: String,
    pub payee_id: String,
    pub closed_at: Option<DateTime<Utc>>,
}

pub fn admin_order(row: &OrderRow) -> AdminOrder {
    AdminOrder {
        order: views::Order::from(row),
        merchant_id: row.merchant_id.clone(),
        payee_id: row.payee_id.clone(),
        closed_at: row.closed_at,
    }
}

/// A payment as the operator sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AdminPayment {
    #[schema(example = "pay_5d1f0e2c3b4a59687766554433221100")]
    pub id: String,
    pub device_id: String,
    pub notification_id: String,
    pub channel: Option<Channel>,
    /// `null` when no amount could be read.
    pub amount: Option<Amount>,
    pub package: Option<String>,
    pub title: Option<String>,
    pub text: Option<String>,
    /// When the phone saw it, as the phone says.
    pub reported_at: Option<DateTime<Utc>>,
    /// When solopay received it.
    pub received_at: DateTime<Utc>,
    pub payee_id: Option<String>,
    pub result: PaymentResult,
    /// Why it was not read, trusted or matched.
    pub reason: Option<String>,
    pub order_id: Option<String>,
    /// For a `duplicate`: the first report of the same payment (the payment that paid the
    /// order, or an earlier report kept), when there is one.
    pub duplicate_of: Option<String>,
    /// For an `ambiguous` text: every payment amount it mentions, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amounts_read: Vec<Amount>,
}

pub fn payment(row: &Payment) -> AdminPayment {
    AdminPayment {
        id: row.id.clone(),
        device_id: row.device_id.clone(),
        notification_id: row.notification_id.clone(),
        channel: row.channel,
        amount: row.amount.map(Amount::from_stored),
        package: row.package.clone(),
        title: row.title.clone(),
        text: row.text.clone(),
        reported_at: row.reported_at,
        received_at: row.created_at,
        payee_id: row.payee_id.clone(),
        result: row.result,
        reason: row.reason.clone(),
        order_id: row.order_id.clone(),
        duplicate_of: row.duplicate_of.clone(),
        amounts_read: row
            .amounts_read
            .iter()
            .flatten()
            .flatten()
            .map(|a| Amount::from_stored(*a))
            .collect(),
    }
}
