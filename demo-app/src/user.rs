//! What the demo keeps in a session, and the one place that reads and writes it.

use actix_session::Session;

use crate::csrf;

/// The session entry that holds the signed-in user: the store's `user_entry`.
pub(crate) const USER: &str = "user";
const DISPLAY_NAME: &str = "display_name";

/// The longest display name accepted, in characters.
pub(crate) const MAX_DISPLAY_NAME: usize = 64;

/// The signed-in user of a session, if any.
pub(crate) fn current(session: &Session) -> actix_web::Result<Option<String>> {
    Ok(session.get(USER)?)
}

/// Signs `username` in: a fresh session id (no fixation) carrying only the user and a new
/// CSRF token, nothing of whoever used the session before.
pub(crate) fn sign_in(session: &Session, username: &str) -> actix_web::Result<()> {
    session.clear();
    session.renew();
    session.insert(USER, username)?;
    csrf::rotate(session)?;
    Ok(())
}

/// The header a logout response carries, so the browser drops every cookie of the site too.
pub(crate) const CLEAR_COOKIES: (&str, &str) = ("Clear-Site-Data", "\"cookies\"");

/// Ends the session everywhere: its state is deleted from Redis and the cookie cleared. The
/// response should carry [`CLEAR_COOKIES`].
pub(crate) fn sign_out(session: &Session) {
    session.purge();
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
