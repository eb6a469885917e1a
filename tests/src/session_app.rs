//! A small actix-web app that exposes session operations as routes, for driving the store
//! through actix-session's `SessionMiddleware` as a real application would.

use std::sync::Arc;

use actix_session::{
    Session, SessionMiddleware,
    config::{CookieContentSecurity, PersistentSession, TtlExtensionPolicy},
};
use actix_web::{
    HttpResponse,
    body::MessageBody,
    cookie::{Cookie, Key},
    dev::{Service, ServiceResponse},
    middleware::Condition,
    web,
};
use session_store::{CurrentSession, RedisSessionStore, TrackChanges};
use tokio::sync::{Semaphore, watch};

/// A test service as `actix_web::test::init_service` makes it: what every helper here drives.
pub trait TestApp:
    Service<actix_http::Request, Response = ServiceResponse<Self::Body>, Error = actix_web::Error>
{
    /// The body type of its responses.
    type Body: MessageBody + 'static;
}

impl<S, B> TestApp for S
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    type Body = B;
}

/// The name of actix-session's cookie.
pub const COOKIE: &str = "id";

/// How the middleware under test protects its cookie and slides expiry.
#[derive(Debug, Clone)]
pub struct MiddlewareMode {
    /// Signed or encrypted cookie.
    pub security: CookieContentSecurity,
    /// When actix-session asks the store to slide the expiry.
    pub policy: TtlExtensionPolicy,
}

impl MiddlewareMode {
    /// Both cookie modes, with actix-session's default TTL policy.
    pub const COOKIE_MODES: [Self; 2] = [
        Self {
            security: CookieContentSecurity::Private,
            policy: TtlExtensionPolicy::OnStateChanges,
        },
        Self {
            security: CookieContentSecurity::Signed,
            policy: TtlExtensionPolicy::OnStateChanges,
        },
    ];
}

/// The session middleware as an application would set it up.
pub fn middleware(
    store: RedisSessionStore,
    key: &Key,
    mode: MiddlewareMode,
) -> SessionMiddleware<RedisSessionStore> {
    SessionMiddleware::builder(store, key.clone())
        .cookie_content_security(mode.security)
        .session_lifecycle(PersistentSession::default().session_ttl_extension_policy(mode.policy))
        .build()
}

/// Routes over the session: `GET /get/{name}`, `POST /set/{name}/{value}` (also as `GET`, as
/// pages that keep something in the session when shown do),
/// `POST /gated-set/{name}/{value}` and `POST /gated-renew` (each waits at the app's [`Gate`]
/// first, its session loaded), `POST /remove/{name}`,
/// `POST /purge`, `POST /renew`, `POST /login/{user}` (a login as applications write it: the
/// state cleared, the id renewed, `user` set); and over the signed-in user's sessions (a store
/// with `user_entry("user")`): `GET /sessions` (JSON), `POST /revoke/{reference}`,
/// `POST /revoke-others`, `GET /where` (the session's node).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/get/{name}", web::get().to(get))
        .route("/set/{name}/{value}", web::post().to(set))
        .route("/set/{name}/{value}", web::get().to(set))
        .route("/gated-set/{name}/{value}", web::post().to(gated_set))
        .route("/remove/{name}", web::post().to(remove))
        .route("/purge", web::post().to(purge))
        .route("/renew", web::post().to(renew))
        .route("/gated-renew", web::post().to(gated_renew))
        .route("/login/{user}", web::post().to(login))
        .route("/gated-login/{user}", web::post().to(gated_login))
        .route("/sessions", web::get().to(sessions))
        .route("/revoke/{reference}", web::post().to(revoke))
        .route("/revoke-others", web::post().to(revoke_others))
        .route("/where", web::get().to(location));
}

/// Where the session lives: the node's address, or `none`.
async fn location(
    current: CurrentSession,
    store: web::Data<RedisSessionStore>,
) -> actix_web::Result<HttpResponse> {
    let location = store.location(&current).await?;
    let node = location.map_or_else(|| "none".to_owned(), |location| location.node);
    Ok(HttpResponse::Ok().body(node))
}

/// The signed-in user's sessions, as JSON: `[{"reference", "current"}]`.
async fn sessions(
    session: Session,
    current: CurrentSession,
    store: web::Data<RedisSessionStore>,
) -> actix_web::Result<HttpResponse> {
    let user: String = session.get("user")?.unwrap_or_default();
    let listed = store.sessions_of(&user, &current).await?;
    let listed: Vec<_> = listed
        .iter()
        .map(|listed| serde_json::json!({"reference": listed.reference, "current": listed.current}))
        .collect();
    Ok(HttpResponse::Ok().json(listed))
}

async fn revoke(
    session: Session,
    reference: web::Path<String>,
    store: web::Data<RedisSessionStore>,
) -> actix_web::Result<HttpResponse> {
    let user: String = session.get("user")?.unwrap_or_default();
    let revoked = store.revoke(&user, &reference).await?;
    Ok(HttpResponse::Ok().body(revoked.to_string()))
}

async fn revoke_others(
    session: Session,
    current: CurrentSession,
    store: web::Data<RedisSessionStore>,
) -> actix_web::Result<HttpResponse> {
    let user: String = session.get("user")?.unwrap_or_default();
    let revoked = store.revoke_all(&user, Some(&current)).await?;
    Ok(HttpResponse::Ok().body(revoked.to_string()))
}

async fn get(session: Session, name: web::Path<String>) -> actix_web::Result<HttpResponse> {
    let value = session.get::<String>(&name)?;
    Ok(HttpResponse::Ok().body(value.unwrap_or_else(|| "none".to_owned())))
}

async fn set(
    session: Session,
    path: web::Path<(String, String)>,
) -> actix_web::Result<HttpResponse> {
    let (name, value) = path.into_inner();
    session.insert(name, value)?;
    Ok(HttpResponse::Ok().finish())
}

async fn gated_set(
    session: Session,
    path: web::Path<(String, String)>,
    gate: web::Data<Gate>,
) -> actix_web::Result<HttpResponse> {
    gate.pass().await;
    set(session, path).await
}

/// Holds `/gated-set`, `/gated-renew` and `/gated-login` requests, their session already
/// loaded, until the test opens it: so a test can make something happen between a request's
/// load and its write, without sleeps.
#[derive(Clone)]
pub struct Gate {
    entered: Arc<Semaphore>,
    open: Arc<watch::Sender<bool>>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            entered: Arc::new(Semaphore::new(0)),
            open: Arc::new(watch::channel(false).0),
        }
    }
}

impl Gate {
    /// Returns once `count` requests wait at the gate.
    pub async fn wait_for(&self, count: u32) {
        self.entered
            .acquire_many(count)
            .await
            .expect("the semaphore is never closed")
            .forget();
    }

    /// Lets every waiting request, and every later one, through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Once `count` requests wait at the gate, runs `meanwhile`, then opens the gate and
    /// returns what `meanwhile` gave: something that lands between their load and their write.
    pub async fn once_waiting<T>(&self, count: u32, meanwhile: impl Future<Output = T>) -> T {
        self.wait_for(count).await;
        let output = meanwhile.await;
        self.open();
        output
    }

    async fn pass(&self) {
        let mut open = self.open.subscribe();
        self.entered.add_permits(1);
        let _ = open.wait_for(|open| *open).await;
    }
}

async fn remove(session: Session, name: web::Path<String>) -> HttpResponse {
    session.remove(&name);
    HttpResponse::Ok().finish()
}

async fn purge(session: Session) -> HttpResponse {
    session.purge();
    HttpResponse::Ok().finish()
}

async fn renew(session: Session) -> HttpResponse {
    session.renew();
    HttpResponse::Ok().finish()
}

async fn gated_renew(session: Session, gate: web::Data<Gate>) -> HttpResponse {
    gate.pass().await;
    renew(session).await
}

async fn gated_login(
    session: Session,
    user: web::Path<String>,
    gate: web::Data<Gate>,
) -> actix_web::Result<HttpResponse> {
    gate.pass().await;
    login(session, user).await
}

async fn login(session: Session, user: web::Path<String>) -> actix_web::Result<HttpResponse> {
    session.clear();
    session.renew();
    session.insert("user", user.into_inner())?;
    Ok(HttpResponse::Ok().finish())
}

/// The session cookie a response sets (or clears), if any.
pub fn session_cookie<B>(response: &ServiceResponse<B>) -> Option<Cookie<'static>> {
    response
        .response()
        .cookies()
        .find(|cookie| cookie.name() == COOKIE)
        .map(Cookie::into_owned)
}

/// A cookie the middleware accepts as authentic (signed or encrypted with `key`) whose value,
/// the session key, is whatever the caller likes.
pub fn forge_cookie(
    key: &Key,
    security: CookieContentSecurity,
    session_key: &str,
) -> Cookie<'static> {
    let mut jar = actix_web::cookie::CookieJar::new();
    let cookie = Cookie::new(COOKIE, session_key.to_owned());
    match security {
        CookieContentSecurity::Private => jar.private_mut(key).add(cookie),
        CookieContentSecurity::Signed => jar.signed_mut(key).add(cookie),
    }
    jar.get(COOKIE).expect("just added").clone()
}

/// The session key inside a cookie the middleware set with `key` (encrypted cookies).
pub fn session_key_in(cookie: &Cookie<'static>, key: &Key) -> String {
    let mut jar = actix_web::cookie::CookieJar::new();
    jar.add_original(cookie.clone());
    jar.private(key)
        .get(cookie.name())
        .expect("a cookie the middleware encrypted with this key")
        .value()
        .to_owned()
}

/// The Redis key under `prefix` of the session whose key is `session_key`, computed
/// independently of the store: `{prefix}s:{base64url(sha256(id))}`, where the id is the
/// session key without the `.a` of a session that has no user.
pub fn redis_key(prefix: &str, session_key: &str) -> String {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    use sha2::{Digest as _, Sha256};

    let id = session_key.strip_suffix(".a").unwrap_or(session_key);
    format!(
        "{prefix}s:{}",
        URL_SAFE_NO_PAD.encode(Sha256::digest(id.as_bytes()))
    )
}

/// Sends `method path` with `cookie` (if any) to a test service and returns the response, an
/// error turned into its response as a server would turn it.
pub async fn send(
    app: &impl TestApp,
    method: actix_web::http::Method,
    path: &str,
    cookie: Option<&Cookie<'static>>,
) -> ServiceResponse {
    let mut request = actix_web::test::TestRequest::default()
        .method(method)
        .uri(path);
    if let Some(cookie) = cookie {
        request = request.cookie(cookie.clone());
    }
    send_request(app, request).await
}

/// Sends `request` to a test service, as [`send`] does.
pub async fn send_request(
    app: &impl TestApp,
    request: actix_web::test::TestRequest,
) -> ServiceResponse {
    match actix_web::test::try_call_service(app, request.to_request()).await {
        Ok(response) => response.map_into_boxed_body(),
        Err(err) => ServiceResponse::new(
            actix_web::test::TestRequest::default().to_http_request(),
            err.error_response(),
        ),
    }
}

/// Asserts that `response` is what a Redis out of reach gives: `503` with `Retry-After: 1`;
/// `what` names the request.
pub fn assert_unavailable<B>(response: &ServiceResponse<B>, what: &str) {
    assert_eq!(response.status(), 503, "{what}");
    let retry_after = response.headers().get("retry-after").expect("Retry-After");
    assert_eq!(retry_after, "1", "{what}");
}

/// Sends `method path` with `cookie` (if any) and asserts that the answer is
/// [`assert_unavailable`]'s and that it came within `limit`; returns the answer.
pub async fn assert_unavailable_within(
    app: &impl TestApp,
    (method, path): (actix_web::http::Method, &str),
    cookie: Option<&Cookie<'static>>,
    limit: std::time::Duration,
) -> ServiceResponse {
    let started = std::time::Instant::now();
    let response = send(app, method.clone(), path, cookie).await;
    assert_unavailable(&response, &format!("{method} {path}"));
    let took = started.elapsed();
    assert!(took < limit, "{method} {path} took {took:?}");
    response
}

/// `GET /get/{name}` with `cookie`: the entry's value, or `"none"`.
pub async fn get_entry(app: &impl TestApp, name: &str, cookie: Option<&Cookie<'static>>) -> String {
    let response = send(
        app,
        actix_web::http::Method::GET,
        &format!("/get/{name}"),
        cookie,
    )
    .await;
    assert!(
        response.status().is_success(),
        "GET /get/{name}: {}",
        response.status()
    );
    let body = actix_web::test::read_body(response).await;
    String::from_utf8(body.to_vec()).expect("a UTF-8 body")
}

/// `POST /set/{name}/{value}` with `cookie` (if any): the response.
pub async fn set_entry(
    app: &impl TestApp,
    name: &str,
    value: &str,
    cookie: Option<&Cookie<'static>>,
) -> ServiceResponse {
    let path = format!("/set/{name}/{value}");
    send(app, actix_web::http::Method::POST, &path, cookie).await
}

/// A test service: [`routes`] behind actix-session's middleware alone, on `store`, with `gate`
/// for `/gated-set`.
pub async fn bare_app(
    store: RedisSessionStore,
    key: &Key,
    mode: MiddlewareMode,
    gate: Gate,
) -> impl TestApp + use<> {
    session_app(store.clone(), middleware(store, key, mode), gate, false).await
}

/// The same as [`bare_app`], with the middleware behind `TrackChanges`.
pub async fn tracked_app(
    store: RedisSessionStore,
    key: &Key,
    mode: MiddlewareMode,
    gate: Gate,
) -> impl TestApp + use<> {
    session_app(store.clone(), middleware(store, key, mode), gate, true).await
}

/// [`tracked_app`] when `tracked`, else [`bare_app`] (one type for both, for tests that run
/// on either), with a gate that nobody waits at.
pub async fn either_app(
    store: RedisSessionStore,
    key: &Key,
    mode: MiddlewareMode,
    tracked: bool,
) -> impl TestApp + use<> {
    session_app(
        store.clone(),
        middleware(store, key, mode),
        Gate::default(),
        tracked,
    )
    .await
}

/// [`routes`] behind `session`, itself behind `TrackChanges` when `tracked`.
async fn session_app(
    store: RedisSessionStore,
    session: SessionMiddleware<RedisSessionStore>,
    gate: Gate,
    tracked: bool,
) -> impl TestApp + use<> {
    actix_web::test::init_service(
        actix_web::App::new()
            .wrap(Condition::new(tracked, TrackChanges::new(session.clone())))
            .wrap(Condition::new(!tracked, session))
            .app_data(web::Data::new(gate))
            .app_data(web::Data::new(store))
            .configure(routes),
    )
    .await
}

/// The usual test service: [`tracked_app`] with encrypted cookies and a gate that nobody
/// waits at.
pub async fn app(store: RedisSessionStore, key: &Key) -> impl TestApp + use<> {
    tracked_app(
        store,
        key,
        MiddlewareMode::COOKIE_MODES[0].clone(),
        Gate::default(),
    )
    .await
}

/// The usual test service ([`app`]) with `gate` for the gated routes.
pub async fn gated_app(store: RedisSessionStore, key: &Key, gate: &Gate) -> impl TestApp + use<> {
    tracked_app(
        store,
        key,
        MiddlewareMode::COOKIE_MODES[0].clone(),
        gate.clone(),
    )
    .await
}

/// Races two requests of the session `cookie` opens: `POST gated` (a gated route) and, once
/// it waits at `gate` with the session loaded, `POST meanwhile`; then the gate opens. Returns
/// both responses, the gated request's first.
pub async fn race(
    app: &impl TestApp,
    gate: &Gate,
    cookie: &Cookie<'static>,
    gated: &str,
    meanwhile: &str,
) -> (ServiceResponse, ServiceResponse) {
    use actix_web::http::Method;

    futures_util::join!(
        send(app, Method::POST, gated, Some(cookie)),
        gate.once_waiting(1, send(app, Method::POST, meanwhile, Some(cookie))),
    )
}

/// The usual test service ([`app`]) on `store` with a key of its own, and a session started
/// through it ([`log_in`]).
pub async fn logged_in_app(store: RedisSessionStore) -> (impl TestApp + use<>, Cookie<'static>) {
    let app = app(store, &Key::generate()).await;
    let cookie = log_in(&app).await;
    (app, cookie)
}

/// Sends `POST path` without a cookie and returns the session cookie its response sets.
pub async fn start_session(app: &impl TestApp, path: &str) -> Cookie<'static> {
    let response = send(app, actix_web::http::Method::POST, path, None).await;
    session_cookie(&response).expect("a session cookie")
}

/// Starts a session holding `user=alice` through `app` and returns its cookie.
pub async fn log_in(app: &impl TestApp) -> Cookie<'static> {
    let response = send(app, actix_web::http::Method::POST, "/set/user/alice", None).await;
    assert_eq!(response.status(), 200, "log in");
    session_cookie(&response).expect("a session cookie")
}

/// Drives every store operation through `app` (create, read, change, remove an entry, renew,
/// purge) and checks each answer: a denied or failed Redis command shows up as a failure here.
pub async fn walk_through_every_operation(app: &impl TestApp) {
    use actix_web::http::Method;

    let created = send(app, Method::POST, "/set/user/alice", None).await;
    assert_eq!(created.status(), 200, "create");
    let cookie = session_cookie(&created).expect("a session cookie");
    assert_eq!(get_entry(app, "user", Some(&cookie)).await, "alice");
    for (path, what) in [("/set/theme/dark", "change"), ("/remove/theme", "remove")] {
        let response = send(app, Method::POST, path, Some(&cookie)).await;
        assert_eq!(response.status(), 200, "{what}");
    }
    let renewed = send(app, Method::POST, "/renew", Some(&cookie)).await;
    assert_eq!(renewed.status(), 200, "renew");
    let cookie = session_cookie(&renewed).expect("a new session cookie");
    assert_eq!(get_entry(app, "user", Some(&cookie)).await, "alice");
    assert_eq!(get_entry(app, "theme", Some(&cookie)).await, "none");
    let purged = send(app, Method::POST, "/purge", Some(&cookie)).await;
    assert_eq!(purged.status(), 200, "purge");
    assert_eq!(get_entry(app, "user", Some(&cookie)).await, "none");
}
