//! The `payees` and `payee_fixed_codes` tables: the owner's collection codes, which device listens
//! for each, and the fixed-amount codes that already carry an amount.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use rust_decimal::Decimal;

use super::schema::{payee_fixed_codes, payees};
use crate::domain::Channel;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = payees, check_for_backend(diesel::pg::Pg))]
pub struct Payee {
    pub id: String,
    pub channel: Channel,
    pub name: String,
    pub qr_code: String,
    pub device_id: String,
    pub enabled: bool,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = payee_fixed_codes, check_for_backend(diesel::pg::Pg))]
pub struct FixedCode {
    pub payee_id: String,
    pub amount: Decimal,
    pub qr_code: String,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = payees)]
pub struct NewPayee<'a> {
    pub id: &'a str,
    pub channel: Channel,
    pub name: &'a str,
    pub qr_code: &'a str,
    pub device_id: &'a str,
    pub enabled: bool,
}

pub fn insert(conn: &mut PgConnection, new: &NewPayee<'_>) -> QueryResult<Payee> {
    diesel::insert_into(payees::table)
        .values(new)
        .returning(Payee::as_returning())
        .get_result(conn)
}

pub fn insert_fixed_codes(conn: &mut PgConnection, codes: &[FixedCode]) -> QueryResult<usize> {
    diesel::insert_into(payee_fixed_codes::table)
        .values(codes)
        .execute(conn)
}

/// Another payee of `channel` with this collection code, if there is one: the same text but for
/// case and surrounding blanks (a scanner may read a code's URL in capitals, and a code typed by
/// hand may carry a space), so that one account is not two payees by its spelling.
pub fn with_qr_code(
    conn: &mut PgConnection,
    channel: Channel,
    qr_code: &str,
    except: Option<&str>,
) -> QueryResult<Option<Payee>> {
    let mut query = payees::table
        .filter(payees::channel.eq(channel))
        .filter(
            sql::<Bool>("lower(btrim(payees.qr_code)) = lower(btrim(")
                .bind::<Text, _>(qr_code)
                .sql("))"),
        )
        .into_boxed();
    if let Some(except) = except {
        query = query.filter(payees::id.ne(except.to_string()));
    }
    query.select(Payee::as_select()).first(conn).optional()
}

pub fn find(conn: &mut PgConnection, id: &str) -> QueryResult<Option<Payee>> {
    payees::table
        .find(id)
        .select(Payee::as_select())
        .first(conn)
        .optional()
}

/// What an operator may change on a payee; `None` leaves a field as it is. A new QR code serves
/// new orders; existing ones keep theirs.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = payees)]
pub struct PayeeChanges<'a> {
    pub name: Option<&'a str>,
    pub qr_code: Option<&'a str>,
    pub enabled: Option<bool>,
}

pub fn update(
    conn: &mut PgConnection,
    id: &str,
    changes: &PayeeChanges<'_>,
) -> QueryResult<Option<Payee>> {
    // An empty change set is not an UPDATE diesel can write: read the row instead.
    if changes.name.is_none() && changes.qr_code.is_none() && changes.enabled.is_none() {
        return find(conn, id);
    }
    diesel::update(payees::table.find(id))
        .set(changes)
        .returning(Payee::as_returning())
        .get_result(conn)
        .optional()
}

/// Replaces a payee's fixed-amount codes.
pub fn replace_fixed_codes(
    conn: &mut PgConnection,
    payee_id: &str,
    codes: &[FixedCode],
) -> QueryResult<()> {
    diesel::delete(payee_fixed_codes::table.filter(payee_fixed_codes::payee_id.eq(payee_id)))
        .execute(conn)?;
    if !codes.is_empty() {
        insert_fixed_codes(conn, codes)?;
    }
    Ok(())
}

pub fn fixed_codes(conn: &mut PgConnection, payee_id: &str) -> QueryResult<Vec<FixedCode>> {
    payee_fixed_codes::table
        .filter(payee_fixed_codes::payee_id.eq(payee_id))
        .order(payee_fixed_codes::amount)
        .select(FixedCode::as_select())
        .load(conn)
}

/// Every payee with its fixed-amount codes.
pub fn list_with_codes(conn: &mut PgConnection) -> QueryResult<Vec<(Payee, Vec<FixedCode>)>> {
    let all = payees::table
        .order((payees::created_at, payees::id))
        .select(Payee::as_select())
        .load(conn)?;
    let codes = FixedCode::belonging_to_payees(conn, &all)?;
    Ok(all.into_iter().zip(codes).collect())
}

impl FixedCode {
    /// The codes of each payee, in the payees' order.
    fn belonging_to_payees(
        conn: &mut PgConnection,
        owners: &[Payee],
    ) -> QueryResult<Vec<Vec<FixedCode>>> {
        let ids: Vec<&str> = owners.iter().map(|p| p.id.as_str()).collect();
        let codes = payee_fixed_codes::table
            .filter(payee_fixed_codes::payee_id.eq_any(&ids))
            .order((payee_fixed_codes::payee_id, payee_fixed_codes::amount))
            .select(FixedCode::as_select())
            .load(conn)?;
        Ok(owners
            .iter()
            .map(|p| {
                codes
                    .iter()
                    .filter(|c| c.payee_id == p.id)
                    .cloned()
                    .collect()
            })
            .collect())
    }
}

/// Whether an order of `channel` could be given a payee now: an enabled payee of the channel
/// with an enabled device seen within `offline_after_secs` (the allocation's own test).
pub fn any_online(
    conn: &mut PgConnection,
    channel: crate::domain::Channel,
    offline_after_secs: i32,
) -> QueryResult<bool> {
    diesel::select(
        diesel::dsl::sql::<diesel::sql_types::Bool>("EXISTS (SELECT 1 FROM solopay_online_payees(")
            .bind::<diesel::sql_types::Text, _>(channel)
            .sql(", ")
            .bind::<diesel::sql_types::Int4, _>(offline_after_secs)
            .sql("))"),
    )
    .get_result(conn)
}
