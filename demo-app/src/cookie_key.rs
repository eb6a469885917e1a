//! The key that encrypts the session cookies, which every instance of a demo shares: the
//! launcher makes or checks one and hands it to the instances it starts.

use actix_web::cookie::Key;
use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::STANDARD};

/// Parses a cookie key given as base64.
///
/// # Errors
/// When it is not base64 or shorter than 64 bytes.
pub fn parse_cookie_key(encoded: &str) -> anyhow::Result<Key> {
    let bytes = STANDARD
        .decode(encoded.trim())
        .context("the cookie key is not base64")?;
    Key::try_from(bytes.as_slice()).context("the cookie key must be at least 64 bytes")
}

/// A new random cookie key, as base64.
pub fn generate_cookie_key() -> String {
    STANDARD.encode(Key::generate().master())
}
