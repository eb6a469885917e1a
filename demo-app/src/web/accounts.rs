//! The demo's user accounts: usernames with argon2 password hashes, checked on the
//! [`HashingPool`].

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, LazyLock},
};

use crate::web::hashing::{Busy, Hasher, HashingPool, StoredHash};

/// The built-in accounts, `alice` / `alice-password` and `bob` / `bob-password`, as stored
/// hashes (made with `demo-app hash-password`).
const DEMO_ACCOUNTS: &str = include_str!("../../accounts.txt");

/// A hash to verify against when the username is unknown, so that a wrong username takes as
/// long as a wrong password and does not reveal which accounts exist.
static DECOY_HASH: LazyLock<StoredHash> = LazyLock::new(StoredHash::decoy);

/// Why an accounts file could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AccountsError {
    /// The file could not be read.
    #[error("could not read the accounts file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `username:argon2-hash`.
    #[error(
        "line {line} is not `username:$argon2id$...` (make hashes with `demo-app hash-password`)"
    )]
    Malformed {
        /// 1-based line number.
        line: usize,
    },
}

/// Usernames and their password hashes.
///
/// Cloning shares them.
#[derive(Debug, Clone)]
pub(crate) struct Accounts {
    hashes: Arc<HashMap<String, StoredHash>>,
}

impl Accounts {
    /// The built-in demo accounts.
    pub(crate) fn demo() -> Self {
        Self::parse(DEMO_ACCOUNTS).expect("the built-in accounts file is well formed")
    }

    /// The built-in accounts plus those of `path` (which win on a clash).
    ///
    /// # Errors
    /// When the file cannot be read or a line is malformed.
    pub(crate) fn demo_and_file(path: &Path) -> Result<Self, AccountsError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccountsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut hashes = HashMap::clone(&Self::demo().hashes);
        hashes.extend(HashMap::clone(&Self::parse(&text)?.hashes));
        Ok(Self {
            hashes: Arc::new(hashes),
        })
    }

    /// Parses lines of `username:hash`; blank lines and `#` comments are skipped.
    ///
    /// # Errors
    /// [`AccountsError::Malformed`] for a line of another shape.
    pub(crate) fn parse(text: &str) -> Result<Self, AccountsError> {
        let mut hashes = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = AccountsError::Malformed { line: index + 1 };
            let (user, hash) = line.split_once(':').ok_or(malformed)?;
            match hash.parse() {
                Ok(hash) if !user.is_empty() => hashes.insert(user.to_owned(), hash),
                _ => return Err(AccountsError::Malformed { line: index + 1 }),
            };
        }
        Ok(Self {
            hashes: Arc::new(hashes),
        })
    }

    /// Whether `password` is `username`'s, checked on one of `pool`'s threads: a hash takes
    /// tens of milliseconds of CPU and 19 MiB of memory, which must neither stall the other
    /// requests of a worker nor be spent once per waiting login.
    ///
    /// # Errors
    /// [`Busy`] at once when the pool's queue is full.
    pub(crate) async fn verify(
        &self,
        pool: &HashingPool,
        username: &str,
        password: &str,
    ) -> Result<bool, Busy> {
        let (accounts, username, password) =
            (self.clone(), username.to_owned(), password.to_owned());
        pool.run(move |hasher| accounts.verify_with(hasher, &username, &password))
            .await
    }

    /// Whether `password` is `username`'s, hashed with `hasher`'s memory. Takes the same time
    /// whether or not the user exists.
    pub(crate) fn verify_with(&self, hasher: &mut Hasher, username: &str, password: &str) -> bool {
        let (hash, known) = match self.hashes.get(username) {
            Some(hash) => (hash, true),
            None => (&*DECOY_HASH, false),
        };
        let matches = hasher.verify(hash, password.as_bytes());
        metrics::counter!(crate::web::metrics::PASSWORD_CHECKS).increment(1);
        known && matches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_accounts_accept_their_passwords_only() {
        let accounts = Accounts::demo();
        let mut hasher = Hasher::new();
        assert!(accounts.verify_with(&mut hasher, "alice", "alice-password"));
        assert!(accounts.verify_with(&mut hasher, "bob", "bob-password"));
        assert!(!accounts.verify_with(&mut hasher, "alice", "bob-password"));
        assert!(!accounts.verify_with(&mut hasher, "mallory", "alice-password"));
    }

    #[test]
    fn malformed_lines_are_refused() {
        assert!(matches!(
            Accounts::parse("# fine\n\ncarol\n"),
            Err(AccountsError::Malformed { line: 3 })
        ));
        assert!(Accounts::parse("carol:plaintext").is_err());
    }

    #[test]
    fn hashes_verify() {
        let hash = Hasher::new().hash(b"s3cret").expect("hash");
        let accounts = Accounts::parse(&format!("carol:{hash}")).expect("parse");
        assert!(accounts.verify_with(&mut Hasher::new(), "carol", "s3cret"));
    }

    #[test]
    fn the_pool_checks_passwords() {
        let pool = HashingPool::start(std::num::NonZeroUsize::MIN, Some(4)).expect("a thread");
        let accounts = Accounts::demo();
        actix_web::rt::System::new().block_on(async {
            let right = accounts.verify(&pool, "alice", "alice-password").await;
            assert!(right.is_ok_and(|ok| ok));
            let unknown = accounts.verify(&pool, "mallory", "alice-password").await;
            assert!(unknown.is_ok_and(|ok| !ok));
        });
    }
}
