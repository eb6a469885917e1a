//! The live activity panel: one subscription per instance to the store's lifecycle events
//! (`store.events()`, Redis pub/sub), each event logged as it comes and relayed to the
//! signed-in browsers connected to `GET /api/events` as server-sent events. The home page's
//! script turns them into lines like "alice logged in on :8082".
//!
//! In this demo every signed-in user sees everyone's logins and logouts, which the page says;
//! a real application would show each user their own at most.

use std::{convert::Infallible, sync::Arc, time::Duration};

use actix_session::Session;
use actix_web::{HttpResponse, http::header, web, web::Bytes};
use futures_util::{StreamExt as _, stream};
use session_store::{
    CurrentSession, RedisSessionStore, SessionEvent, SessionEventKind, SessionNotice,
};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::{state::AppState, user};

/// Notices a browser's stream may fall behind by before it misses some (and is told so).
const BACKLOG: usize = 256;

/// How often an idle stream sends a comment line, so that a proxy's read timeout (nginx's is
/// 60 s) does not cut it and a browser that went away is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The relay from this instance's subscription to the browsers' streams.
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    sender: broadcast::Sender<Relayed>,
}

/// What the relay hands to every stream.
#[derive(Debug, Clone)]
enum Relayed {
    /// A notice, as the JSON of an SSE `data:` line, and the reference of the session it
    /// ended, if it ended one.
    Notice {
        json: Arc<str>,
        ended: Option<Arc<str>>,
    },
    /// The instance is stopping: the streams end, so that its graceful stop need not wait for
    /// them.
    Closing,
}

impl Activity {
    /// Subscribes to `store`'s events and relays them, from a task on the current (actix)
    /// runtime, for as long as the instance runs. Once per instance: the subscription holds
    /// a Redis connection of its own, and it reconnects by itself after losing Redis.
    pub(crate) fn start(store: &RedisSessionStore) -> Self {
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
        Self { sender }
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
    let (json, ended) = match notice {
        SessionNotice::Event(event) => (serde_json::to_string(event).ok()?, ended(event)),
        SessionNotice::Reconnected => (r#"{"event":"reconnected"}"#.to_owned(), None),
        SessionNotice::Lagged => (r#"{"event":"lagged"}"#.to_owned(), None),
        _ => return None,
    };
    Some(Relayed::Notice {
        json: json.into(),
        ended,
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

/// `GET /api/events`: the relayed events as server-sent events, for signed-in visitors. A
/// stream ends after the event that ends its own session (a logout, a revocation), so that a
/// browser's reconnection is refused from then on.
async fn events(
    state: web::Data<AppState>,
    session: Session,
    current: CurrentSession,
) -> actix_web::Result<HttpResponse> {
    if user::current(&session)?.is_none() {
        return Ok(HttpResponse::Unauthorized().json(serde_json::json!({"error": "not signed in"})));
    }
    let feed = Feed {
        receiver: state.activity.sender.subscribe(),
        own: current.reference().map(Arc::from),
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
    own: Option<Arc<str>>,
}

/// The next piece of a browser's stream; `None` (the feed) once it is to end after this one.
async fn next_chunk(feed: Option<Feed>) -> Option<(Result<Bytes, Infallible>, Option<Feed>)> {
    let mut feed = feed?;
    let chunk = match tokio::time::timeout(KEEP_ALIVE, feed.receiver.recv()).await {
        Err(_) => ": keep-alive\n\n".to_owned(),
        Ok(Ok(Relayed::Notice { json, ended })) => {
            let chunk = format!("data: {json}\n\n");
            if ended.is_some() && ended == feed.own {
                return Some((Ok(Bytes::from(chunk)), None));
            }
            chunk
        }
        Ok(Err(RecvError::Lagged(missed))) => {
            format!("data: {{\"event\":\"lagged\",\"missed\":{missed}}}\n\n")
        }
        Ok(Ok(Relayed::Closing) | Err(RecvError::Closed)) => return None,
    };
    Some((Ok(Bytes::from(chunk)), Some(feed)))
}
