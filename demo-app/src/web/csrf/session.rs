//! The tokens of a signed-in user's forms: a random token kept in the session, rendered into
//! every form and checked on every form post.

use actix_session::Session;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

use super::{matches, refused};

const CSRF: &str = "csrf";

/// The session's token, made now if it has none. Only for sessions that exist already (a
/// signed-in user's): it writes one otherwise.
pub(crate) fn token(session: &Session) -> actix_web::Result<String> {
    match session.get::<String>(CSRF)? {
        Some(token) => Ok(token),
        None => rotate(session),
    }
}

/// Replaces the session's token (at login, with the session id).
pub(crate) fn rotate(session: &Session) -> actix_web::Result<String> {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    session.insert(CSRF, &token)?;
    Ok(token)
}

/// Refuses the request with 403 unless `submitted` is the session's token.
pub(crate) fn check(session: &Session, submitted: &str) -> actix_web::Result<()> {
    let expected = session.get::<String>(CSRF)?.unwrap_or_default();
    if matches(&expected, submitted) {
        Ok(())
    } else {
        Err(refused())
    }
}
