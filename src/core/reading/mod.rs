//! Reading payment notifications: from the Android package, title and text that a listener
//! forwards, decide whether the notification is a receipt in one known wording of a payment app,
//! and which one amount it reports; anything else is a [`Refusal`] with its reason, kept for the
//! operator and never credited.
//!
//! The reading is positive. A notification credits only when the package is a payment app's,
//! the title is one of that app's system senders, and the whole text (after WeChat's stack
//! prefix, whose sender must be the title) matches one [`wordings`] row anchored at both ends,
//! with the amount at the row's own position. Before any row is tried, a notification that
//! belongs to a refused class (refunds, reversals, failures, cancellations, withdrawals,
//! outgoing payments, red packets, balances, totals, broadcasts) is refused whatever else it
//! says; a notification that mentions money anywhere a row does not put it is ambiguous. Text is
//! normalised once (NFKC) before all of this, and an amount that is not well-formed is refused,
//! never cut short. Nothing here touches storage.

mod refusals;
mod text;
mod wordings;

use crate::domain::Channel;
use crate::money::Amount;

pub use refusals::RefusalClass;
pub use text::{is_normal, normalise};
pub use wordings::{channel_of_package, official_packages, unstack};

use text::{digit_look_alike, has_numeral_money, money_mentions, parse_amount};
use wordings::{Attempt, COMPILED, Fields, Title};

/// The channel and amount a receipt reports, and the wording it was read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub channel: Channel,
    pub amount: Amount,
    pub wording: &'static str,
    /// The receipt sits in the title (Alipay's `你已成功收款5.00元`), so no system sender vouches
    /// for it: a chat partner can take that text as a nickname. Credit it only where the
    /// notification's Android metadata shows it is not a chat.
    pub titled_by_itself: bool,
}

/// Why a notification is not read as a payment. Every refusal is stored for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Only the payment apps themselves post payments; an SMS or chat app saying
    /// "你已成功收款" is not one.
    #[error("notifications from package {0:?} are never payments")]
    UnknownPackage(String),
    /// The title (or the sender a stacked text names) is not one of the app's system senders:
    /// a chat or group message that merely looks like a payment.
    #[error("sender {0:?} is not one of the payment app's system senders")]
    UnknownSender(String),
    /// A class of notification that restates amounts without being an incoming payment.
    #[error("{} ({word:?}), never an incoming payment", class.describe())]
    Refused { class: RefusalClass, word: String },
    /// The amount at a wording's position is not a valid amount (`1,23.00`, `0.00`, three
    /// decimals, too large).
    #[error("{0:?} is not a valid amount")]
    InvalidAmount(String),
    /// More than one payment amount in one notification, equal or not.
    #[error("more than one payment amount in one notification: {}", list(.0))]
    Ambiguous(Vec<Amount>),
    /// A system sender's notification that mentions no amount.
    #[error("no amount in the notification")]
    NoAmount,
    /// A system sender's notification with an amount, in no known wording.
    #[error("not a known receipt wording of this app")]
    UnknownWording,
}

impl Refusal {
    /// A short stable name of the reason (`sender`, `refund`, `ambiguous`, …).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownPackage(_) => "package",
            Refusal::UnknownSender(_) => "sender",
            Refusal::Refused { class, .. } => class.code(),
            Refusal::InvalidAmount(_) => "invalid_amount",
            Refusal::Ambiguous(_) => "ambiguous",
            Refusal::NoAmount => "no_amount",
            Refusal::UnknownWording => "unknown_wording",
        }
    }
}

fn list(amounts: &[Amount]) -> String {
    amounts
        .iter()
        .map(Amount::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads a notification of `package`: the channel from the package, the amount from title and
/// text, which are normalised here.
pub fn read(package: &str, title: Option<&str>, text: Option<&str>) -> Result<Reading, Refusal> {
    if channel_of_package(package).is_none() {
        return Err(Refusal::UnknownPackage(package.to_owned()));
    }
    let (title, text) = (title.unwrap_or_default(), text.unwrap_or_default());
    let (title_normalised, text_normalised) = (normalise(title), normalise(text));
    let fields = Fields {
        title,
        text,
        title_normalised: &title_normalised,
        text_normalised: &text_normalised,
    };
    if let Some((class, word)) = refusals::refusal_of(&title_normalised, &text_normalised) {
        return Err(Refusal::Refused { class, word });
    }
    let mentioned: Vec<&str> = money_mentions(&title_normalised)
        .into_iter()
        .chain(money_mentions(&text_normalised))
        .collect();
    let amounts_mentioned = || mentioned.iter().filter_map(|m| parse_amount(m)).collect();

    let mut official_title = false;
    let mut other_sender = None;
    for compiled in COMPILED
        .iter()
        .filter(|c| c.wording.packages.contains(&package))
    {
        match compiled.attempt(&fields) {
            Attempt::OtherTitle => {}
            Attempt::OtherText => official_title = true,
            Attempt::OtherSender(sender) => {
                official_title = true;
                other_sender.get_or_insert(sender);
            }
            Attempt::Read(slots) => {
                // Digits only NFKC makes (`1⒑5` is `110.5` once normalised) are not printed
                // by any app.
                if let Some(c) = [title, text].into_iter().find_map(digit_look_alike) {
                    return Err(Refusal::InvalidAmount(c.to_string()));
                }
                let amounts = slots
                    .iter()
                    .map(|slot| parse_amount(slot).ok_or_else(|| (*slot).to_owned()))
                    .collect::<Result<Vec<Amount>, String>>()
                    .map_err(Refusal::InvalidAmount)?;
                // A title restating the text's amount is one payment; money anywhere else, or
                // two different amounts, is not a receipt we can credit.
                let restated = amounts.windows(2).all(|pair| pair.first() == pair.last());
                // Money in numerals NFKC keeps (`١٠٠元`, `五百元`, `Ⅹ元`) or with a magnitude
                // (`1万元`) is money outside the row's position too.
                let numerals = [title, text, &title_normalised, &text_normalised]
                    .into_iter()
                    .any(has_numeral_money);
                let (Some(amount), true, true, false) = (
                    amounts.first(),
                    restated,
                    mentioned.len() <= amounts.len(),
                    numerals,
                ) else {
                    return Err(Refusal::Ambiguous(amounts_mentioned()));
                };
                return Ok(Reading {
                    channel: compiled.wording.channel,
                    amount: *amount,
                    wording: compiled.wording.id,
                    titled_by_itself: matches!(compiled.wording.title, Title::Receipt(_)),
                });
            }
        }
    }
    if !official_title {
        return Err(Refusal::UnknownSender(title.to_owned()));
    }
    if let Some(sender) = other_sender {
        return Err(Refusal::UnknownSender(sender));
    }
    match mentioned.len() {
        0 => Err(Refusal::NoAmount),
        1 => Err(Refusal::UnknownWording),
        _ => Err(Refusal::Ambiguous(amounts_mentioned())),
    }
}

#[cfg(test)]
mod tests;
