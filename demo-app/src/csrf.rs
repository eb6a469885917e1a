//! CSRF tokens for the HTML forms (the synchronizer-token pattern): a random token kept in the
//! session, rendered into every form and checked on every form post.
//!
//! The JSON API needs none: the session cookie is `SameSite=Lax`, so a cross-site `POST` or
//! `PUT` arrives without it, and the login and profile endpoints only accept
//! `application/json` bodies, which a cross-site form cannot send. (Sites on other ports of the
//! same host count as same-site; here those are the demo's own instances.)

use actix_session::Session;
use actix_web::error::ErrorForbidden;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use subtle::ConstantTimeEq as _;

const CSRF: &str = "csrf";

/// The session's token, made now if it has none.
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
    let valid = !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()));
    if valid {
        Ok(())
    } else {
        Err(ErrorForbidden(
            "The form has expired or did not come from this site: reload the page and try again.",
        ))
    }
}
