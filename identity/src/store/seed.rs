//! Bulk rows for the benchmarks (`server seed`): accounts, each signed in once, and revoked
//! tokens, written many to a statement. A sign-in through the core writes one session per
//! transaction, and a hundred thousand of them would take minutes of waiting for the disk; each
//! row here holds what a sign-in (or a sign-out) would write.

use uuid::Uuid;

use super::{Store, StoreError};

/// A seeded session: its id and its refresh-token key.
pub type SeedSession = (Uuid, [u8; 32]);

/// The times every seeded account's session holds (unix seconds): started and used `now`, ending
/// at `expires_at`, its access token expiring at `token_exp`.
#[derive(Debug, Clone, Copy)]
pub struct SeedTimes {
    pub now: i64,
    pub expires_at: i64,
    pub token_exp: i64,
}

impl Store {
    /// The id the next account would take at the earliest: one past every id so far, so that
    /// names numbered from it are taken by nobody a previous seed wrote.
    pub async fn next_user_id(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM users")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Writes one account per name (all with `password_hash`) and one session each
    /// (`sessions[i]` for `names[i]`, generation 1, confirmed, used at `times.now`, device
    /// `user_agent`), in one transaction. Their ids, in the names' order; `None` (and nothing
    /// written) when one of the names is taken.
    pub async fn seed_accounts(
        &self,
        names: &[String],
        password_hash: &str,
        sessions: &[SeedSession],
        times: SeedTimes,
        user_agent: &str,
    ) -> Result<Option<Vec<i64>>, StoreError> {
        let SeedTimes {
            now,
            expires_at,
            token_exp,
        } = times;
        let mut tx = self.pool().begin().await?;
        // Each account its own random credential stamp, as the server gives one.
        let placeholders = (0..names.len())
            .map(|i| format!("(${}, ${}, {now}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO users (username, password_hash, created_at, credential_stamp) \
             VALUES {placeholders} RETURNING id, username"
        );
        let mut insert = sqlx::query_as::<_, (i64, String)>(&sql);
        for name in names {
            insert = insert
                .bind(name)
                .bind(password_hash)
                .bind(crate::credentials::CredentialStamp::new().0);
        }
        let created = match insert.fetch_all(&mut *tx).await {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // Rows come back in no promised order: matched by name.
        let by_name: std::collections::HashMap<String, i64> =
            created.into_iter().map(|(id, name)| (name, id)).collect();
        let ids: Vec<i64> = names.iter().map(|n| by_name[n]).collect();
        // The row a sign-in writes: generation 1, confirmed, used now.
        let placeholders = (0..names.len())
            .map(|i| {
                format!(
                    "(${}, ${}, ${}, 1, 1, {now}, {now}, {now}, {expires_at}, {token_exp}, \
                     ${}, '')",
                    4 * i + 1,
                    4 * i + 2,
                    4 * i + 3,
                    4 * i + 4
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO sessions (id, user_id, refresh_key, generation, confirmed_generation, \
             rotated_at, created_at, last_used_at, expires_at, access_exp, user_agent, address) \
             VALUES {placeholders}"
        );
        let mut insert = sqlx::query(&sql);
        for ((id, key), user_id) in sessions.iter().zip(&ids) {
            insert = insert
                .bind(id.as_bytes().to_vec())
                .bind(*user_id)
                .bind(key.to_vec())
                .bind(user_agent);
        }
        insert.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(ids))
    }

    /// Writes revoked tokens, `jtis[i]` of user `user_ids[i]`, each accepted until `exp` and
    /// revoked at `revoked_at`, in one transaction.
    pub async fn seed_revocations(
        &self,
        jtis: &[[u8; 16]],
        user_ids: &[i64],
        exp: i64,
        revoked_at: i64,
    ) -> Result<(), StoreError> {
        let placeholders = (0..jtis.len())
            .map(|i| format!("(${}, ${}, {exp}, {revoked_at})", 2 * i + 1, 2 * i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO revoked_tokens (jti, user_id, exp, revoked_at) VALUES {placeholders}"
        );
        let mut insert = sqlx::query(&sql);
        for (jti, user_id) in jtis.iter().zip(user_ids) {
            insert = insert.bind(jti.to_vec()).bind(*user_id);
        }
        let mut tx = self.pool().begin().await?;
        insert.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
