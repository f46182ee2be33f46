//! Where PostgreSQL's time went during one measured run, statement by statement
//! (`pg_stat_statements`, loaded by the history phase's cluster): so that a figure that grows
//! with the history can be traced to the statements that grew, and to why (blocks read from
//! outside shared buffers, pages dirtied, full-page images written after a checkpoint).

use serde::Serialize;

use crate::Result;

/// How many statements, the costliest in total first, a run keeps.
const KEPT: i64 = 10;
/// How much of a statement's text is kept.
const TEXT_CHARS: usize = 110;

/// One statement's cost over a run, per call where it says so.
#[derive(Debug, Clone, Serialize)]
pub struct StatementCost {
    /// The statement's text (whitespace collapsed, cut to its start).
    pub statement: String,
    pub calls: i64,
    /// Its share of the time every statement of the run took.
    pub share_of_time: f64,
    pub mean_ms: f64,
    pub shared_blocks_hit: f64,
    /// Blocks that were not in shared buffers (from the OS cache or the disk).
    pub shared_blocks_read: f64,
    pub shared_blocks_dirtied: f64,
    /// Full-page images written to the WAL (a page's first change after a checkpoint).
    pub wal_full_page_images: f64,
    pub wal_bytes: f64,
}

/// Creates the extension in the measured database (the cluster preloads its library).
pub async fn prepare(db: &tokio_postgres::Client) -> Result<()> {
    db.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await?;
    Ok(())
}

/// Forgets what every statement cost so far: the next [`costliest`] covers only what follows.
pub async fn reset(db: &tokio_postgres::Client) -> Result<()> {
    db.batch_execute("SELECT pg_stat_statements_reset()")
        .await?;
    Ok(())
}

/// The statements run on the measured database since the last [`reset`], the costliest in total
/// first.
pub async fn costliest(db: &tokio_postgres::Client) -> Result<Vec<StatementCost>> {
    let rows = db
        .query(
            "WITH s AS (
                 SELECT * FROM pg_stat_statements
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND calls > 0)
             SELECT regexp_replace(query, '\\s+', ' ', 'g'),
                    calls,
                    total_exec_time / nullif(sum(total_exec_time) OVER (), 0),
                    total_exec_time / calls,
                    shared_blks_hit::float8 / calls,
                    shared_blks_read::float8 / calls,
                    shared_blks_dirtied::float8 / calls,
                    wal_fpi::float8 / calls,
                    wal_bytes::float8 / calls
             FROM s ORDER BY total_exec_time DESC LIMIT $1",
            &[&KEPT],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| StatementCost {
            statement: row.get::<_, String>(0).chars().take(TEXT_CHARS).collect(),
            calls: row.get(1),
            share_of_time: row.get::<_, Option<f64>>(2).unwrap_or_default(),
            mean_ms: row.get(3),
            shared_blocks_hit: row.get(4),
            shared_blocks_read: row.get(5),
            shared_blocks_dirtied: row.get(6),
            wal_full_page_images: row.get(7),
            wal_bytes: row.get::<_, Option<f64>>(8).unwrap_or_default(),
        })
        .collect())
}

/// The statements as a table: share of the time, calls, and per call the time, blocks and WAL.
pub fn format(costs: &[StatementCost]) -> String {
    let mut out = format!(
        "  {:>5} {:>7} {:>8} {:>7} {:>6} {:>7} {:>5} {:>7}  statement\n",
        "time", "calls", "ms/call", "hit", "read", "dirtied", "FPI", "WAL B"
    );
    for cost in costs {
        out.push_str(&format!(
            "  {:>4.0}% {:>7} {:>8.3} {:>7.1} {:>6.2} {:>7.2} {:>5.2} {:>7.0}  {}\n",
            cost.share_of_time * 100.0,
            cost.calls,
            cost.mean_ms,
            cost.shared_blocks_hit,
            cost.shared_blocks_read,
            cost.shared_blocks_dirtied,
            cost.wal_full_page_images,
            cost.wal_bytes,
            cost.statement
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_each_statement_its_share_and_per_call_costs() {
        let table = format(&[StatementCost {
            statement: "INSERT INTO payments".into(),
            calls: 2000,
            share_of_time: 0.25,
            mean_ms: 0.125,
            shared_blocks_hit: 40.0,
            shared_blocks_read: 1.5,
            shared_blocks_dirtied: 3.0,
            wal_full_page_images: 0.75,
            wal_bytes: 4200.0,
        }]);
        let line = table.lines().nth(1).unwrap();
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>(),
            [
                "25%", "2000", "0.125", "40.0", "1.50", "3.00", "0.75", "4200", "INSERT", "INTO",
                "payments"
            ]
        );
    }
}
