//! CSRF tokens for the HTML forms, checked on every form post. Two kinds:
//!
//! - a signed-in user's forms (profile, logout) carry the token kept in their session
//!   ([`session`], the synchronizer-token pattern);
//! - the login form, shown to visitors who have no session, carries a token that needs no state
//!   on the server ([`visitor`], a double-submit cookie encrypted with the app's key), so that
//!   looking at the login page costs Redis nothing: a visitor gets a session by logging in,
//!   never before.
//!
//! The JSON API needs none: the session cookie is `SameSite=Lax`, so a cross-site `POST` or
//! `PUT` arrives without it, and the login and profile endpoints only accept
//! `application/json` bodies, which a cross-site form cannot send. (Sites on other ports of the
//! same host count as same-site; here those are the demo's own instances.)

mod session;
mod visitor;

use actix_web::error::ErrorForbidden;
use subtle::ConstantTimeEq as _;

pub(crate) use self::{
    session::{check, rotate, token},
    visitor::VisitorTokens,
};

/// Whether a submitted token is the expected one, compared in constant time; an empty
/// expectation (no token was ever issued) matches nothing.
fn matches(expected: &str, submitted: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
}

/// The refusal of a form post without the right token.
fn refused() -> actix_web::Error {
    ErrorForbidden(
        "The form has expired or did not come from this site: reload the page and try again.",
    )
}
