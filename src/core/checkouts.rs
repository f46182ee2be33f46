//! Checkouts: a 易支付 order whose request names no channel (v2board sends no `type`), so the
//! payer picks one on solopay's cashier page. An order's payable amount is unique per payee, and
//! there is no payee before the channel, so a checkout holds no amount: choosing creates the
//! real order, with the checkout's merchant order number, through the same creation as every
//! other order. The orders' own uniqueness (merchant, order number) makes a choice happen once,
//! whoever chooses twice or at once; the checkout then remembers the order.

use std::time::Duration;

use diesel::PgConnection;
use sha2::{Digest, Sha256};

use crate::core::error::RuleError;
use crate::core::orders::OrderLookup;
use crate::core::orders::{
    self as order_rules, Creation, Creator, Order, OrderRequest, OrderRules,
};
use crate::core::secrets::new_id;
pub use crate::db::checkouts::Checkout;
use crate::db::checkouts::{self as checkout_rows, NewCheckout};
use crate::db::orders as order_rows;
use crate::db::payees as payee_rows;
use crate::domain::{Channel, MerchantId, MerchantOrderId, OrderProtocol};
use crate::money::Amount;

/// An order request without its channel.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    pub merchant_order_id: MerchantOrderId,
    pub amount: Amount,
    pub subject: Option<String>,
    pub notify_url: Option<String>,
    pub return_url: Option<String>,
    pub protocol: OrderProtocol,
    pub compat: Option<serde_json::Value>,
}

impl CheckoutRequest {
    /// A digest of every parameter, so that a repeated order number can be told apart from a
    /// retry of the same request.
    fn fingerprint(&self) -> Vec<u8> {
        let canonical = serde_json::json!([
            self.merchant_order_id.as_str(),
            self.amount.to_string(),
            self.subject,
            self.notify_url,
            self.return_url,
            self.protocol.as_str(),
            self.compat,
        ]);
        Sha256::digest(canonical.to_string().as_bytes()).to_vec()
    }
}

/// Where a checkout request leads.
#[derive(Debug)]
pub enum CheckoutCreation {
    /// To the cashier page of this checkout.
    Open(Checkout),
    /// The payer chose already: to this order.
    Chosen(Order),
}

/// The checkout a request names, created once per merchant order number: the same request again
/// finds the same checkout (or the order chosen from it); other parameters are refused, as is a
/// number an order without a checkout already has.
pub fn create_checkout(
    conn: &mut PgConnection,
    merchant_id: MerchantId<'_>,
    request: &CheckoutRequest,
    ttl: Duration,
) -> Result<CheckoutCreation, RuleError> {
    let number = request.merchant_order_id.as_str();
    let reused = || {
        RuleError::IdempotencyConflict(format!(
            "merchant_order_id {number:?} was already used with different parameters"
        ))
    };
    let fingerprint = request.fingerprint();
    let id = new_id("chk");
    let stored = checkout_rows::insert_or_find(
        conn,
        &NewCheckout {
            id: &id,
            merchant_id: merchant_id.as_str(),
            merchant_order_id: number,
            request_fingerprint: &fingerprint,
            protocol: request.protocol,
            amount: request.amount.as_decimal(),
            subject: request.subject.as_deref(),
            notify_url: request.notify_url.as_deref(),
            return_url: request.return_url.as_deref(),
            compat: request.compat.as_ref(),
            expires_in: ttl,
        },
    )?;
    if stored.request_fingerprint != fingerprint {
        return Err(reused());
    }
    match order_rows::find_by_merchant_order_id(conn, merchant_id, number)? {
        Some(order) if is_chosen_from(&order, &stored) => Ok(CheckoutCreation::Chosen(
            order_rules::read_order(conn, &order.id)?.unwrap_or(order),
        )),
        // An order made without this checkout (a request with a `type`) has the number.
        Some(_) => Err(reused()),
        None => Ok(CheckoutCreation::Open(stored)),
    }
}

/// Whether `order` was created by choosing on `checkout`.
fn is_chosen_from(order: &Order, checkout: &Checkout) -> bool {
    order.merchant_id == checkout.merchant_id
        && order
            .compat
            .as_ref()
            .and_then(|c| c.get("checkout"))
            .and_then(serde_json::Value::as_str)
            == Some(checkout.id.as_str())
}

/// A checkout by id, with whether it has expired.
pub fn find_checkout(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<(Checkout, bool)>, RuleError> {
    Ok(checkout_rows::find_with_expiry(conn, id)?)
}

/// What a merchant's lookup by order number finds in a protocol with checkouts.
#[derive(Debug)]
pub enum OrderOrCheckout {
    Order(Order),
    /// The payer has not chosen a channel yet: an unpaid order without a channel.
    Checkout(Checkout),
}

/// The merchant's order `lookup` names, as it is now, or else its checkout with that order
/// number.
pub fn merchant_order_or_checkout(
    conn: &mut PgConnection,
    merchant_id: MerchantId<'_>,
    lookup: OrderLookup<'_>,
) -> Result<Option<OrderOrCheckout>, RuleError> {
    if let Some(order) = order_rules::read_merchant_order(conn, merchant_id, lookup)? {
        return Ok(Some(OrderOrCheckout::Order(order)));
    }
    Ok(match lookup {
        OrderLookup::ByMerchantOrderId(number) => {
            checkout_rows::find_by_merchant_order_id(conn, merchant_id, number)?
                .map(OrderOrCheckout::Checkout)
        }
        OrderLookup::ById(_) => None,
    })
}

/// The channels an order could be given a payee on right now.
pub fn online_channels(
    conn: &mut PgConnection,
    rules: &OrderRules,
) -> Result<Vec<Channel>, RuleError> {
    let offline_after = i32::try_from(rules.device_offline_after.as_secs()).unwrap_or(i32::MAX);
    let mut online = Vec::new();
    for channel in Channel::ALL {
        if payee_rows::any_online(conn, *channel, offline_after)? {
            online.push(*channel);
        }
    }
    Ok(online)
}

/// The payer's choice: creates the checkout's order on `channel` (a unique payable amount on a
/// payee of that channel), or returns the order an earlier choice created, whatever its
/// channel. An expired checkout cannot be chosen on.
pub fn choose_channel(
    conn: &mut PgConnection,
    checkout_id: &str,
    channel: Channel,
    rules: &OrderRules,
) -> Result<Order, RuleError> {
    let (checkout, expired) =
        find_checkout(conn, checkout_id)?.ok_or_else(|| RuleError::not_found("checkout"))?;
    let merchant_id = MerchantId(&checkout.merchant_id);
    let chosen_before = |conn: &mut PgConnection| -> Result<Option<Order>, RuleError> {
        match order_rows::find_by_merchant_order_id(conn, merchant_id, &checkout.merchant_order_id)?
        {
            Some(order) if is_chosen_from(&order, &checkout) => {
                checkout_rows::link_order(conn, &checkout.id, &order.id)?;
                Ok(order_rules::read_order(conn, &order.id)?)
            }
            Some(_) => Err(RuleError::IdempotencyConflict(
                "another order has this merchant_order_id".into(),
            )),
            None => Ok(None),
        }
    };
    if let Some(order) = chosen_before(conn)? {
        return Ok(order);
    }
    if expired {
        return Err(RuleError::InvalidState("the checkout has expired".into()));
    }
    let request = order_request(&checkout, channel)?;
    match order_rules::create_order(
        conn,
        Creator::Merchant(merchant_id.as_str()),
        &request,
        rules,
    ) {
        Ok(Creation::Created(order) | Creation::Repeated(order)) => {
            checkout_rows::link_order(conn, &checkout.id, &order.id)?;
            Ok(order)
        }
        // Chosen at the same moment on another channel: that choice stands.
        Err(RuleError::IdempotencyConflict(_)) => chosen_before(conn)?
            .ok_or_else(|| RuleError::internal("a conflicting choice left no order")),
        Err(error) => Err(error),
    }
}

/// The order a choice of `channel` creates: the checkout's parameters, and its id among the
/// protocol's fields.
fn order_request(checkout: &Checkout, channel: Channel) -> Result<OrderRequest, RuleError> {
    let mut compat = match &checkout.compat {
        Some(serde_json::Value::Object(fields)) => fields.clone(),
        _ => serde_json::Map::new(),
    };
    compat.insert("checkout".into(), checkout.id.clone().into());
    Ok(OrderRequest {
        merchant_order_id: MerchantOrderId::parse(&checkout.merchant_order_id, checkout.protocol)?,
        amount: Amount::from_stored(checkout.amount),
        channel,
        subject: checkout.subject.clone(),
        notify_url: checkout.notify_url.clone(),
        return_url: checkout.return_url.clone(),
        expires_in: None,
        metadata: None,
        protocol: checkout.protocol,
        compat: Some(serde_json::Value::Object(compat)),
    })
}
