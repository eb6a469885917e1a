//! One demo instance: an actix-web server with the session middleware, the pages and the API.

use std::num::NonZeroUsize;

use actix_session::config::CookieContentSecurity;
use actix_web::{App, HttpServer, cookie::Key, web};
use anyhow::Context as _;
use session_store::{CookieKeys, RedisSessionStore, TrackChanges, WhenUnavailable};

use super::{
    accounts::Accounts,
    activity::Activity,
    browser_guard,
    csrf::VisitorTokens,
    hashing::{self, HashingPool},
    health::HealthCheck,
    login_throttle,
    metrics::{self, Metrics},
    state::AppState,
    stats::Stats,
    user,
};
use crate::{cli::ServeArgs, cookie_key::parse_cookie_key, redis_target::RedisTarget};

/// The session cookie's name on plain-HTTP localhost.
pub const SESSION_COOKIE: &str = "session";

/// The session cookie's name when it is `Secure`: the `__Host-` prefix makes browsers accept it
/// only if it is `Secure`, has `Path=/` and no `Domain`, so a sibling subdomain or a plain-HTTP
/// page cannot plant or overwrite it (no fixation through cookie injection).
pub const SECURE_SESSION_COOKIE: &str = "__Host-session";

/// The cookie that carries the login form's token for a visitor without a session, on
/// plain-HTTP localhost (see `csrf/visitor.rs`).
pub const LOGIN_CSRF_COOKIE: &str = "login-csrf";

/// The login form's cookie when cookies are `Secure`, `__Host-` prefixed like the session's.
pub const SECURE_LOGIN_CSRF_COOKIE: &str = "__Host-login-csrf";

/// The session middleware as the demo sets it up: HttpOnly, SameSite=Lax, encrypted cookies,
/// `Secure` and `__Host-` prefixed unless the demo runs on plain-HTTP localhost; each request
/// writes only the entries it changed; cookies sealed by one of the `previous` keys are
/// accepted and re-issued under `key`.
pub fn session_middleware(
    store: RedisSessionStore,
    key: Key,
    previous: Vec<Key>,
    secure: bool,
) -> TrackChanges {
    let keys = CookieKeys::new(key)
        .previous(previous)
        .cookie_name(session_cookie_name(secure))
        .content_security(CookieContentSecurity::Private);
    TrackChanges::with_keys(store, keys, |cookie| {
        cookie
            .cookie_path("/".to_owned())
            .cookie_domain(None)
            .cookie_http_only(true)
            .cookie_same_site(actix_web::cookie::SameSite::Lax)
            .cookie_secure(secure)
    })
}

/// The session cookie's name: `__Host-` prefixed when cookies are `Secure`.
pub(crate) fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// The password-hashing threads and their queue, as the settings ask or by default.
fn start_hashing(
    threads: Option<NonZeroUsize>,
    queue: Option<usize>,
) -> anyhow::Result<HashingPool> {
    let pool = HashingPool::start(threads.unwrap_or_else(hashing::default_threads), queue)
        .context("cannot start the password-hashing threads")?;
    tracing::info!(
        threads = pool.threads(),
        queue = pool.queue(),
        "password hashing"
    );
    Ok(pool)
}

/// Runs one instance until it is stopped.
///
/// # Errors
/// When the settings are unusable or the port cannot be bound.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Before anything records: metric handles taken earlier would stay no-ops.
    let metrics = Metrics::install()?;
    let stats = web::Data::new(Stats::start(metrics.clone()));
    let metrics = web::Data::new(metrics);
    let target = RedisTarget::from_args(&args.common)?.context(
        "`serve` needs --redis-url, --redis-cluster or --redis-sentinel (or REDIS_URL, \
         REDIS_CLUSTER or REDIS_SENTINEL); the launcher passes its own",
    )?;
    let key = match &args.common.cookie_key {
        Some(encoded) => parse_cookie_key(encoded)?,
        None => {
            tracing::warn!(
                "no cookie key given: generated one; other instances will not accept this one's cookies"
            );
            Key::generate()
        }
    };
    let previous_keys = args
        .common
        .previous_cookie_keys
        .iter()
        .map(|encoded| parse_cookie_key(encoded))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("--previous-cookie-keys")?;
    let accounts = match &args.common.accounts {
        Some(path) => Accounts::demo_and_file(path)?,
        None => Accounts::demo(),
    };
    let when_unavailable = if args.common.anonymous_when_redis_down {
        WhenUnavailable::Anonymous
    } else {
        WhenUnavailable::Fail
    };
    let replicas = args
        .common
        .wait_replicas
        .unwrap_or_else(|| target.default_replica_acks());
    let mut builder = RedisSessionStore::builder()
        .key_prefix("demo:")
        .user_entry(user::USER)
        .exposed_entries([user::USER_AGENT, user::INSTANCE])
        .max_sessions_per_user(args.common.max_sessions_per_user as usize)
        .publish_events(true)
        .instance_label(args.port.to_string())
        .when_unavailable(when_unavailable);
    if let Some(seconds) = args.common.idle_timeout {
        builder = builder.idle_timeout(std::time::Duration::from_secs(seconds));
    }
    if args.common.near_cache > 0 {
        builder = builder.near_cache(args.common.near_cache);
    }
    if let Some(step) = args.common.legacy_sessions {
        builder = builder.legacy_sessions(step.setting());
    }
    let store = target.build(RedisTarget::with_replica_acks(builder, replicas))?;
    let peers = if args.peers.is_empty() {
        vec![args.port]
    } else {
        args.peers.clone()
    };
    let secure = !args.plain_http;
    let activity = Activity::start(
        &store,
        usize::try_from(args.common.max_streams_per_session).unwrap_or(usize::MAX),
    );
    let relay = web::Data::new(activity.clone());
    let health = web::Data::new(HealthCheck::new(store.clone(), args.port));
    let state = web::Data::new(AppState {
        port: args.port,
        peers,
        balancer_port: args.balancer_port,
        balancer_secret: args.balancer_secret.clone(),
        accounts,
        hashing: start_hashing(args.common.hash_threads, args.common.login_queue)?,
        store: store.clone(),
        login_throttle: store.login_throttle(login_throttle::limits(&args.common)),
        visitor_tokens: VisitorTokens::new(key.clone(), secure),
    });

    let server = HttpServer::new(move || {
        App::new()
            .wrap(session_middleware(
                store.clone(),
                key.clone(),
                previous_keys.clone(),
                secure,
            ))
            // Outside the session middleware: a refused request costs Redis nothing.
            .wrap(actix_web::middleware::from_fn(
                browser_guard::refuse_cross_origin,
            ))
            .wrap(browser_guard::security_headers())
            // The stats page polls every second: its requests would drown the others' lines.
            .wrap(
                actix_web::middleware::Logger::new("%s %r %Dms")
                    .exclude("/api/stats")
                    .exclude("/metrics"),
            )
            .wrap(actix_web::middleware::from_fn(metrics::record_request))
            .app_data(state.clone())
            .app_data(relay.clone())
            .app_data(health.clone())
            .app_data(metrics.clone())
            .app_data(stats.clone())
            .configure(super::configure)
    })
    .workers(2)
    .bind(("127.0.0.1", args.port))
    .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?
    .run();

    if args.exit_with_parent {
        let handle = server.handle();
        actix_web::rt::spawn(async move {
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
            tracing::info!("launcher gone: stopping");
            activity.close();
            handle.stop(true).await;
        });
    }
    tracing::info!("listening on http://127.0.0.1:{}", args.port);
    server.await.context("the server failed")
}
