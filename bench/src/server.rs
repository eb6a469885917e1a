//! `bench serve`: the benchmark app with whichever store `--store` names.

use std::time::Duration;

use actix_session::{SessionMiddleware, config::PersistentSession, storage::SessionStore};
use actix_web::{App, HttpServer, cookie::Key};
use clap::Args;
use session_store::{RedisSessionStore, TrackChanges};

use crate::{Policy, StoreKind, routes};

/// Serves the benchmark app on 127.0.0.1.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The store behind the session middleware.
    #[arg(long, value_enum)]
    pub store: StoreKind,
    /// When actix-session asks the store to slide the expiry.
    #[arg(long, value_enum, default_value_t = Policy::Changes)]
    pub policy: Policy,
    /// The Redis to use; with `--cluster`, give each node's URL (or some of them).
    #[arg(long = "redis-url", required = true)]
    pub redis_urls: Vec<String>,
    /// The Redis is a cluster (session-store only: actix-session's stores have no cluster
    /// mode).
    #[arg(long)]
    pub cluster: bool,
    /// The port to listen on.
    #[arg(long)]
    pub port: u16,
    /// actix worker threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
}

/// One key for every run: the runner needs no secret, only cookies the server accepts.
fn key() -> Key {
    Key::from(&[7u8; 64])
}

fn middleware<S: SessionStore>(store: S, policy: Policy) -> SessionMiddleware<S> {
    SessionMiddleware::builder(store, key())
        .cookie_secure(false)
        .session_lifecycle(PersistentSession::default().session_ttl_extension_policy(policy.into()))
        .build()
}

/// Runs the server until the process is killed.
///
/// # Errors
/// When the store cannot reach Redis or the port cannot be bound.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let policy = args.policy;
    let url = args.redis_urls[0].clone();
    anyhow::ensure!(
        !args.cluster || args.store.is_ours(),
        "only session-store runs on a cluster"
    );
    let server = match args.store {
        StoreKind::Ours
        | StoreKind::OursIndexed
        | StoreKind::OursEvents
        | StoreKind::OursDurable
        | StoreKind::OursLegacy
        | StoreKind::OursClear
        | StoreKind::OursNear => {
            let builder = RedisSessionStore::builder();
            let builder = match args.store {
                StoreKind::OursIndexed => builder.user_entry("user"),
                StoreKind::OursEvents => builder.publish_events(true),
                StoreKind::OursDurable => builder.min_replica_acks(1, Duration::from_millis(100)),
                StoreKind::OursLegacy => {
                    builder.legacy_sessions(session_store::LegacySessions::migrate())
                }
                StoreKind::OursClear => builder.seal_entries(false),
                StoreKind::OursNear => builder.near_cache(crate::NEAR_CACHE_SESSIONS),
                _ => builder,
            };
            let store = if args.cluster {
                builder
                    .build_with_manager(session_store::Manager::cluster(args.redis_urls.clone())?)?
            } else {
                builder.build_with_url(&url)?
            };
            HttpServer::new(move || {
                App::new()
                    .wrap(TrackChanges::new(middleware(store.clone(), policy)))
                    .configure(routes)
            })
            .workers(args.workers)
            .bind(("127.0.0.1", args.port))?
            .run()
        }
        StoreKind::ActixCm => {
            let store = actix_session::storage::RedisSessionStore::new(url).await?;
            anchor_server(store, &args)?
        }
        StoreKind::ActixPool => {
            let pool = anchor_deadpool_redis::Config::from_url(url)
                .create_pool(Some(anchor_deadpool_redis::Runtime::Tokio1))?;
            anchor_server(
                actix_session::storage::RedisSessionStore::new_pooled(pool).await?,
                &args,
            )?
        }
        StoreKind::Cookie => HttpServer::new(move || {
            App::new()
                .wrap(middleware(
                    actix_session::storage::CookieSessionStore::default(),
                    policy,
                ))
                .configure(routes)
        })
        .workers(args.workers)
        .bind(("127.0.0.1", args.port))?
        .run(),
        StoreKind::None => HttpServer::new(|| App::new().configure(routes))
            .workers(args.workers)
            .bind(("127.0.0.1", args.port))?
            .run(),
    };
    server.await?;
    Ok(())
}

/// The app behind actix-session's middleware alone, on one of actix-session's stores.
fn anchor_server(
    store: actix_session::storage::RedisSessionStore,
    args: &ServeArgs,
) -> std::io::Result<actix_web::dev::Server> {
    let policy = args.policy;
    Ok(HttpServer::new(move || {
        App::new()
            .wrap(middleware(store.clone(), policy))
            .configure(routes)
    })
    .workers(args.workers)
    .bind(("127.0.0.1", args.port))?
    .run())
}
