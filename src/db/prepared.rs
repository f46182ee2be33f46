//! [`Prepared`]: a statement kept prepared on its connection although diesel would not keep it.
//!
//! Diesel keeps a statement prepared (parsed, and planned once Postgres settles on a generic
//! plan) only when its text cannot vary: never an `UPDATE`, an upsert, a `sql_query` or any
//! statement with a raw SQL fragment. Those are parsed, analysed and planned again on every run.
//! Recording a payment is about twenty such statements, and that work was about 40 % of
//! Postgres's CPU in a notify benchmark (perf: `GetCachedPlan`, `parse_analyze_varparams`,
//! `pg_parse_query`). Wrapped in [`Prepared`], a statement is kept, keyed by its text.
//!
//! Only when it is loaded (`load`, `get_result`): diesel's `execute` hands the connection a
//! reference, whose `QueryFragment` asks the wrapped statement, not [`Prepared`], whether it may
//! be kept. A statement run for its effect returns something (`RETURNING id`, a `done` column
//! read as [`Done`]) and is loaded.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::{QueryResult, QueryableByName, RunQueryDsl};

/// A statement kept prepared on each connection, keyed by its text. Only for statements whose
/// text the code fixes (values travel as binds, never in the text), so that a connection keeps
/// a bounded number of them, and that name every column they return: never `SELECT *` or
/// `RETURNING *`, whose kept plan fails ("cached plan must not change result type") once a
/// newer release adds a column, on every connection of an instance still running.
#[derive(Debug, Clone, Copy)]
pub struct Prepared<Q>(pub Q);

/// `.prepared()`: wraps a statement in [`Prepared`].
pub trait KeepPrepared: Sized {
    fn prepared(self) -> Prepared<Self> {
        Prepared(self)
    }
}

impl<Q: QueryFragment<Pg>> KeepPrepared for Q {}

impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    // Keyed by its SQL text, not by its type.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, Conn> RunQueryDsl<Conn> for Prepared<Q> {}

/// A row of a `sql_query` run for its effect, which says so in a column named `done`.
#[derive(Debug, QueryableByName)]
pub struct Done {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub done: bool,
}
