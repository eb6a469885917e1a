//! The command line. Every flag can also come from the environment variable named beside it.

use std::{num::NonZeroUsize, path::PathBuf};

use clap::{Args, Parser, Subcommand};

/// Shared login state across several actix-web instances, kept in one Redis.
///
/// Without a subcommand it launches the demo: N instances as separate processes on ports
/// BASE_PORT to BASE_PORT+N-1, all behind one Redis, and nginx in front of them on
/// BALANCER_PORT spreading requests over them. Log in once and every instance knows you; kill
/// one and the launcher starts it again while the others serve. Ctrl-C stops everything it
/// started.
#[derive(Debug, Parser)]
#[command(
    name = "demo-app",
    version,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Something other than launching the demo.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// How to launch the demo.
    #[command(flatten)]
    pub launch: LaunchArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one instance (the launcher starts N of these).
    Serve(Box<ServeArgs>),
    /// Read a password from standard input and print its argon2 hash, for an accounts file.
    HashPassword,
    /// Kill what the launcher names on standard input once that closes (the launcher starts
    /// it; see `launcher/watchdog.rs`).
    #[command(hide = true)]
    Watchdog,
}

/// Settings of the launcher.
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// How many instances to start.
    #[arg(long, env = "DEMO_INSTANCES", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub instances: u16,

    /// The first instance's port; the others follow it.
    #[arg(long, env = "DEMO_BASE_PORT", default_value_t = 8081)]
    pub base_port: u16,

    /// The shape of the private Redis the launcher starts when none is given.
    #[arg(long, env = "DEMO_TOPOLOGY", value_enum, default_value_t = TopologyArg::Single)]
    pub topology: TopologyArg,

    /// The port of the load balancer (nginx) in front of the instances: the one address to
    /// open. nginx is taken from PATH or /usr/sbin; the NGINX_BIN variable names another.
    #[arg(long, env = "DEMO_BALANCER_PORT", default_value_t = 8080)]
    pub balancer_port: u16,

    /// Old instances to start besides: N more instances on the ports after the new ones',
    /// behind the same balancer and Redis, running actix-session's own `RedisSessionStore`
    /// with the same cookie (one Redis server only), for playing a switch from that store.
    /// The new instances interoperate with them unless --legacy-sessions says otherwise.
    #[arg(long, env = "DEMO_LEGACY_INSTANCES", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=32))]
    pub legacy_instances: u16,

    /// Start no load balancer: only the instances' own ports serve.
    #[arg(long, env = "DEMO_NO_BALANCER")]
    pub no_balancer: bool,

    /// Mark cookies `Secure` (for when a TLS proxy fronts the instances). By default the
    /// launcher serves plain HTTP on localhost, where browsers would drop a `Secure` cookie.
    #[arg(long, env = "DEMO_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// Settings shared with `serve`.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Settings of one instance.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The port to listen on (loopback only).
    #[arg(long, env = "PORT")]
    pub port: u16,

    /// The ports of all instances, for the links between them (default: this one only).
    #[arg(long, env = "DEMO_PEERS", value_delimiter = ',')]
    pub peers: Vec<u16>,

    /// Serve plain HTTP on localhost: cookies are not marked `Secure`.
    #[arg(long, env = "DEMO_PLAIN_HTTP")]
    pub plain_http: bool,

    /// The secret the load balancer sends in `X-Demo-Balancer` (the launcher makes one per
    /// run): `X-Forwarded-For` is believed only on requests that carry it, so a client that
    /// reaches the instance's own port cannot name another address. Without it, no request's
    /// `X-Forwarded-For` is believed.
    #[arg(long, env = "DEMO_BALANCER_SECRET", hide_env_values = true)]
    pub balancer_secret: Option<String>,

    /// The load balancer's port, whose stats page may read this instance's `/api/stats`.
    #[arg(long, env = "DEMO_BALANCER_PORT")]
    pub balancer_port: Option<u16>,

    /// Stop when standard input closes, i.e. when the launcher that started it is gone.
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,

    /// Run an old instance: actix-session's own `RedisSessionStore` instead of session-store
    /// (the API, the home page; see --legacy-instances). Needs --redis-url and --cookie-key.
    #[arg(long, env = "DEMO_LEGACY_STORE")]
    pub legacy_store: bool,

    /// Settings shared with the launcher.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The shapes of Redis the launcher can start for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TopologyArg {
    /// One `redis-server`.
    Single,
    /// A Redis Cluster: three primaries with a replica each.
    Cluster,
    /// A primary and a replica under three Redis Sentinels.
    Sentinel,
}

/// The steps of a switch from actix-session's own Redis store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LegacyStepArg {
    /// Old and new instances side by side.
    Interoperate,
    /// No old instance left: old sessions move over.
    Migrate,
}

impl LegacyStepArg {
    /// The store's setting for this step.
    pub fn setting(self) -> session_store::LegacySessions {
        match self {
            Self::Interoperate => session_store::LegacySessions::interoperate(),
            Self::Migrate => session_store::LegacySessions::migrate(),
        }
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Interoperate => "interoperate",
            Self::Migrate => "migrate",
        }
    }
}

/// Settings of both the launcher and `serve`.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// One Redis server to keep sessions in (`redis://host:port`). Without this,
    /// --redis-cluster or --redis-sentinel, the launcher starts a private Redis of the
    /// --topology shape on free ports.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// A Redis Cluster to keep sessions in: some of its nodes, `host:port,host:port,...`.
    #[arg(long, env = "REDIS_CLUSTER", value_delimiter = ',')]
    pub redis_cluster: Vec<String>,

    /// Redis Sentinels that name the primary to keep sessions in: `host:port,host:port,...`.
    #[arg(long, env = "REDIS_SENTINEL", value_delimiter = ',')]
    pub redis_sentinel: Vec<String>,

    /// The master name the sentinels know the primary by.
    #[arg(long, env = "REDIS_SENTINEL_MASTER", default_value = "mymaster")]
    pub sentinel_master: String,

    /// The password of the primary (and replicas) behind the sentinels, when they need one
    /// (the sentinels' own goes in their URLs). Better in the environment than on the command
    /// line, where `ps` shows it.
    #[arg(long, env = "REDIS_SENTINEL_PASSWORD", hide_env_values = true)]
    pub sentinel_password: Option<String>,

    /// Replicas every write (login, profile change, logout) waits for, so that a failover
    /// loses no acknowledged write (default: 1 on a cluster or behind Sentinel, 0 on one
    /// server).
    #[arg(long, env = "DEMO_WAIT_REPLICAS")]
    pub wait_replicas: Option<u32>,

    /// The key that signs and encrypts cookies: base64 of at least 64 bytes, the same for every
    /// instance. When not given, one is generated at launch and shared with the instances.
    #[arg(long, env = "DEMO_COOKIE_KEY", hide_env_values = true)]
    pub cookie_key: Option<String>,

    /// Keys that sealed cookies before --cookie-key (base64, comma-separated): cookies they
    /// sealed are still accepted, and re-issued under --cookie-key on the same response, so
    /// the key rotates with nobody logged out. Drop one once the cookies it sealed have had
    /// time to come back (or expire): its cookies are then no session.
    #[arg(
        long,
        env = "DEMO_PREVIOUS_COOKIE_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub previous_cookie_keys: Vec<String>,

    /// The step of a switch from actix-session's own Redis store that the instances take:
    /// `interoperate` while old instances still serve (old sessions read and written where
    /// the old store keeps them, new ones made so old instances can read them), `migrate`
    /// once none is left (old sessions moved over on their next request). Default: none, or
    /// `interoperate` when the launcher starts --legacy-instances.
    #[arg(long, env = "DEMO_LEGACY_SESSIONS", value_enum)]
    pub legacy_sessions: Option<LegacyStepArg>,

    /// A file of extra accounts, one `username:argon2-hash` per line (see `hash-password`).
    #[arg(long, env = "DEMO_ACCOUNTS")]
    pub accounts: Option<PathBuf>,

    /// While Redis is unavailable, serve pages as if nobody were logged in (and log everyone
    /// back in when it returns) instead of answering 503.
    #[arg(long, env = "DEMO_ANONYMOUS_WHEN_REDIS_DOWN")]
    pub anonymous_when_redis_down: bool,

    /// Sessions each instance keeps in its near cache, served with no Redis round trip while
    /// Redis says they did not change; 0 turns the near cache off.
    #[arg(long, env = "DEMO_NEAR_CACHE", default_value_t = 10_000)]
    pub near_cache: usize,

    /// Seconds a session may go unused before it ends (default: the store's, 30 minutes).
    #[arg(long, env = "DEMO_IDLE_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: Option<u64>,

    /// The most sessions one user may hold at once; a login beyond it ends the user's oldest
    /// session (an `evicted` event).
    #[arg(long, env = "DEMO_MAX_SESSIONS_PER_USER", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sessions_per_user: u32,

    /// Threads that check passwords, per instance (default: one per core). Each holds one
    /// argon2 buffer of 19 MiB for good, so an instance's memory stays bounded whatever the
    /// number of logins.
    #[arg(long, env = "DEMO_HASH_THREADS")]
    pub hash_threads: Option<NonZeroUsize>,

    /// Logins that may wait for a hashing thread, per instance; past that a login gets 503
    /// with Retry-After at once (default: about a second of work, timed at start).
    #[arg(long, env = "DEMO_LOGIN_QUEUE")]
    pub login_queue: Option<usize>,

    /// Failed logins allowed per account within a --failed-login-window, counted in Redis
    /// across every instance before each password is checked (a login under way counts until
    /// it fails or succeeds, 30 s at most), so that no more wrong passwords than this are
    /// ever checked per window. Past it, every login for that account gets 429 with
    /// Retry-After until the oldest failure leaves the window, even with the right password;
    /// logins past it only because others are under way get 429 with Retry-After: 1. A
    /// successful login clears the account's failures. Unknown usernames are counted alike,
    /// so a 429 tells nothing about which accounts exist.
    #[arg(long, env = "DEMO_MAX_FAILED_LOGINS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_failed_logins: u32,

    /// Failed logins allowed per client address within a window, whatever the accounts,
    /// counted the same way; a successful login does not count, but does not clear it
    /// either. Every browser on the demo's machine is one address (127.0.0.1), unless nginx
    /// names another.
    #[arg(long, env = "DEMO_MAX_FAILED_LOGINS_PER_ADDRESS", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_failed_logins_per_address: u32,

    /// How many live-activity streams (`/api/events`) one session may hold open at once on
    /// each instance; past it, `429`.
    #[arg(long, env = "DEMO_MAX_STREAMS_PER_SESSION", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_streams_per_session: u64,

    /// How long a failed login counts, in seconds.
    #[arg(long, env = "DEMO_FAILED_LOGIN_WINDOW", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub failed_login_window: u64,
}
