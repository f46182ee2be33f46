//! The SQL sources at their own level (src/db/sql_sources.rs): a fresh database started the way
//! the service starts, with what another release left in `sql_sources`; and the audit log's
//! refusal as a SQLSTATE.

use std::time::Duration;

use solopay::app::prepare_database;
use solopay::db::sql_sources::{self, SOURCES};
use tokio_postgres::Client;

use crate::helpers::*;

/// A fresh database, migrated and with the SQL sources applied, and a client on it.
async fn started() -> (TestDb, Client) {
    let db = TestDb::fresh();
    prepare_database(&db.url, Duration::ZERO).await.unwrap();
    let client = db.client().await;
    (db, client)
}

/// The revision of the allocation source in this build.
fn allocation_revision() -> i32 {
    SOURCES
        .iter()
        .find(|source| source.name == "allocation")
        .and_then(sql_sources::revision)
        .unwrap()
}

async fn recorded_revision(client: &Client) -> i32 {
    client
        .query_one(
            "SELECT revision FROM sql_sources WHERE name = 'allocation'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Gives `solopay_max_offset` another body, as another release's source would.
const OTHER_BODY: &str = "CREATE OR REPLACE FUNCTION solopay_max_offset(\
                          p_amount numeric, p_max_steps integer, p_step numeric) \
                          RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 7 $$";

async fn max_offset(client: &Client) -> i32 {
    client
        .query_one("SELECT solopay_max_offset(1.00, 99, 0.01)", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_revision_is_replaced_at_start() {
    let (db, client) = started().await;
    // What an older release left: an older revision, other content, a function it lacked.
    client
        .batch_execute(&format!(
            "UPDATE sql_sources SET revision = 1, sha256 = '\\x00' WHERE name = 'allocation'; \
             {OTHER_BODY}; DROP FUNCTION solopay_first_free_offset(text, numeric, integer, numeric)"
        ))
        .await
        .unwrap();
    let applied = prepare_database(&db.url, Duration::ZERO).await.unwrap();
    assert_eq!(
        applied,
        [format!(
            "allocation (SQL source, revision {})",
            allocation_revision()
        )]
    );
    assert_eq!(recorded_revision(&client).await, allocation_revision());
    assert_eq!(max_offset(&client).await, 99);
    let restored = db
        .count("SELECT count(*) FROM pg_proc WHERE proname = 'solopay_first_free_offset'")
        .await;
    assert_eq!(restored, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_revision_applied_by_a_newer_release_is_left_alone() {
    let (db, client) = started().await;
    let newer = allocation_revision() + 1;
    client
        .batch_execute(&format!(
            "UPDATE sql_sources SET revision = {newer}, sha256 = '\\x00' WHERE name = 'allocation'; \
             {OTHER_BODY}"
        ))
        .await
        .unwrap();
    let applied = prepare_database(&db.url, Duration::ZERO).await.unwrap();
    assert!(applied.is_empty(), "{applied:?}");
    assert_eq!(recorded_revision(&client).await, newer);
    assert_eq!(max_offset(&client).await, 7);
    // This release counts the newer revision as applied: it is ready.
    let url = db.url.clone();
    let ready = tokio::task::spawn_blocking(move || {
        let mut conn = solopay::db::startup::establish(&url).unwrap();
        sql_sources::applied(&mut conn).unwrap()
    })
    .await
    .unwrap();
    assert!(ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_revision_with_other_content_stops_the_start() {
    let (db, client) = started().await;
    client
        .batch_execute(&format!(
            "UPDATE sql_sources SET sha256 = '\\x00' WHERE name = 'allocation'; {OTHER_BODY}"
        ))
        .await
        .unwrap();
    let error = prepare_database(&db.url, Duration::ZERO)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!(
            "SQL source allocation revision {} in the database differs from this build's",
            allocation_revision()
        )),
        "{error}"
    );
    // Nothing was replaced.
    assert_eq!(max_offset(&client).await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_refuses_a_change_or_a_removal_with_sp004() {
    let (_db, client) = started().await;
    client
        .batch_execute(
            "INSERT INTO audit_log (operator, action, target_type, target_id) \
             VALUES ('admin', 'merchant.create', 'merchant', 'mch_t')",
        )
        .await
        .unwrap();
    for statement in [
        "UPDATE audit_log SET note = 'rewritten'",
        "DELETE FROM audit_log",
    ] {
        let error = client.execute(statement, &[]).await.unwrap_err();
        let refusal = error.as_db_error().unwrap();
        assert_eq!(refusal.code().code(), "SP004", "{statement}");
        assert_eq!(refusal.message(), "audit_log is append-only");
        assert_eq!(refusal.constraint(), Some("solopay_audit_log_append_only"));
    }
}
