//! The `forwarder_signatures` table: each (timestamp, sign) a forwarder sent, accepted once.

use std::time::Duration;

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Interval};

use super::interval;
use super::schema::forwarder_signatures;
use crate::domain::DeviceId;

/// Whether this (timestamp, sign) was seen before, and with which body.
#[derive(Debug, PartialEq, Eq)]
pub enum Use {
    First,
    /// The same request again (a forwarder's retry).
    SameBody,
    /// Another body under a signature already used: a replay.
    OtherBody,
}

/// Records a use of (timestamp, sign) by a device; part of the transaction storing the request.
pub fn record_use(
    conn: &mut PgConnection,
    device_id: DeviceId<'_>,
    timestamp_ms: i64,
    sign: &str,
    body_sha256: &[u8],
) -> QueryResult<Use> {
    let inserted = diesel::insert_into(forwarder_signatures::table)
        .values((
            forwarder_signatures::device_id.eq(device_id.as_str()),
            forwarder_signatures::timestamp_ms.eq(timestamp_ms),
            forwarder_signatures::sign.eq(sign),
            forwarder_signatures::body_sha256.eq(body_sha256),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    if inserted == 1 {
        return Ok(Use::First);
    }
    let first: Vec<u8> = forwarder_signatures::table
        .find((device_id.as_str(), timestamp_ms, sign))
        .select(forwarder_signatures::body_sha256)
        .first(conn)?;
    Ok(if first == body_sha256 {
        Use::SameBody
    } else {
        Use::OtherBody
    })
}

/// Forgets uses older than `age`: their timestamps are outside the window anyway.
pub fn delete_older_than(conn: &mut PgConnection, age: Duration) -> QueryResult<usize> {
    diesel::delete(
        forwarder_signatures::table.filter(
            sql::<Bool>("forwarder_signatures.created_at < now() - ")
                .bind::<Interval, _>(interval(age)),
        ),
    )
    .execute(conn)
}
