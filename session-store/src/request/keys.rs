//! [`CookieKeys`]: the key ring of the session cookie, so that rotating the cookie key logs
//! nobody out. The current key seals every cookie the app sets; a cookie sealed by a previous
//! key is still accepted, and re-issued under the current one on the same response.
//!
//! actix-session opens a cookie with one key only. So before it sees a request,
//! [`TrackChanges`](crate::TrackChanges) opens a cookie that the current key does not, with
//! each previous key in turn, and rewrites it in the request's `Cookie` header sealed by the
//! current key; actix-session then finds the same session. It sets a cookie only for a session
//! that changed: the request is marked, and inside actix-session the session is marked as
//! changed without changing it (see [`ReissueService`]); the store's write then finds nothing to
//! write, and actix-session sets the cookie, under the current key.

use std::sync::Arc;

use actix_session::{SessionExt as _, config::CookieContentSecurity};
use actix_web::{
    HttpMessage as _,
    cookie::{Cookie, CookieJar, Key},
    dev::{Service, ServiceRequest, forward_ready},
    http::header::{COOKIE, HeaderValue},
};

/// The keys of the session cookie: the current one, which seals every cookie set, and the
/// previous ones, still accepted on cookies that come in. With the cookie's name and content
/// security, which [`TrackChanges::with_keys`](crate::TrackChanges::with_keys) gives
/// actix-session.
///
/// ```
/// use actix_web::cookie::Key;
/// use session_store::CookieKeys;
///
/// # let (new_key, old_key) = (Key::generate(), Key::generate());
/// let keys = CookieKeys::new(new_key)
///     .previous([old_key])
///     .cookie_name("session");
/// ```
#[derive(Clone)]
pub struct CookieKeys {
    current: Key,
    previous: Vec<Key>,
    name: String,
    security: CookieContentSecurity,
}

impl CookieKeys {
    /// A ring of `current` alone, for actix-session's default cookie: named `id`, encrypted
    /// (`CookieContentSecurity::Private`).
    pub fn new(current: Key) -> Self {
        Self {
            current,
            previous: Vec::new(),
            name: "id".to_owned(),
            security: CookieContentSecurity::Private,
        }
    }

    /// Keys still accepted on cookies that come in, each such cookie re-issued under the
    /// current key. Drop a key from here once every cookie it sealed has been seen again or
    /// has expired: a cookie under no key of the ring is no session.
    pub fn previous(mut self, keys: impl IntoIterator<Item = Key>) -> Self {
        self.previous = keys.into_iter().collect();
        self
    }

    /// The session cookie's name (default `id`, actix-session's).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Whether the cookie is encrypted (`Private`, the default) or signed.
    pub fn content_security(mut self, security: CookieContentSecurity) -> Self {
        self.security = security;
        self
    }

    pub(crate) fn current(&self) -> &Key {
        &self.current
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn security(&self) -> CookieContentSecurity {
        self.security
    }

    /// Whether any cookie could need re-sealing.
    pub(crate) fn rotating(&self) -> bool {
        !self.previous.is_empty()
    }

    /// Rewrites the session cookie of `req`, when a previous key sealed it, sealed by the
    /// current key, and marks the request for the cookie's re-issue. A cookie that the current
    /// key opens, or that no key opens, is left as it came.
    pub(crate) fn reseal(&self, req: &mut ServiceRequest) {
        let Some(pieces) = cookie_pieces(req) else {
            return;
        };
        let mut resealed = false;
        let pieces: Vec<String> = pieces
            .into_iter()
            .map(|piece| match self.resealed(&piece) {
                Some(cookie) => {
                    resealed = true;
                    cookie
                }
                None => piece,
            })
            .collect();
        if !resealed {
            return;
        }
        let Ok(header) = HeaderValue::from_str(&pieces.join("; ")) else {
            return;
        };
        req.headers_mut().insert(COOKIE, header);
        req.extensions_mut().insert(Reissue(()));
    }

    /// `piece` (`name=value` from a `Cookie` header) sealed by the current key, when it is the
    /// session cookie and a previous key, not the current one, opens it.
    fn resealed(&self, piece: &str) -> Option<String> {
        let cookie = Cookie::parse_encoded(piece.to_owned()).ok()?;
        if cookie.name() != self.name || self.open(&cookie, &self.current).is_some() {
            return None;
        }
        let value = self
            .previous
            .iter()
            .find_map(|key| self.open(&cookie, key))?;
        Some(self.seal(value.value().to_owned()))
    }

    fn open(&self, cookie: &Cookie<'static>, key: &Key) -> Option<Cookie<'static>> {
        let mut jar = CookieJar::new();
        jar.add_original(cookie.clone());
        match self.security {
            CookieContentSecurity::Private => jar.private(key).get(&self.name),
            CookieContentSecurity::Signed => jar.signed(key).get(&self.name),
        }
    }

    /// `name=value`, sealed by the current key and encoded as a `Cookie` header carries it.
    fn seal(&self, value: String) -> String {
        let mut jar = CookieJar::new();
        let cookie = Cookie::new(self.name.clone(), value);
        match self.security {
            CookieContentSecurity::Private => jar.private_mut(&self.current).add(cookie),
            CookieContentSecurity::Signed => jar.signed_mut(&self.current).add(cookie),
        }
        let sealed = jar.get(&self.name).expect("just added");
        Cookie::new(sealed.name().to_owned(), sealed.value().to_owned())
            .encoded()
            .to_string()
    }
}

/// The `name=value` pieces of a request's `Cookie` headers, as actix-web splits them; `None`
/// when there are none or one is not text.
fn cookie_pieces(req: &ServiceRequest) -> Option<Vec<String>> {
    let mut pieces = Vec::new();
    for header in req.headers().get_all(COOKIE) {
        let text = header.to_str().ok()?;
        pieces.extend(
            text.split(';')
                .map(str::trim)
                .filter(|piece| !piece.is_empty())
                .map(str::to_owned),
        );
    }
    (!pieces.is_empty()).then_some(pieces)
}

/// The mark of a request whose session cookie came sealed by a previous key.
#[derive(Clone, Copy)]
struct Reissue(());

/// Runs inside actix-session's middleware, around the application: marks the session of a
/// request whose cookie a previous key sealed as changed, without changing it, so that
/// actix-session sets its cookie (under the current key) on the response. The store finds no
/// change to write (behind `TrackChanges` it writes only what changed): no Redis write.
#[doc(hidden)]
pub struct ReissueService<S> {
    pub(crate) service: S,
}

impl<S: Service<ServiceRequest>> Service<ServiceRequest> for ReissueService<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if req.extensions().contains::<Reissue>() {
            mark_changed(&req);
        }
        self.service.call(req)
    }
}

/// Marks the request's session as changed, leaving its state as it is: one entry inserted
/// again with its own JSON text, or, for an empty state, a `clear`.
fn mark_changed(req: &ServiceRequest) {
    let session = req.get_session();
    let first = session
        .entries()
        .iter()
        .next()
        .map(|(name, value)| (name.clone(), value.clone()));
    match first {
        Some((name, value)) => {
            if let Ok(raw) = serde_json::value::RawValue::from_string(value) {
                // Serializing raw JSON cannot fail.
                let _ = session.insert(name, raw);
            }
        }
        None => session.clear(),
    }
}

/// Shared by the clones of one middleware.
pub(crate) type Ring = Option<Arc<CookieKeys>>;
