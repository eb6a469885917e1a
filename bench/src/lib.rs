//! The benchmark's shared pieces: which store a server runs with, and the one app all stores
//! serve, so that the store is the only difference between runs.

use std::collections::HashMap;

use actix_session::{
    Session,
    config::TtlExtensionPolicy,
    storage::{SessionKey, SessionStore},
};
use actix_web::{HttpResponse, cookie::time::Duration as CookieDuration, web};
use futures_util::future::try_join_all;

pub mod backend;
pub mod cpu;
pub mod load;
pub mod measure;
pub mod near_memory;
pub mod redis_stats;
pub mod runner;
pub mod scaling;
pub mod server;

/// The session store a benchmark server runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// This project's `RedisSessionStore`, behind `TrackChanges`, its optional features off
    /// (its entries sealed, as by default).
    Ours,
    /// The same with the index of users' sessions on (`user_entry("user")`).
    OursIndexed,
    /// The same publishing lifecycle events (`publish_events(true)`).
    OursEvents,
    /// The same with every write waiting for a replica (`min_replica_acks(1, 100 ms)`).
    OursDurable,
    /// The same in the migrating step of a switch from actix-session's store
    /// (`legacy_sessions(LegacySessions::migrate())`), its sessions its own.
    OursLegacy,
    /// The same with its entries in clear (`seal_entries(false)`).
    OursClear,
    /// The same with its near cache on (`near_cache(10_000)`).
    OursNear,
    /// actix-session's `RedisSessionStore` on a redis-rs `ConnectionManager`.
    ActixCm,
    /// actix-session's `RedisSessionStore` on a deadpool-redis pool (`redis-pool`).
    ActixPool,
    /// actix-session's `CookieSessionStore`: the same middleware with the state in the
    /// cookie and no server-side store, the ceiling a server-side store can approach.
    Cookie,
    /// No session middleware at all: the ceiling of the server itself.
    None,
}

impl StoreKind {
    /// The name the tables use.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ours => "session-store",
            Self::OursIndexed => "session-store with users' index",
            Self::OursEvents => "session-store with events",
            Self::OursDurable => "session-store with WAIT for 1 replica",
            Self::OursLegacy => "session-store migrating from actix-session's store",
            Self::OursClear => "session-store, entries in clear",
            Self::OursNear => "session-store with near cache",
            Self::ActixCm => "actix-session (ConnectionManager)",
            Self::ActixPool => "actix-session (deadpool)",
            Self::Cookie => "actix-session's CookieSessionStore",
            Self::None => "no session middleware",
        }
    }

    /// Whether it is session-store, with or without its optional features.
    pub fn is_ours(self) -> bool {
        matches!(
            self,
            Self::Ours
                | Self::OursIndexed
                | Self::OursEvents
                | Self::OursDurable
                | Self::OursLegacy
                | Self::OursClear
                | Self::OursNear
        )
    }

    /// The value of `--store` that selects it.
    pub fn arg(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::OursIndexed => "ours-indexed",
            Self::OursEvents => "ours-events",
            Self::OursDurable => "ours-durable",
            Self::OursLegacy => "ours-legacy",
            Self::OursClear => "ours-clear",
            Self::OursNear => "ours-near",
            Self::ActixCm => "actix-cm",
            Self::ActixPool => "actix-pool",
            Self::Cookie => "cookie",
            Self::None => "none",
        }
    }
}

/// When actix-session asks the store to slide the expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// `TtlExtensionPolicy::OnEveryRequest`.
    Every,
    /// `TtlExtensionPolicy::OnStateChanges`.
    Changes,
}

impl From<Policy> for TtlExtensionPolicy {
    fn from(policy: Policy) -> Self {
        match policy {
            Policy::Every => Self::OnEveryRequest,
            Policy::Changes => Self::OnStateChanges,
        }
    }
}

/// The routes every store serves: `POST /login` (a new session with three small entries),
/// `GET /read`, `POST /write` (changes one entry), `POST /set/{name}` and `GET /count` (for
/// the lost-update count).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::post().to(login))
        .route("/read", web::get().to(read))
        .route("/write", web::post().to(write))
        .route("/set/{name}", web::post().to(set))
        .route("/count", web::get().to(count));
}

/// The sessions the near cache of the benchmark's servers holds.
pub const NEAR_CACHE_SESSIONS: usize = 10_000;

/// The state of a logged-in session, also used for the memory measurement.
pub const LOGIN_STATE: [(&str, &str); 3] = [
    ("user", "\"alice\""),
    ("theme", "\"dark\""),
    ("visits", "3"),
];

/// Saves `sessions` sessions of [`LOGIN_STATE`] through `store`, 256 at a time, and returns
/// their keys.
///
/// # Errors
/// When the store fails a save.
pub async fn save_logged_in<S: SessionStore>(
    store: &S,
    sessions: usize,
) -> anyhow::Result<Vec<SessionKey>> {
    let state: HashMap<String, String> = LOGIN_STATE
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let ttl = CookieDuration::days(1);
    let mut keys = Vec::with_capacity(sessions);
    for batch in (0..sessions).collect::<Vec<_>>().chunks(256) {
        let saved = try_join_all(batch.iter().map(|_| store.save(state.clone(), &ttl)))
            .await
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        keys.extend(saved);
    }
    Ok(keys)
}

async fn login(session: Session) -> actix_web::Result<HttpResponse> {
    session.insert("user", "alice")?;
    session.insert("theme", "dark")?;
    session.insert("visits", 3)?;
    Ok(HttpResponse::Ok().finish())
}

async fn read(session: Session) -> actix_web::Result<HttpResponse> {
    let user = session.get::<String>("user")?;
    Ok(HttpResponse::Ok().body(user.unwrap_or_default()))
}

async fn write(session: Session) -> actix_web::Result<HttpResponse> {
    let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
    session.insert("visits", visits)?;
    Ok(HttpResponse::Ok().finish())
}

async fn set(session: Session, name: web::Path<String>) -> actix_web::Result<HttpResponse> {
    session.insert(name.into_inner(), 1)?;
    Ok(HttpResponse::Ok().finish())
}

async fn count(session: Session) -> actix_web::Result<HttpResponse> {
    let entries = session
        .entries()
        .keys()
        .filter(|name| name.starts_with('e'))
        .count();
    Ok(HttpResponse::Ok().body(entries.to_string()))
}
