//! The live activity panel: one subscription per instance to the store's lifecycle events
//! (`store.events()`, Redis pub/sub), each event logged as it comes and relayed to the
//! signed-in browsers connected to `GET /api/events` as server-sent events. The home page's
//! script turns them into lines like "alice logged in on :8082".
//!
//! In this demo every signed-in user sees everyone's logins and logouts, which the page says;
//! a real application would show each user their own at most.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_session::Session;
use actix_web::{HttpRequest, HttpResponse, http::header, web, web::Bytes};
use futures_util::{StreamExt as _, stream};
use session_store::{
    CurrentSession, RedisSessionStore, SessionEvent, SessionEventKind, SessionNotice,
};
use tokio::sync::broadcast::{self, error::RecvError};

use super::{browser_guard, respond::not_signed_in, user};

/// Notices a browser's stream may fall behind by before it misses some (and is told so).
const BACKLOG: usize = 256;

/// How often an idle stream sends a comment line, so that a proxy's read timeout (nginx's is
/// 60 s) does not cut it and a browser that went away is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How soon a stream asks again about its session when Redis could not say.
const RECHECK: Duration = Duration::from_secs(1);

/// The relay from this instance's subscription to the browsers' streams.
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    sender: broadcast::Sender<Relayed>,
    /// The store, which a stream asks whether its session still lives.
    store: RedisSessionStore,
    /// The streams open on this instance, by the reference of their session.
    open: Arc<Mutex<HashMap<Arc<str>, usize>>>,
    /// How many streams one session may hold open on this instance.
    per_session: usize,
}

/// One open stream, counted for its session until it is dropped (the browser went away, or
/// the stream ended).
struct Opened {
    open: Arc<Mutex<HashMap<Arc<str>, usize>>>,
    session: Arc<str>,
}

impl Drop for Opened {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.session) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.session);
            }
        }
    }
}

/// What the relay hands to every stream.
#[derive(Debug, Clone)]
enum Relayed {
    /// A notice, as the JSON of an SSE `data:` line, the reference of the session it ended,
    /// if it ended one, and whether events may have been missed before it (a reconnection).
    Notice {
        json: Arc<str>,
        ended: Option<Arc<str>>,
        gap: bool,
    },
    /// The instance is stopping: the streams end, so that its graceful stop need not wait for
    /// them.
    Closing,
}

impl Activity {
    /// Subscribes to `store`'s events and relays them, from a task on the current (actix)
    /// runtime, for as long as the instance runs. Once per instance: the subscription holds
    /// a Redis connection of its own, and it reconnects by itself after losing Redis.
    pub(crate) fn start(store: &RedisSessionStore, per_session: usize) -> Self {
        let (sender, _) = broadcast::channel(BACKLOG);
        let mut notices = store.events();
        let relay = sender.clone();
        actix_web::rt::spawn(async move {
            while let Some(notice) = notices.next().await {
                log(&notice);
                if let Some(relayed) = relayed(&notice) {
                    // Fails only when no browser is connected.
                    let _ = relay.send(relayed);
                }
            }
        });
        Self {
            sender,
            store: store.clone(),
            open: Arc::default(),
            per_session,
        }
    }

    /// Counts a stream for `session`, unless it holds as many as it may already.
    fn open(&self, session: &Arc<str>) -> Option<Opened> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(Arc::clone(session)).or_default();
        if *count >= self.per_session {
            return None;
        }
        *count += 1;
        Some(Opened {
            open: Arc::clone(&self.open),
            session: Arc::clone(session),
        })
    }

    /// Ends every browser's stream: the instance is stopping.
    pub(crate) fn close(&self) {
        let _ = self.sender.send(Relayed::Closing);
    }
}

/// Registers `/api/events`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/events", web::get().to(events));
}

/// Every instance logs every event it receives, whichever instance published it.
fn log(notice: &SessionNotice) {
    match notice {
        SessionNotice::Event(event) => tracing::info!(
            event = %kind_name(event.event),
            user = %event.user.as_deref().unwrap_or("-"),
            session = %event.session,
            on = %event.instance.as_deref().unwrap_or("-"),
            "session event"
        ),
        SessionNotice::Reconnected => tracing::info!(
            "session events: subscribed again after losing Redis (events published meanwhile \
             were missed)"
        ),
        SessionNotice::Lagged => {
            tracing::warn!("session events: fell behind, and some were dropped");
        }
        _ => {}
    }
}

/// `created`, `deleted`, ...: the name the event's JSON gives its kind.
fn kind_name(kind: SessionEventKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|name| name.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{kind:?}"))
}

/// What a notice becomes on the browsers' streams.
fn relayed(notice: &SessionNotice) -> Option<Relayed> {
    let (json, ended, gap) = match notice {
        SessionNotice::Event(event) => (serde_json::to_string(event).ok()?, ended(event), false),
        SessionNotice::Reconnected => (r#"{"event":"reconnected"}"#.to_owned(), None, true),
        SessionNotice::Lagged => (r#"{"event":"lagged"}"#.to_owned(), None, true),
        _ => return None,
    };
    Some(Relayed::Notice {
        json: json.into(),
        ended,
        gap,
    })
}

/// The reference of the session `event` ended, if it ended one.
fn ended(event: &SessionEvent) -> Option<Arc<str>> {
    matches!(
        event.event,
        SessionEventKind::Deleted
            | SessionEventKind::Revoked
            | SessionEventKind::Expired
            | SessionEventKind::Evicted
    )
    .then(|| Arc::from(event.session.as_str()))
}

/// `GET /api/events`: the relayed events as server-sent events, for signed-in visitors, at most
/// `--max-streams-per-session` at once per session and instance (`429` past it). A stream ends
/// after the event that ends its own session (a logout, a revocation), and within
/// [`KEEP_ALIVE`] of any other end (idle or absolute expiry, a key deleted): it looks its
/// session up in the user's index that often, without using it, so that a stream keeps no
/// session alive. A page of another origin may not open one (another port on localhost is the
/// same site, so the session cookie goes with its requests): it would hold the session's
/// streams.
async fn events(
    req: HttpRequest,
    activity: web::Data<Activity>,
    session: Session,
    current: CurrentSession,
) -> actix_web::Result<HttpResponse> {
    if browser_guard::from_another_origin(req.headers(), req.connection_info().scheme()) {
        return Ok(HttpResponse::Forbidden()
            .json(serde_json::json!({"error": "cross-origin request refused"})));
    }
    let user = user::signed_in(&session)?;
    let Some(own) = current.reference() else {
        return Ok(not_signed_in());
    };
    let own: Arc<str> = Arc::from(own);
    let Some(opened) = activity.open(&own) else {
        return Ok(HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, KEEP_ALIVE.as_secs().to_string()))
            .json(serde_json::json!({"error": "this session has as many event streams open as it may"})));
    };
    let feed = Feed {
        receiver: activity.sender.subscribe(),
        own,
        user,
        current,
        store: activity.store.clone(),
        checked: Instant::now(),
        _opened: opened,
    };
    let hello = stream::once(async { Ok(Bytes::from_static(b": session events follow\n\n")) });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // nginx passes the stream on as it comes instead of buffering it.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(hello.chain(stream::unfold(Some(feed), next_chunk))))
}

/// One browser's place in the relay.
struct Feed {
    receiver: broadcast::Receiver<Relayed>,
    /// The reference of the browser's own session.
    own: Arc<str>,
    /// Its user, whose index lists it while it lives.
    user: String,
    current: CurrentSession,
    store: RedisSessionStore,
    /// When the session was last found alive.
    checked: Instant,
    _opened: Opened,
}

impl Feed {
    /// Whether the session still lives: listed in its user's index, which leaves out sessions
    /// past their idle or absolute timeout and keys that are gone. When Redis cannot say (it
    /// is down, or the pool is reconnecting), the stream goes on, relaying nothing meanwhile,
    /// and asks again in a second.
    async fn session_lives(&mut self) -> bool {
        match self.store.sessions_of(&self.user, &self.current).await {
            Ok(sessions) => {
                self.checked = Instant::now();
                sessions.iter().any(|session| session.current)
            }
            Err(err) => {
                tracing::debug!(error = %err.chain(), "event stream: its session could not be checked");
                self.checked = Instant::now()
                    .checked_sub(KEEP_ALIVE - RECHECK)
                    .unwrap_or_else(Instant::now);
                true
            }
        }
    }
}

/// The next piece of a browser's stream; `None` (the feed) once it is to end after this one.
async fn next_chunk(feed: Option<Feed>) -> Option<(Result<Bytes, Infallible>, Option<Feed>)> {
    let mut feed = feed?;
    // A stream busy with others' events is checked as often as an idle one.
    if feed.checked.elapsed() >= KEEP_ALIVE && !feed.session_lives().await {
        return None;
    }
    let until_check = KEEP_ALIVE.saturating_sub(feed.checked.elapsed());
    let chunk = match tokio::time::timeout(until_check, feed.receiver.recv()).await {
        Err(_) => {
            if !feed.session_lives().await {
                return None;
            }
            ": keep-alive\n\n".to_owned()
        }
        Ok(Ok(Relayed::Notice { json, ended, gap })) => {
            let chunk = format!("data: {json}\n\n");
            // After a gap, what was missed may have ended this session.
            if ended.as_ref() == Some(&feed.own) || (gap && !feed.session_lives().await) {
                return Some((Ok(Bytes::from(chunk)), None));
            }
            chunk
        }
        Ok(Err(RecvError::Lagged(missed))) => {
            // What was missed may have ended this session.
            if !feed.session_lives().await {
                return None;
            }
            format!("data: {{\"event\":\"lagged\",\"missed\":{missed}}}\n\n")
        }
        Ok(Ok(Relayed::Closing) | Err(RecvError::Closed)) => return None,
    };
    Some((Ok(Bytes::from(chunk)), Some(feed)))
}
