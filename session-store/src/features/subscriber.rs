//! Subscribing to a store's lifecycle events: a stream that reconnects by itself after Redis
//! restarts or fails over, and says when it may have missed events.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures_util::{Stream, StreamExt as _};
use redis::aio::PubSub;
use tokio::sync::mpsc;

use crate::{
    backend::pool::Pool,
    features::events::SessionEvent,
    features::events::{Publisher, SessionEventKind},
    session::key::RedisKey,
};

/// How long the subscription waits before it connects again after losing Redis.
const RECONNECT_AFTER: Duration = Duration::from_millis(250);

/// Events a slow consumer may leave waiting before newer ones are dropped (and it is told so).
const BACKLOG: usize = 1024;

/// What a [`SessionEvents`] stream hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionNotice {
    /// An event.
    Event(SessionEvent),
    /// The subscription lost Redis and is back: events published meanwhile were missed. A
    /// consumer that keeps state from events should read it afresh.
    Reconnected,
    /// The consumer fell behind by more than the backlog holds: events were dropped.
    Lagged,
}

/// A subscription to a store's lifecycle events; see [`RedisSessionStore::events`](crate::RedisSessionStore::events). Ends only
/// when dropped.
#[derive(Debug)]
pub struct SessionEvents {
    notices: mpsc::Receiver<SessionNotice>,
}

impl Stream for SessionEvents {
    type Item = SessionNotice;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SessionNotice>> {
        self.notices.poll_recv(cx)
    }
}

/// Subscribes to the lifecycle events published under `prefix` on the Redis behind `pool`:
/// see `RedisSessionStore::events`.
pub(crate) fn subscribe(pool: &Pool, prefix: &str) -> SessionEvents {
    let (sender, notices) = mpsc::channel(BACKLOG);
    let relay = Relay {
        sender,
        lagged: Arc::new(AtomicBool::new(false)),
    };
    let prefix = prefix.to_owned();
    let expiring = pool.manager().expiring_nodes();
    for node in 0..expiring {
        let listening = listen_for_expiry(pool.clone(), node, prefix.clone(), relay.clone());
        tokio::spawn(listening);
    }
    tokio::spawn(listen(pool.clone(), prefix, relay, expiring == 0));
    SessionEvents { notices }
}

/// Where the listeners hand their notices: the stream's channel, and whether events were
/// dropped since the consumer was last told so.
#[derive(Clone)]
struct Relay {
    sender: mpsc::Sender<SessionNotice>,
    lagged: Arc<AtomicBool>,
}

impl Relay {
    /// Hands over every event that comes on `pubsub` until the connection ends; `false` once
    /// the consumer is gone.
    async fn all(&self, mut pubsub: PubSub, channel: &str, prefix: &str) -> bool {
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            if let Some(event) = event_of(&message, channel, prefix)
                && !self.event(event)
            {
                return false;
            }
        }
        true
    }

    /// Hands `event` over, or drops it when the consumer is too far behind. `false` once the
    /// consumer is gone.
    fn event(&self, event: SessionEvent) -> bool {
        // The notice goes before the next event that gets through, or that event is dropped
        // too: a consumer that frees room between the two must not see an event after a gap
        // it has not been told of.
        if self.lagged.load(Ordering::Acquire) {
            match self.sender.try_send(SessionNotice::Lagged) {
                Ok(()) => self.lagged.store(false, Ordering::Release),
                Err(mpsc::error::TrySendError::Full(_)) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        match self.sender.try_send(SessionNotice::Event(event)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.lagged.store(true, Ordering::Release);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Listens to the store's channel until the consumer is gone, connecting again whenever Redis
/// goes away; and to the expiry of keys on the same server, when `with_expiry`.
async fn listen(pool: Pool, prefix: String, relay: Relay, with_expiry: bool) {
    let channel = Publisher::channel(&prefix);
    for attempt in 0.. {
        if relay.sender.is_closed() {
            return;
        }
        if let Ok(mut pubsub) = pool.manager().pubsub(attempt).await
            && pubsub.subscribe(&channel).await.is_ok()
        {
            if with_expiry {
                let _ = pubsub.psubscribe(EXPIRED).await;
            }
            if attempt > 0 && relay.sender.send(SessionNotice::Reconnected).await.is_err() {
                return;
            }
            if !relay.all(pubsub, &channel, &prefix).await {
                return;
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// Listens to the expiry of keys on the `node`-th node of a cluster until the consumer is
/// gone, connecting again whenever the node goes away. (A node that is down expires nothing;
/// the channel's listener says when the stream reconnected.)
async fn listen_for_expiry(pool: Pool, node: usize, prefix: String, relay: Relay) {
    let channel = Publisher::channel(&prefix);
    while !relay.sender.is_closed() {
        if let Ok(mut pubsub) = pool.manager().pubsub(node).await
            && pubsub.psubscribe(EXPIRED).await.is_ok()
            && !relay.all(pubsub, &channel, &prefix).await
        {
            return;
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// The keyspace notifications of expired keys, in every database.
const EXPIRED: &str = "__keyevent@*__:expired";

/// The event a message carries: a published event, or an expired session key of ours.
fn event_of(message: &redis::Msg, channel: &str, prefix: &str) -> Option<SessionEvent> {
    let payload: String = message.get_payload().ok()?;
    if message.get_channel_name() == channel {
        return serde_json::from_str(&payload).ok();
    }
    let digest = payload.strip_prefix(prefix)?.strip_prefix("s:")?;
    let key = RedisKey::from_digest(prefix, digest);
    Some(SessionEvent::new(SessionEventKind::Expired, &key, None))
}
