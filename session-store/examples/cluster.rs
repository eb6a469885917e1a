//! The minimal app on a Redis Cluster: the same handlers and middleware as on one server, only
//! the store is built from a cluster `Manager`. Each session is one key, so each request goes
//! to the one primary that owns its slot; `/me` also says which slot and primary that is.
//!
//! A local cluster of three primaries, for trying it (`redis-server` and `redis-cli` from your
//! system's packages):
//!
//! ```sh
//! for port in 7000 7001 7002; do
//!   mkdir -p /tmp/redis-cluster/$port
//!   redis-server --port $port --cluster-enabled yes --dir /tmp/redis-cluster/$port \
//!     --cluster-config-file nodes.conf --appendonly no --save '' --daemonize yes
//! done
//! redis-cli --cluster create 127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002 --cluster-yes
//!
//! REDIS_CLUSTER_NODES=redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002 \
//!   cargo run -p session-store --example cluster
//! curl -c jar -X POST http://127.0.0.1:8080/login/alice
//! curl -b jar http://127.0.0.1:8080/me        # alice, slot 7710 on 127.0.0.1:7001
//!
//! # and to stop the cluster afterwards:
//! for port in 7000 7001 7002; do redis-cli -p $port shutdown nosave; done
//! rm -r /tmp/redis-cluster
//! ```
//!
//! The nodes come from `REDIS_CLUSTER_NODES` (comma-separated URLs; some of the cluster's nodes
//! are enough, the rest are found from them); the app listens on 127.0.0.1 at `PORT` (by
//! default 8080) until Ctrl-C.

use std::process::exit;

use actix_session::{Session, SessionMiddleware};
use actix_web::{App, HttpResponse, HttpServer, Responder, cookie::Key, web};
use session_store::{CurrentSession, Manager, RedisSessionStore, TrackChanges};

/// How to get a cluster, said when there is none to use.
const START_A_CLUSTER: &str = "\
Start a local cluster of three primaries with:

  for port in 7000 7001 7002; do
    mkdir -p /tmp/redis-cluster/$port
    redis-server --port $port --cluster-enabled yes --dir /tmp/redis-cluster/$port \\
      --cluster-config-file nodes.conf --appendonly no --save '' --daemonize yes
  done
  redis-cli --cluster create 127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002 --cluster-yes

then run this example with
  REDIS_CLUSTER_NODES=redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002";

async fn login(session: Session, user: web::Path<String>) -> actix_web::Result<impl Responder> {
    // A real app checks a password first. A fresh id at login: no session fixation.
    session.renew();
    session.insert("user", user.as_str())?;
    Ok(format!("signed in as {user}\n"))
}

/// Who the session belongs to, and where in the cluster it lives.
async fn me(
    store: web::Data<RedisSessionStore>,
    session: Session,
    current: CurrentSession,
) -> actix_web::Result<impl Responder> {
    let user = session.get::<String>("user")?;
    let user = user.as_deref().unwrap_or("nobody");
    // One more round trip (`CLUSTER KEYSLOT` + `CLUSTER SLOTS`), for pages that show it.
    Ok(match store.location(&current).await? {
        Some(location) => match location.slot {
            Some(slot) => format!("{user}, slot {slot} on {}\n", location.node),
            None => format!("{user}, on {}\n", location.node),
        },
        None => format!("{user}\n"),
    })
}

async fn logout(session: Session) -> impl Responder {
    session.purge();
    HttpResponse::Ok().body("signed out\n")
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let Ok(nodes) = std::env::var("REDIS_CLUSTER_NODES") else {
        eprintln!(
            "REDIS_CLUSTER_NODES is not set: it names the cluster's nodes.\n\n{START_A_CLUSTER}"
        );
        exit(2);
    };
    let nodes: Vec<String> = nodes
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .map(str::to_owned)
        .collect();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .unwrap_or(8080);

    // Only the constructor differs from a single server: handlers, middleware and settings
    // stay as they are. (Behind Sentinel: `Manager::sentinel(sentinels, "master-name")`.)
    let manager = match Manager::cluster(nodes.iter().map(String::as_str)) {
        Ok(manager) => manager,
        Err(error) => {
            eprintln!("REDIS_CLUSTER_NODES={}: {error}", nodes.join(","));
            exit(2);
        }
    };
    let store = RedisSessionStore::builder()
        .build_with_manager(manager)
        .map_err(std::io::Error::other)?;
    if let Err(error) = store.health_check().await {
        eprintln!(
            "The cluster at {} does not answer ({}).\n\n{START_A_CLUSTER}",
            nodes.join(","),
            error.chain()
        );
        exit(1);
    }

    // Load the key from configuration in a real app: every instance needs the same one.
    let key = Key::generate();

    println!(
        "Listening on http://127.0.0.1:{port}/ (sessions in the Redis Cluster at {}); Ctrl-C stops it",
        nodes.join(",")
    );
    HttpServer::new(move || {
        let sessions = SessionMiddleware::builder(store.clone(), key.clone())
            // Plain HTTP in this example; keep `Secure` cookies behind HTTPS.
            .cookie_secure(false)
            .build();
        App::new()
            .app_data(web::Data::new(store.clone()))
            .wrap(TrackChanges::new(sessions))
            .route("/login/{user}", web::post().to(login))
            .route("/me", web::get().to(me))
            .route("/logout", web::post().to(logout))
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
