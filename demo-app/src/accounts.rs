//! The demo's user accounts: usernames with argon2 password hashes.

use std::{collections::HashMap, path::Path, sync::LazyLock};

use argon2::{
    Argon2,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
};

/// The built-in accounts, `alice` / `alice-password` and `bob` / `bob-password`, as stored
/// hashes (made with `demo-app hash-password`).
const DEMO_ACCOUNTS: &str = include_str!("../accounts.txt");

/// A hash to verify against when the username is unknown, so that a wrong username takes as
/// long as a wrong password and does not reveal which accounts exist.
static DECOY_HASH: LazyLock<String> = LazyLock::new(|| {
    let mut password = [0u8; 32];
    rand::fill(&mut password);
    hash_password(&base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        password,
    ))
    .expect("hashing with default parameters succeeds")
});

/// Why an accounts file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
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
#[derive(Debug, Clone)]
pub struct Accounts {
    hashes: HashMap<String, String>,
}

impl Accounts {
    /// The built-in demo accounts.
    pub fn demo() -> Self {
        // Made now, so that the first unknown username does not pay for it.
        LazyLock::force(&DECOY_HASH);
        Self::parse(DEMO_ACCOUNTS).expect("the built-in accounts file is well formed")
    }

    /// The built-in accounts plus those of `path` (which win on a clash).
    ///
    /// # Errors
    /// When the file cannot be read or a line is malformed.
    pub fn demo_and_file(path: &Path) -> Result<Self, AccountsError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccountsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut accounts = Self::demo();
        accounts.hashes.extend(Self::parse(&text)?.hashes);
        Ok(accounts)
    }

    /// Parses lines of `username:hash`; blank lines and `#` comments are skipped.
    ///
    /// # Errors
    /// [`AccountsError::Malformed`] for a line of another shape.
    pub fn parse(text: &str) -> Result<Self, AccountsError> {
        let mut hashes = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = AccountsError::Malformed { line: index + 1 };
            let (user, hash) = line.split_once(':').ok_or(malformed)?;
            if user.is_empty() || PasswordHash::new(hash).is_err() {
                return Err(AccountsError::Malformed { line: index + 1 });
            }
            hashes.insert(user.to_owned(), hash.to_owned());
        }
        Ok(Self { hashes })
    }

    /// [`verify`](Self::verify) on actix's blocking-task pool: a hash takes tens of
    /// milliseconds of CPU, which must not stall the other requests of a worker.
    ///
    /// # Errors
    /// When the blocking pool is gone (the server is shutting down).
    pub async fn verify_off_thread(
        &self,
        username: &str,
        password: &str,
    ) -> actix_web::Result<bool> {
        let (accounts, username, password) =
            (self.clone(), username.to_owned(), password.to_owned());
        Ok(actix_web::web::block(move || accounts.verify(&username, &password)).await?)
    }

    /// Whether `password` is `username`'s. Takes the same time whether or not the user exists.
    pub fn verify(&self, username: &str, password: &str) -> bool {
        let (hash, known) = match self.hashes.get(username) {
            Some(hash) => (hash.as_str(), true),
            None => (DECOY_HASH.as_str(), false),
        };
        let Ok(hash) = PasswordHash::new(hash) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok();
        known && matches
    }
}

/// An argon2id hash of `password` with a fresh salt, as a PHC string.
///
/// # Errors
/// When hashing fails (it does not with the default parameters).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    Ok(Argon2::default()
        .hash_password(password.as_bytes())?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_accounts_accept_their_passwords_only() {
        let accounts = Accounts::demo();
        assert!(accounts.verify("alice", "alice-password"));
        assert!(accounts.verify("bob", "bob-password"));
        assert!(!accounts.verify("alice", "bob-password"));
        assert!(!accounts.verify("mallory", "alice-password"));
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
        let hash = hash_password("s3cret").expect("hash");
        let accounts = Accounts::parse(&format!("carol:{hash}")).expect("parse");
        assert!(accounts.verify("carol", "s3cret"));
    }
}
