//! Password hashing with argon2id (OWASP parameters), always off the async runtime.
//!
//! Hashing costs ~20 MiB and tens of milliseconds, so it runs in `spawn_blocking` under a
//! semaphore sized to the cores: a storm of logins queues here instead of stalling the runtime
//! or exhausting memory. A login for an unknown user verifies against a dummy hash, so the
//! answer takes the same time whether or not the username exists.

use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Algorithm, Argon2, Params, Version,
};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("password hashing queue closed")]
    Closed,
}

fn argon2() -> Argon2<'static> {
    // The parameters are constants known to be valid.
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .unwrap_or_else(|_| Params::default());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

fn verify_blocking(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// The hasher shared by all requests.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// A real argon2id hash of a random password: verifying against it costs what a real check costs.
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("available_permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Passwords {
    /// Builds the hasher; `concurrency` is how many hashes may run at once.
    pub fn new(concurrency: usize) -> Result<Self, PasswordError> {
        let random: [u8; 16] = rand::random();
        let dummy = hash_blocking(&format!("{random:x?}"))?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: dummy.into(),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        Ok(tokio::task::spawn_blocking(work).await?)
    }

    /// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.run(move || hash_blocking(&password)).await?
    }

    /// Checks `password` against `phc`, or against the dummy hash when there is no user,
    /// in which case the answer is always `false` but takes as long.
    pub async fn verify(
        &self,
        password: String,
        phc: Option<String>,
    ) -> Result<bool, PasswordError> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy_hash.to_string());
        let ok = self.run(move || verify_blocking(&password, &phc)).await?;
        Ok(known && ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let p = Passwords::new(2).unwrap();
        let phc = p.hash("correct horse battery".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(p
            .verify("correct horse battery".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!p
            .verify("wrong horse battery".into(), Some(phc))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn same_password_gets_a_new_salt() {
        let p = Passwords::new(2).unwrap();
        let a = p.hash("same password".into()).await.unwrap();
        let b = p.hash("same password".into()).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        let p = Passwords::new(1).unwrap();
        assert!(!p.verify("anything at all".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn corrupt_hash_does_not_verify() {
        let p = Passwords::new(1).unwrap();
        assert!(!p
            .verify("anything".into(), Some("not a hash".into()))
            .await
            .unwrap());
    }
}
