//! What every handler of an instance shares.

use session_store::{LoginThrottle, RedisSessionStore};

use super::{accounts::Accounts, csrf::VisitorTokens, hashing::HashingPool};

/// One instance's view of the demo.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    /// The port this instance serves.
    pub port: u16,
    /// The ports of all instances of the demo, this one included, in order.
    pub peers: Vec<u16>,
    /// The load balancer's port, when there is one.
    pub balancer_port: Option<u16>,
    /// What the load balancer proves itself with (see [`crate::web::client_address`]).
    pub balancer_secret: Option<String>,
    /// Who may log in.
    pub accounts: Accounts,
    /// The threads that check passwords.
    pub hashing: HashingPool,
    /// The session store, for the health check and the sessions page.
    pub store: RedisSessionStore,
    /// Failed logins, counted in Redis for every instance.
    pub login_throttle: LoginThrottle,
    /// The login form's tokens, which need no session.
    pub(crate) visitor_tokens: VisitorTokens,
}
