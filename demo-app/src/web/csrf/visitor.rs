//! The login form's token, for visitors without a session: a random token in the form's hidden
//! field, and the same token with an expiry time in a short-lived cookie encrypted with the
//! app's key. A login post counts when the field and the cookie agree. Nothing is kept on the
//! server, so a flood of visitors to the login page writes nothing to Redis.
//!
//! Why another site cannot post the form for a visitor (login CSRF, which would sign them in
//! as the attacker): the cookie is `SameSite=Strict`, so a cross-site post arrives without it;
//! the other site cannot read this site's pages to learn a token; and it cannot make a cookie
//! the app accepts without the key (AES-GCM, with the cookie's name as associated data, so no
//! other cookie under the app's key, the session's included, passes for this one). What is
//! left is cookie injection: someone able to set cookies for this host (from a sibling
//! subdomain or a plain-HTTP page) could plant a cookie of their own with its token. When
//! cookies are `Secure`, the name carries the `__Host-` prefix, which browsers accept from
//! neither, as for the session cookie. The expiry is inside the encrypted value, so a copied
//! cookie is worthless after [`LIFETIME_SECS`] whatever a client does with `Max-Age`.

use std::{
    fmt,
    time::{SystemTime, UNIX_EPOCH},
};

use actix_web::{
    HttpRequest,
    cookie::{Cookie, CookieJar, Key, SameSite, time::Duration},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

use super::{matches, refused};
use crate::web::instance::{LOGIN_CSRF_COOKIE, SECURE_LOGIN_CSRF_COOKIE};

/// How long a login form stays good, in seconds.
const LIFETIME_SECS: u64 = 60 * 60;

/// Issues and checks the login form's tokens.
#[derive(Clone)]
pub(crate) struct VisitorTokens {
    /// The key of the session cookies, which every instance shares.
    key: Key,
    secure: bool,
}

impl fmt::Debug for VisitorTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VisitorTokens")
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

impl VisitorTokens {
    /// Tokens under the app's cookie key; `secure` as for the session cookie.
    pub(crate) fn new(key: Key, secure: bool) -> Self {
        Self { key, secure }
    }

    fn name(&self) -> &'static str {
        if self.secure {
            SECURE_LOGIN_CSRF_COOKIE
        } else {
            LOGIN_CSRF_COOKIE
        }
    }

    /// The token for a login form, and the cookie to set along with it when the visitor has
    /// none, or one past half its life. A fresher one keeps its token, so that the forms of
    /// the visitor's other tabs stay good.
    pub(crate) fn issue(&self, req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
        let now = now();
        match self.open(req) {
            Some((token, expires)) if expires > now + LIFETIME_SECS / 2 => (token, None),
            _ => {
                let mut bytes = [0u8; 32];
                rand::fill(&mut bytes);
                let token = URL_SAFE_NO_PAD.encode(bytes);
                let cookie = self.seal(&token, now + LIFETIME_SECS);
                (token, Some(cookie))
            }
        }
    }

    /// Refuses the request with 403 unless `submitted` is the token of the visitor's cookie,
    /// and that has not expired.
    pub(crate) fn check(&self, req: &HttpRequest, submitted: &str) -> actix_web::Result<()> {
        match self.open(req) {
            Some((token, expires)) if expires > now() && matches(&token, submitted) => Ok(()),
            _ => Err(refused()),
        }
    }

    /// A cookie that deletes the visitor's (at login, where the session's token takes over).
    pub(crate) fn removal(&self) -> Cookie<'static> {
        let mut cookie = self.cookie(String::new());
        cookie.make_removal();
        cookie
    }

    fn cookie(&self, value: String) -> Cookie<'static> {
        let max_age = i64::try_from(LIFETIME_SECS).unwrap_or(i64::MAX);
        Cookie::build(self.name(), value)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure)
            .max_age(Duration::seconds(max_age))
            .finish()
    }

    /// The cookie carrying `token` until `expires` (seconds since the epoch), encrypted.
    fn seal(&self, token: &str, expires: u64) -> Cookie<'static> {
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key)
            .add(self.cookie(format!("{token}.{expires}")));
        jar.get(self.name())
            .cloned()
            .expect("the jar holds the cookie just added")
    }

    /// The token and expiry of the request's cookie, if it has one this app made.
    fn open(&self, req: &HttpRequest) -> Option<(String, u64)> {
        let cookie = CookieJar::new()
            .private(&self.key)
            .decrypt(req.cookie(self.name())?)?;
        let (token, expires) = cookie.value().split_once('.')?;
        Some((token.to_owned(), expires.parse().ok()?))
    }
}

/// Seconds since the epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn tokens() -> VisitorTokens {
        VisitorTokens::new(Key::generate(), false)
    }

    fn with(cookie: &Cookie<'static>) -> HttpRequest {
        TestRequest::default()
            .cookie(cookie.clone())
            .to_http_request()
    }

    fn issued(tokens: &VisitorTokens) -> (String, Cookie<'static>) {
        let (token, cookie) = tokens.issue(&TestRequest::default().to_http_request());
        (token, cookie.expect("a visitor without a cookie gets one"))
    }

    #[test]
    fn a_token_passes_with_the_cookie_it_came_with() {
        let tokens = tokens();
        let (token, cookie) = issued(&tokens);
        assert!(tokens.check(&with(&cookie), &token).is_ok());
        assert_ne!(cookie.value(), token, "the cookie is encrypted");
        assert!(!cookie.value().contains(&token));
    }

    #[test]
    fn a_fresh_cookie_keeps_its_token_and_is_not_set_again() {
        let tokens = tokens();
        let (token, cookie) = issued(&tokens);
        let (again, new_cookie) = tokens.issue(&with(&cookie));
        assert_eq!(again, token);
        assert!(new_cookie.is_none());
    }

    #[test]
    fn another_token_no_token_or_no_cookie_is_refused() {
        let tokens = tokens();
        let (token, cookie) = issued(&tokens);
        let (other_token, _) = issued(&tokens);
        assert!(tokens.check(&with(&cookie), &other_token).is_err());
        assert!(tokens.check(&with(&cookie), "").is_err());
        let no_cookie = TestRequest::default().to_http_request();
        assert!(tokens.check(&no_cookie, &token).is_err());
    }

    #[test]
    fn forged_and_foreign_cookies_are_refused() {
        let tokens = tokens();
        let (token, cookie) = issued(&tokens);
        let mut tampered = cookie.clone();
        let mut value = cookie.value().to_owned();
        let last = if value.ends_with('A') { "B" } else { "A" };
        value.replace_range(value.len() - 1.., last);
        tampered.set_value(value);
        assert!(tokens.check(&with(&tampered), &token).is_err());

        let plain = Cookie::new(LOGIN_CSRF_COOKIE, format!("{token}.{}", now() + 60));
        assert!(tokens.check(&with(&plain), &token).is_err());

        let other_app = VisitorTokens::new(Key::generate(), false);
        let (their_token, their_cookie) = issued(&other_app);
        assert!(tokens.check(&with(&their_cookie), &their_token).is_err());

        // A value sealed under another cookie's name (the session's, say) does not pass.
        let mut jar = CookieJar::new();
        jar.private_mut(&tokens.key)
            .add(Cookie::new("session", format!("{token}.{}", now() + 60)));
        let mut renamed = jar.get("session").cloned().expect("added");
        renamed.set_name(LOGIN_CSRF_COOKIE);
        assert!(tokens.check(&with(&renamed), &token).is_err());
    }

    #[test]
    fn an_expired_cookie_is_refused_and_replaced() {
        let tokens = tokens();
        let expired = tokens.seal("token", now() - 1);
        assert!(tokens.check(&with(&expired), "token").is_err());
        let (token, cookie) = tokens.issue(&with(&expired));
        assert_ne!(token, "token");
        assert!(cookie.is_some());

        let ageing = tokens.seal("token", now() + LIFETIME_SECS / 2 - 1);
        assert!(tokens.check(&with(&ageing), "token").is_ok());
        let (token, cookie) = tokens.issue(&with(&ageing));
        assert_ne!(
            token, "token",
            "past half its life, a form gets a fresh token"
        );
        assert!(cookie.is_some());
    }

    #[test]
    fn secure_cookies_are_host_prefixed_strict_and_http_only() {
        let tokens = VisitorTokens::new(Key::generate(), true);
        let (token, cookie) = issued(&tokens);
        assert_eq!(cookie.name(), "__Host-login-csrf");
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(cookie.domain(), None);
        assert_eq!(cookie.same_site(), Some(SameSite::Strict));
        assert_eq!(cookie.http_only(), Some(true));
        assert!(tokens.check(&with(&cookie), &token).is_ok());
        assert_eq!(tokens.removal().name(), "__Host-login-csrf");
    }
}
