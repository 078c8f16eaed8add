//! Rate limits kept in the service's own database, so every replica on that database spends
//! from one budget (issue 20, item 7): N replicas allow the documented rate, not N times it.
//!
//! The algorithm is GCRA (the generic cell rate algorithm, a token bucket written as one
//! number): each budget is one row holding its *theoretical arrival time* (`tat`, microseconds
//! since the epoch), the time at which it would be full again. Spending one unit moves it
//! `interval` on; a spend is refused when the row is more than `burst` ahead of now. Each spend
//! is one `INSERT .. ON CONFLICT DO UPDATE .. WHERE .. RETURNING` statement: Postgres runs
//! concurrent upserts of one key one after the other under the row's lock, SQLite has one
//! writer at a time, so two replicas can never both take the last unit.
//!
//! What a row holds is a key and a time (`rate_limits (key, tat)`): the key is whatever the
//! service makes of its budget's name. Services key per-person budgets by an HMAC under a key
//! every replica shares ([`crate::seal::hmac`]), never by the subject (see the services'
//! `limits` modules and docs/architecture.md). A row whose `tat` has passed is a full budget,
//! the same as no row, so [`LimitTable::sweep`] deletes it.
//!
//! The statements are written once, generic over the backend, like every store's.

use crate::sql::{Dialect, SqlStore};
use async_trait::async_trait;

/// One microsecond-based budget: a unit refills every `interval_us`; up to
/// `burst_us / interval_us + 1` units may be spent at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Microseconds between two units at the steady rate.
    pub interval_us: i64,
    /// How far ahead of now a budget may run: the burst beyond the first unit.
    pub burst_us: i64,
}

impl Rate {
    /// `n` units per `period_us`, all of them at once if need be (`n` at least 1).
    pub fn per(n: u32, period_us: i64) -> Self {
        let interval_us = (period_us / i64::from(n.max(1))).max(1);
        Self {
            interval_us,
            burst_us: period_us - interval_us,
        }
    }

    /// Microseconds until a budget whose row says `tat` admits one more unit at `now_us`; 0
    /// when it does now.
    pub fn wait(self, tat: Option<i64>, now_us: i64) -> i64 {
        tat.map_or(0, |t| (t - now_us - self.burst_us).max(0))
    }
}

/// The table of budgets. Implemented for every service's [`SqlStore`]; a service hands it out
/// from its store (each service's migrations create `rate_limits`).
#[async_trait]
pub trait LimitTable: Send + Sync + 'static {
    /// Spends one unit of the budget `key` at `now_us`, or answers how many microseconds
    /// remain until it may (`Some`, nothing spent). `previous` names the same budget under the
    /// key it had before the service's key rotated: a budget that does not exist yet under
    /// `key` starts from where it stood under `previous`, so a rotation refills nothing.
    async fn spend(
        &self,
        key: &[u8],
        previous: &[u8],
        rate: Rate,
        now_us: i64,
    ) -> Result<Option<i64>, sqlx::Error>;

    /// As [`Self::spend`], spending nothing: whether the budget has a unit left.
    async fn peek(
        &self,
        key: &[u8],
        previous: &[u8],
        rate: Rate,
        now_us: i64,
    ) -> Result<Option<i64>, sqlx::Error>;

    /// Charges `cost_us` of time to the budget `key` whatever it holds (paid in arrears, as a
    /// worker does after a chunk of work), answering how many microseconds the payer should
    /// wait before it takes more: 0 while the budget is within `burst_us` of now.
    async fn charge(
        &self,
        key: &[u8],
        cost_us: i64,
        burst_us: i64,
        now_us: i64,
    ) -> Result<i64, sqlx::Error>;

    /// Deletes every budget that is full again at `now_us` (a full budget is the same as none).
    /// Answers how many rows went.
    async fn sweep(&self, now_us: i64) -> Result<u64, sqlx::Error>;
}

/// A budget as it stands, from the row under `key` or (when that has none) under `previous`.
const CURRENT: &str = "SELECT MAX(tat) FROM rate_limits WHERE key = $1 OR key = $2";

/// One unit: a new row starts from the `previous` key's row (or now); an existing row moves on
/// unless it is more than the burst ahead. No row comes back when the spend is refused.
/// (`CASE` rather than `GREATEST`: SQLite has no `GREATEST`, and its two-argument `max` is not
/// Postgres'.) SQLite needs the `WHERE` of an `INSERT .. SELECT .. ON CONFLICT` anyway, to tell
/// `ON CONFLICT` from a join's `ON`.
const SPEND: &str = "INSERT INTO rate_limits (key, tat) \
     SELECT $1, (CASE WHEN p.tat > $3 THEN p.tat ELSE $3 END) + $4 \
     FROM (SELECT COALESCE((SELECT tat FROM rate_limits WHERE key = $2), $3) AS tat) AS p \
     WHERE p.tat - $3 <= $5 \
     ON CONFLICT (key) DO UPDATE \
     SET tat = (CASE WHEN rate_limits.tat > $3 THEN rate_limits.tat ELSE $3 END) + $4 \
     WHERE rate_limits.tat - $3 <= $5 \
     RETURNING tat";

/// Cost charged whatever is left; the new arrival time comes back.
const CHARGE: &str = "INSERT INTO rate_limits (key, tat) VALUES ($1, $2 + $3) \
     ON CONFLICT (key) DO UPDATE \
     SET tat = (CASE WHEN rate_limits.tat > $2 THEN rate_limits.tat ELSE $2 END) + $3 \
     RETURNING tat";

#[async_trait]
impl<DB: Dialect, S: 'static> LimitTable for SqlStore<DB, S>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    Option<i64>: for<'r> sqlx::Decode<'r, DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
    (Option<i64>,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    async fn spend(
        &self,
        key: &[u8],
        previous: &[u8],
        rate: Rate,
        now_us: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        let spent: Option<(i64,)> = sqlx::query_as(SPEND)
            .bind(key)
            .bind(previous)
            .bind(now_us)
            .bind(rate.interval_us)
            .bind(rate.burst_us)
            .fetch_optional(self.pool())
            .await?;
        if spent.is_some() {
            return Ok(None);
        }
        // Refused: how long to wait, read after the fact (a refusal is rare, and the budget
        // can only have moved further on since).
        let wait = self.peek(key, previous, rate, now_us).await?;
        Ok(Some(wait.unwrap_or(1).max(1)))
    }

    async fn peek(
        &self,
        key: &[u8],
        previous: &[u8],
        rate: Rate,
        now_us: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        let (tat,): (Option<i64>,) = sqlx::query_as(CURRENT)
            .bind(key)
            .bind(previous)
            .fetch_one(self.pool())
            .await?;
        Ok(match rate.wait(tat, now_us) {
            0 => None,
            w => Some(w),
        })
    }

    async fn charge(
        &self,
        key: &[u8],
        cost_us: i64,
        burst_us: i64,
        now_us: i64,
    ) -> Result<i64, sqlx::Error> {
        let (tat,): (i64,) = sqlx::query_as(CHARGE)
            .bind(key)
            .bind(now_us)
            .bind(cost_us)
            .fetch_one(self.pool())
            .await?;
        Ok((tat - now_us - burst_us).max(0))
    }

    async fn sweep(&self, now_us: i64) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM rate_limits WHERE tat <= $1")
            .bind(now_us)
            .execute(self.pool())
            .await?;
        Ok(DB::rows_affected(&done))
    }
}

/// Microseconds since the Unix epoch from milliseconds (services keep their clocks in ms).
pub fn us(ms: i64) -> i64 {
    ms.saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_of_n_per_period_bursts_n() {
        let r = Rate::per(3, 60_000_000);
        assert_eq!(r.interval_us, 20_000_000);
        assert_eq!(r.burst_us, 40_000_000);
        // Three spends from empty: tat = now + 60 s, 60 - 40 = 20 s to wait.
        assert_eq!(r.wait(Some(60_000_000), 0), 20_000_000);
        assert_eq!(r.wait(Some(40_000_000), 0), 0);
        assert_eq!(r.wait(None, 0), 0);
    }
}
