//! Subscribing to a store's lifecycle events: a stream that reconnects by itself after Redis
//! restarts or fails over, and says when it may have missed events.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::{Stream, StreamExt as _};
use tokio::sync::mpsc;

use crate::{
    RedisSessionStore, SessionEvent,
    key::RedisKey,
    lifecycle::{Publisher, SessionEventKind},
    pool::Pool,
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

/// A subscription to a store's lifecycle events; see [`RedisSessionStore::events`]. Ends only
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

impl RedisSessionStore {
    /// Subscribes to the lifecycle events that stores on this Redis with this key prefix
    /// publish ([`publish_events`](crate::RedisSessionStoreBuilder::publish_events)), from
    /// every instance. The subscription runs on a task of its own, reconnects after a Redis
    /// restart or failover (and says so), and ends when the stream is dropped.
    ///
    /// When the server sends keyspace notifications for expired keys
    /// (`notify-keyspace-events` with `Ex`; the store never sets it), idle sessions that Redis
    /// expires come as [`SessionEventKind::Expired`]. On a cluster those come only from the
    /// node the subscription listens on.
    ///
    /// Must be called within a tokio runtime.
    pub fn events(&self) -> SessionEvents {
        let (sender, notices) = mpsc::channel(BACKLOG);
        let prefix = self.config().key_prefix.clone();
        tokio::spawn(listen(self.pool().clone(), prefix, sender));
        SessionEvents { notices }
    }
}

/// Listens until the consumer is gone, connecting again whenever Redis goes away.
async fn listen(pool: Pool, prefix: String, sender: mpsc::Sender<SessionNotice>) {
    let channel = Publisher::channel(&prefix);
    let mut lagged = false;
    for attempt in 0.. {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut pubsub) = pool.manager().pubsub(attempt).await
            && pubsub.subscribe(&channel).await.is_ok()
        {
            let _ = pubsub.psubscribe("__keyevent@*__:expired").await;
            if attempt > 0 && sender.send(SessionNotice::Reconnected).await.is_err() {
                return;
            }
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Some(event) = event_of(&message, &channel, &prefix) else {
                    continue;
                };
                // The notice goes before the next event that gets through, or that event is
                // dropped too: a consumer that frees room between the two must not see an
                // event after a gap it has not been told of.
                if lagged {
                    match sender.try_send(SessionNotice::Lagged) {
                        Ok(()) => lagged = false,
                        Err(mpsc::error::TrySendError::Full(_)) => continue,
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                match sender.try_send(SessionNotice::Event(event)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => lagged = true,
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

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
