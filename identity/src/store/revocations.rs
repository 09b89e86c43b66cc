//! The record of revocations: revoked access tokens (`revoked_tokens`; ended sessions are rows
//! of `sessions`, see [`super::sessions`]) and, on PostgreSQL, the `revocations` feed that
//! triggers append to in commit order (migrations/postgres/0002), which every instance follows.

use uuid::Uuid;

use super::{Dialect, Store, StoreError};
use crate::revocation::Kind;

/// Writes the revocation of token `jti` (idempotent), in whatever transaction `conn` is in.
pub(crate) async fn write_revocation(
    conn: &mut sqlx::AnyConnection,
    jti: Uuid,
    user_id: i64,
    exp: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO revoked_tokens (jti, user_id, exp, revoked_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti.as_bytes().as_slice())
    .bind(user_id)
    .bind(exp)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// One record of the packed load: the 32 hex digits of a jti, then the 16 of its exp (two's
/// complement). A record that does not parse (a row we did not write) is skipped rather than
/// refusing to start.
const RECORD: usize = 48;

fn parse_packed(packed: &str) -> impl Iterator<Item = (Uuid, i64)> + '_ {
    packed.as_bytes().chunks_exact(RECORD).filter_map(|record| {
        let hex = std::str::from_utf8(record).ok()?;
        let jti = u128::from_str_radix(&hex[..32], 16).ok()?;
        let exp = u64::from_str_radix(&hex[32..], 16).ok()? as i64;
        Some((Uuid::from_u128(jti), exp))
    })
}

/// One row of the `revocations` feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedRow {
    /// Its place in commit order: the cursor moves past it.
    pub id: i64,
    pub kind: Kind,
    /// The jti or the session id; `None` when the key is no id (a row we did not write).
    pub key: Option<Uuid>,
    pub exp: i64,
}

impl Store {
    /// Revokes token `jti` of `user_id`, valid until `exp` (idempotent).
    pub async fn revoke_token(
        &self,
        jti: Uuid,
        user_id: i64,
        exp: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool().acquire().await?;
        Ok(write_revocation(&mut conn, jti, user_id, exp, now).await?)
    }

    /// How many revoked tokens are accepted until `exp` >= `since`.
    pub async fn revoked_tokens_count(&self, since: i64) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM revoked_tokens WHERE exp >= $1")
                .bind(since)
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Hands every revoked token accepted until `exp` >= `since` to `each`, with its `exp`.
    ///
    /// sqlx turns every row into owned values, which costs ~3.5 µs a row: 3.5 s for a million
    /// revocations. So the database aggregates each sixteenth of the key space (by the jti's
    /// first byte) into one string of hex jtis, and we parse those: the per-row work stays in
    /// the database's own loop and the start-up stays around a second.
    pub async fn revoked_tokens(
        &self,
        since: i64,
        mut each: impl FnMut(Uuid, i64),
    ) -> Result<(), StoreError> {
        // Each jti and its exp in hex (32 and 16 digits), one after the other.
        let packed_hex = match self.dialect() {
            Dialect::Sqlite => "group_concat(hex(jti) || printf('%016X', exp), '')",
            Dialect::Postgres => "string_agg(encode(jti, 'hex') || lpad(to_hex(exp), 16, '0'), '')",
        };
        let sql = format!(
            "SELECT {packed_hex} FROM revoked_tokens WHERE exp >= $1 AND jti >= $2 AND jti < $3"
        );
        for chunk in 0u8..16 {
            // [low, high) in byte order; the last high sorts after every 16-byte jti.
            let low = [chunk << 4];
            let high: &[u8] = if chunk == 15 {
                &[0xff; 17]
            } else {
                &[(chunk + 1) << 4]
            };
            let packed: Option<String> = sqlx::query_scalar(&sql)
                .bind(since)
                .bind(low.as_slice())
                .bind(high)
                .fetch_one(self.pool())
                .await?;
            for (jti, exp) in packed.as_deref().map(parse_packed).into_iter().flatten() {
                each(jti, exp);
            }
        }
        Ok(())
    }

    /// Deletes the token revocations whose `exp` is before `dead`. How many went.
    pub async fn purge_revoked_tokens(&self, dead: i64) -> Result<u64, StoreError> {
        let gone = sqlx::query("DELETE FROM revoked_tokens WHERE exp < $1")
            .bind(dead)
            .execute(self.pool())
            .await?;
        Ok(gone.rows_affected())
    }

    /// The newest id of the `revocations` feed now (0 when it is empty). PostgreSQL only.
    pub async fn revocations_cursor(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM revocations")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// The first `limit` rows of the `revocations` feed past `cursor`, in order. PostgreSQL
    /// only.
    pub async fn revocations_after(
        &self,
        cursor: i64,
        limit: i64,
    ) -> Result<Vec<FeedRow>, StoreError> {
        let rows: Vec<(i64, String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT id, kind, key, exp FROM revocations WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(cursor)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, key, exp)| FeedRow {
                id,
                kind: match kind.as_str() {
                    "token" => Kind::Token,
                    _ => Kind::Session,
                },
                key: Uuid::from_slice(&key).ok(),
                exp,
            })
            .collect())
    }

    /// Deletes the rows of the `revocations` feed whose `exp` is before `dead`. PostgreSQL
    /// only.
    pub async fn purge_revocations(&self, dead: i64) -> Result<u64, StoreError> {
        let gone = sqlx::query("DELETE FROM revocations WHERE exp < $1")
            .bind(dead)
            .execute(self.pool())
            .await?;
        Ok(gone.rows_affected())
    }
}
