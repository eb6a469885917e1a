//! What the demo keeps in a session, and the one place that reads and writes it.

use actix_session::Session;
use actix_web::{HttpRequest, HttpResponseBuilder, http::header};

use super::{
    csrf,
    respond::{answered, not_signed_in, see_other},
};

/// The session entry that holds the signed-in user: the store's `user_entry`.
pub(crate) const USER: &str = "user";
const DISPLAY_NAME: &str = "display_name";

/// The entries a login records about where it happened: the browser's `User-Agent` and the
/// port of the instance that served the login. The store exposes them (`exposed_entries`) to
/// the sessions page, which lists a user's devices.
pub(crate) const USER_AGENT: &str = "user_agent";
pub(crate) const INSTANCE: &str = "instance";

/// The most of a `User-Agent` a session keeps, in characters: enough to tell devices apart.
const MAX_USER_AGENT: usize = 256;

/// The longest display name accepted, in characters.
pub(crate) const MAX_DISPLAY_NAME: usize = 64;

/// The signed-in user of a session, if any.
pub(crate) fn current(session: &Session) -> actix_web::Result<Option<String>> {
    Ok(session.get(USER)?)
}

/// The signed-in user of a session; an anonymous one is answered as the API answers it
/// (`401`, see [`not_signed_in`]).
pub(crate) fn signed_in(session: &Session) -> actix_web::Result<String> {
    current(session)?.ok_or_else(|| answered(not_signed_in()))
}

/// The signed-in user of a session; an anonymous one is sent to the login page.
pub(crate) fn signed_in_or_login(session: &Session) -> actix_web::Result<String> {
    current(session)?.ok_or_else(|| answered(see_other("/login")))
}

/// Signs `username` in: a fresh session id (no fixation) carrying only the user, a new CSRF
/// token and where the login happened (`req`'s user agent, the port of `instance`), nothing
/// of whoever used the session before.
pub(crate) fn sign_in(
    session: &Session,
    username: &str,
    req: &HttpRequest,
    instance: u16,
) -> actix_web::Result<()> {
    session.clear();
    session.renew();
    session.insert(USER, username)?;
    if let Some(user_agent) = user_agent(req) {
        session.insert(USER_AGENT, user_agent)?;
    }
    session.insert(INSTANCE, instance)?;
    csrf::rotate(session)?;
    Ok(())
}

/// The request's `User-Agent`, cut to [`MAX_USER_AGENT`] characters.
fn user_agent(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::USER_AGENT)?.to_str().ok()?;
    Some(value.chars().take(MAX_USER_AGENT).collect())
}

/// The header a logout response carries, so the browser drops every cookie of the site too.
pub(crate) const CLEAR_COOKIES: (&str, &str) = ("Clear-Site-Data", "\"cookies\"");

/// Ends the session everywhere: its state is deleted from Redis and the cookie cleared; the
/// `response` to come carries [`CLEAR_COOKIES`].
pub(crate) fn sign_out(
    session: &Session,
    mut response: HttpResponseBuilder,
) -> HttpResponseBuilder {
    session.purge();
    response.insert_header(CLEAR_COOKIES);
    response
}

/// The display name the user chose, if any.
pub(crate) fn display_name(session: &Session) -> actix_web::Result<Option<String>> {
    Ok(session.get(DISPLAY_NAME)?)
}

/// Keeps a new display name, or returns why it cannot be used.
pub(crate) fn set_display_name(
    session: &Session,
    name: &str,
) -> actix_web::Result<Result<(), String>> {
    let name = name.trim();
    if name.chars().count() > MAX_DISPLAY_NAME {
        return Ok(Err(format!(
            "A display name has at most {MAX_DISPLAY_NAME} characters."
        )));
    }
    session.insert(DISPLAY_NAME, name)?;
    Ok(Ok(()))
}
