//! The index of a user's sessions: one sorted set per user, of the digests of their sessions'
//! ids, scored by the end of each session's absolute lifetime. It lets an application list a
//! user's sessions and revoke them (one, or all but the caller's) in O(entries of that user's
//! index), never with a `KEYS` or `SCAN` of Redis. A login beyond the most sessions a user may
//! hold ends the user's oldest, so an index stays small; one that is big all the same (stale
//! entries of sessions that idled out) is walked a chunk at a time and pruned as it goes.
//!
//! On a cluster the index and a session live in different slots, so no write covers both at
//! once; each is written so that a failure between the two writes heals by itself:
//!
//! - an entry is added before the session it names is written (login), and removed after the
//!   session is deleted (logout, renewal, revocation): what a failure in between leaves is an
//!   entry whose session is gone, and every read of the index checks its sessions and prunes
//!   such entries (and those past their lifetime, by score, on every write);
//! - a session records in its own hash (`\0i`) that it was indexed; a write to a session with
//!   a user that lacks the mark (the add failed) adds the entry again and sets it.
//!
//! So the index never names a session that a read of it would show as live when it is not,
//! and a session missing from it comes back on its next write. Reads of a session never touch
//! the index; writes touch it only when they change the user entry, or to heal.

use std::{collections::BTreeMap, time::SystemTime};

use futures_util::future::try_join_all;
use redis::{FromRedisValue, RedisError, Value};
use serde::Serialize;
use tracing::Level;

use crate::{
    CurrentSession, RedisSessionStore, StoreError,
    backend::batch::Batch,
    features::events::{SessionEvent, SessionEventKind},
    session::clock::{at, millis, now_millis},
    session::fields::{self, SessionState},
    session::key::{self, RedisKey},
    session::scripts,
    telemetry::failure_log,
    telemetry::instruments::{Operation, Outcome},
};

/// The hash field that marks a session as listed in its user's index.
pub(crate) const INDEXED: &str = "\0i";

/// How many entries of an index one step of a listing or a revocation reads: large enough
/// that a big index takes few round trips, small enough that no one command holds Redis up
/// for long.
const CHUNK: usize = 1_000;

/// How many entries one `ZSCAN` step looks at, looking for a reference.
const SCAN_COUNT: usize = 10_000;

/// How many of a user's oldest sessions one login ends, at most, when the user holds more than
/// allowed (what a smaller limit, or a bug, left over is ended by later logins).
const EVICTIONS_PER_LOGIN: usize = 16;

/// Where a walk through an index from its newest entry has got to: the score of the last entry
/// read, the last entries read (the next step reads from that score on, so that entries that
/// share it are never skipped, and leaves out those it read already), and whether it has read
/// them all.
#[derive(Debug, Default)]
struct Walk {
    lowest: Option<f64>,
    tail: Vec<String>,
    done: bool,
}

/// How many of the last entries of a step a walk remembers: more than ever share one score (a
/// score is the millisecond a session was created, plus its lifetime).
const TAIL: usize = 64;

/// One of a user's sessions, as [`RedisSessionStore::sessions_of`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserSession {
    /// The session's reference: what [`revoke`](RedisSessionStore::revoke) takes, and what the
    /// store's logs and events call it. Never the id.
    pub reference: String,
    /// Whether it is the session of the request that asked.
    pub current: bool,
    /// When it was created (its absolute lifetime counts from here).
    pub created: SystemTime,
    /// When it was last used (loaded or written).
    pub last_seen: SystemTime,
    /// When it ends if unused: the idle timeout from its last use, or its absolute lifetime,
    /// whichever comes first.
    pub expires: SystemTime,
    /// The entries the store exposes ([`exposed_entries`](crate::RedisSessionStoreBuilder::exposed_entries)),
    /// by name, as stored (JSON).
    pub entries: BTreeMap<String, String>,
}

impl UserSession {
    /// An exposed entry, deserialized as actix-session's `Session::get` would.
    pub fn entry<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        serde_json::from_str(self.entries.get(name)?).ok()
    }
}

impl RedisSessionStore {
    /// The value of the user entry in `state`, as stored (JSON), when the store names one.
    pub(crate) fn user_in<'a>(&self, state: &'a SessionState) -> Option<&'a str> {
        state
            .get(self.config().user_entry.as_deref()?)
            .map(String::as_str)
    }

    /// Adds the session at `key`, created at `created`, to the index of `user` (stored
    /// value), prunes the entries past their lifetime, and, when the user holds more than
    /// [`max_sessions_per_user`](crate::RedisSessionStoreBuilder::max_sessions_per_user)
    /// sessions, ends the oldest (announced as evicted) and then removes them from the index:
    /// one round trip, and two more at the limit.
    pub(crate) async fn index_add(
        &self,
        user: &str,
        key: &RedisKey,
        created: u64,
    ) -> Result<(), StoreError> {
        let config = self.config();
        let index = key::user_index(&config.key_prefix, user);
        let lifetime = millis(config.absolute_timeout);
        let oldest: Vec<String> = self
            .backend()
            .run_script(&scripts::INDEX_ADD, &index, |cmd| {
                cmd.arg(created.saturating_add(lifetime))
                    .arg(key.digest())
                    .arg(now_millis())
                    // No entry outlives a lifetime (and the clock skew allowed) from now, so
                    // neither need the index.
                    .arg(lifetime.saturating_add(millis(config.clock_skew_tolerance)))
                    .arg(config.max_sessions_per_user)
                    .arg(EVICTIONS_PER_LOGIN);
            })
            .await?;
        if oldest.is_empty() {
            return Ok(());
        }
        let evicted = oldest
            .iter()
            .map(|digest| self.end_users_session(user, digest, SessionEventKind::Evicted));
        try_join_all(evicted).await?;
        self.prune(user, &as_strs(&oldest)).await
    }

    /// Removes the session at `key` from the index of `user` (stored value), once the
    /// session has ended or left the user. A failure here is logged, not returned: the change
    /// it follows has landed (failing the request would answer a logout that took effect with a
    /// `503`), and the entry it leaves is pruned by the index's next read.
    pub(crate) async fn index_remove(&self, user: &str, key: &RedisKey) {
        let index = key::user_index(&self.config().key_prefix, user);
        if let Err(err) = self
            .backend()
            .query::<()>(redis::cmd("ZREM").arg(index).arg(key.digest()))
            .await
        {
            failure_log::log(
                Level::WARN,
                "the user's index keeps an ended session until its next read",
                &err.chain().to_string(),
            );
        }
    }

    /// The sessions of `user` (the value the application keeps in the user entry, as it gave
    /// it to `Session::insert`), oldest first, with `current`'s marked. Ended sessions found
    /// in the index on the way are pruned from it.
    ///
    /// Reads the index newest first, 1,000 entries at a time: per chunk one round trip for
    /// the entries (with the removal of the ended ones found before), one `EXISTS` of their
    /// sessions, and, when some exist, one for their fields (sent together).
    ///
    /// # Errors
    /// [`StoreError::NoUserEntry`] when the store names no user entry, or the error of a
    /// round trip.
    pub async fn sessions_of(
        &self,
        user: &impl Serialize,
        current: &CurrentSession,
    ) -> Result<Vec<UserSession>, StoreError> {
        let user = self.stored_user(user)?;
        let backend = self.backend();
        let listing = backend.within_deadline(async {
            let mut live = Vec::new();
            let mut walk = Walk::default();
            let mut ended = Vec::new();
            let mut chunk = self.next_newest(&user, &mut walk, &[]).await?;
            while let Some(digests) = chunk {
                // The next chunk is read (and the previous one's ended entries pruned) while
                // this one's sessions are checked: two requests in flight, not one.
                let (sessions, next) = futures_util::future::join(
                    self.inspect_live(&user, &digests),
                    self.next_newest(&user, &mut walk, &ended),
                )
                .await;
                ended.clear();
                let Some(sessions) = sessions? else {
                    ended = digests;
                    chunk = next?;
                    continue;
                };
                for (digest, session) in digests.into_iter().zip(sessions) {
                    match session {
                        Some(mut session) => {
                            session.current = current.digest() == Some(digest.as_str());
                            live.push(session);
                        }
                        None => ended.push(digest),
                    }
                }
                chunk = next?;
            }
            self.prune(&user, &as_strs(&ended)).await?;
            live.sort_by(|a, b| (a.created, &a.reference).cmp(&(b.created, &b.reference)));
            // A session read twice, had more than a walk remembers shared one score.
            live.dedup_by(|a, b| a.reference == b.reference);
            Ok(live)
        });
        self.instruments()
            .observe(Operation::Sessions, backend.pool(), listing, |_| {
                Outcome::Ok
            })
            .await
    }

    /// Ends the session of `user` whose reference is `reference`; a request of that session
    /// in flight does not bring it back. Returns whether there was such a session.
    ///
    /// Finds it with `ZSCAN ... MATCH` (Redis filters the index, 10,000 entries per
    /// round trip), then ends it: O(entries in the user's index) on the server, few round trips.
    ///
    /// # Errors
    /// [`StoreError::NoUserEntry`] when the store names no user entry, or the error of a
    /// round trip.
    pub async fn revoke(&self, user: &impl Serialize, reference: &str) -> Result<bool, StoreError> {
        let user = self.stored_user(user)?;
        if !key::is_reference(reference) {
            return Ok(false);
        }
        let backend = self.backend();
        let revoking = backend.within_deadline(async {
            let digests = self.find_reference(&user, reference).await?;
            let ends = digests
                .iter()
                .map(|digest| self.end_users_session(&user, digest, SessionEventKind::Revoked));
            let revoked = try_join_all(ends).await?.into_iter().any(|ended| ended);
            self.prune(&user, &as_strs(&digests)).await?;
            Ok(revoked)
        });
        self.instruments()
            .observe(Operation::Revoke, backend.pool(), revoking, |_| Outcome::Ok)
            .await
    }

    /// Ends every session of `user`, but `except`'s when given (log out everywhere else), and
    /// empties the index of all but that one. Returns how many it ended.
    ///
    /// Works through the index oldest first, 1,000 entries at a time: per chunk one round
    /// trip for the entries, one to see which are still `user`'s sessions (sent together), one
    /// to end those (each a script, sent together), one to remove the chunk from the index.
    ///
    /// # Errors
    /// [`StoreError::NoUserEntry`] when the store names no user entry, or the error of a
    /// round trip.
    pub async fn revoke_all(
        &self,
        user: &impl Serialize,
        except: Option<&CurrentSession>,
    ) -> Result<usize, StoreError> {
        let user = self.stored_user(user)?;
        let kept = except.and_then(CurrentSession::digest);
        let backend = self.backend();
        let revoking = backend.within_deadline(async {
            let mut revoked = 0;
            let mut done: Vec<String> = Vec::new();
            loop {
                let (digests, last) = self.next_oldest(&user, kept, &done).await?;
                if digests.is_empty() {
                    return Ok(revoked);
                }
                let owners = if self.count_live(&digests).await? == 0 {
                    Vec::new()
                } else {
                    self.owners(&digests).await?
                };
                let ends = digests
                    .iter()
                    .zip(owners)
                    .filter(|(_, owner)| owner.as_deref() == Some(user.as_str()))
                    .map(|(digest, _)| {
                        self.end_users_session(&user, digest, SessionEventKind::Revoked)
                    });
                revoked += try_join_all(ends).await?.into_iter().filter(|e| *e).count();
                if last {
                    self.prune(&user, &as_strs(&digests)).await?;
                    return Ok(revoked);
                }
                done = digests;
            }
        });
        self.instruments()
            .observe(Operation::Revoke, backend.pool(), revoking, |_| Outcome::Ok)
            .await
    }

    /// Deletes the session of `digest` if it still belongs to `user`, atomically (a script),
    /// publishing its end as `kind` when the store publishes events. Whether it ended it.
    async fn end_users_session(
        &self,
        user: &str,
        digest: &str,
        kind: SessionEventKind,
    ) -> Result<bool, StoreError> {
        let config = self.config();
        let key = RedisKey::from_digest(&config.key_prefix, digest);
        let field = fields::field_name(self.user_field()?).into_owned();
        let event = SessionEvent::new(kind, &key, Some(user));
        let publish = self
            .publisher()
            .map(|publisher| (publisher.channel.clone(), publisher.message(event)));
        let ended: bool = self
            .backend()
            .run_script(&scripts::REVOKE, &key, |cmd| {
                cmd.arg(&field).arg(user);
                if let Some((channel, message)) = &publish {
                    cmd.arg(channel).arg(message);
                }
            })
            .await?;
        if ended {
            match kind {
                SessionEventKind::Evicted => crate::telemetry::log::evicted(&key),
                _ => crate::telemetry::log::revoked(&key),
            }
        }
        Ok(ended)
    }

    /// Removes `ended` from `user`'s index, then reads its next [`CHUNK`] entries, newest
    /// first, after those `walk` has read: one round trip. `None` when it has read them all.
    ///
    /// Only the last entry's score is asked for (formatting every score would cost Redis
    /// several times the read itself); the next step reads from that score on, so entries that
    /// share it are never skipped, and leaves out those of this step.
    async fn next_newest(
        &self,
        user: &str,
        walk: &mut Walk,
        ended: &[String],
    ) -> Result<Option<Vec<String>>, StoreError> {
        let index = key::user_index(&self.config().key_prefix, user);
        if walk.done {
            self.prune(user, &as_strs(ended)).await?;
            return Ok(None);
        }
        let from = walk
            .lowest
            .map_or_else(|| "+inf".to_owned(), |score| score.to_string());
        let mut batch = Batch::new();
        if !ended.is_empty() {
            batch.cmd("ZREM").arg(&index).arg(ended).ignore();
        }
        for (offset, count, scores) in [(0, CHUNK, None), (CHUNK - 1, 1, Some("WITHSCORES"))] {
            batch
                .cmd("ZRANGE")
                .arg(&index)
                .arg(&from)
                .arg("-inf")
                .arg("BYSCORE")
                .arg("REV")
                .arg("LIMIT")
                .arg(offset)
                .arg(count)
                .arg(scores);
        }
        let (mut entries, last): (Vec<String>, Vec<(String, f64)>) =
            self.backend().query(&batch).await?;
        walk.done = entries.len() < CHUNK;
        // Those read with the lowest score last time come first again.
        let seen = entries
            .iter()
            .take_while(|digest| walk.tail.contains(digest))
            .count();
        let fresh = entries.split_off(seen);
        if fresh.is_empty() {
            return Ok(None);
        }
        walk.lowest = last.first().map(|(_, score)| *score);
        walk.tail = fresh[fresh.len().saturating_sub(TAIL)..].to_vec();
        Ok(Some(fresh))
    }

    /// Removes `done` from `user`'s index, then reads its oldest [`CHUNK`] entries but `kept`,
    /// and whether they are the last: one round trip.
    async fn next_oldest(
        &self,
        user: &str,
        kept: Option<&str>,
        done: &[String],
    ) -> Result<(Vec<String>, bool), StoreError> {
        let index = key::user_index(&self.config().key_prefix, user);
        let asked = CHUNK + usize::from(kept.is_some());
        let mut batch = Batch::new();
        if !done.is_empty() {
            batch.cmd("ZREM").arg(&index).arg(done).ignore();
        }
        batch.cmd("ZRANGE").arg(&index).arg(0).arg(asked - 1);
        let (mut digests,): (Vec<String>,) = self.backend().query(&batch).await?;
        let last = digests.len() < asked;
        digests.retain(|digest| Some(digest.as_str()) != kept);
        Ok((digests, last))
    }

    /// The entries of `user`'s index whose reference is `reference` (one, unless two digests
    /// share their first characters).
    async fn find_reference(&self, user: &str, reference: &str) -> Result<Vec<String>, StoreError> {
        let index = key::user_index(&self.config().key_prefix, user);
        let mut found = Vec::new();
        let mut cursor = 0_u64;
        loop {
            let (next, entries): (u64, Vec<String>) = self
                .backend()
                .query(
                    redis::cmd("ZSCAN")
                        .arg(&index)
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{reference}*"))
                        .arg("COUNT")
                        .arg(SCAN_COUNT),
                )
                .await?;
            // Members and scores, alternately.
            found.extend(entries.into_iter().step_by(2));
            if next == 0 {
                found.sort();
                found.dedup();
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// How many of the sessions of `digests` exist: one `EXISTS` of them all, so that a chunk
    /// of ended sessions (all that a big index holds, as a rule) costs one command, not one
    /// per session. (On a cluster redis-rs splits it by slot.)
    async fn count_live(&self, digests: &[String]) -> Result<usize, StoreError> {
        if digests.is_empty() {
            return Ok(0);
        }
        let prefix = &self.config().key_prefix;
        let mut exists = redis::cmd("EXISTS");
        for digest in digests {
            exists.arg(RedisKey::from_digest(prefix, digest));
        }
        self.backend().query(&exists).await
    }

    /// The stored user of each session of `digests` (`None` for one that is gone).
    async fn owners(&self, digests: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        let prefix = &self.config().key_prefix;
        let field = fields::field_name(self.user_field()?).into_owned();
        let commands: Vec<_> = digests
            .iter()
            .map(|digest| {
                let mut cmd = redis::cmd("HGET");
                cmd.arg(RedisKey::from_digest(prefix, digest)).arg(&field);
                cmd
            })
            .collect();
        let owners = self.backend().query_each(&commands).await?;
        owners.into_iter().map(parse).collect()
    }

    /// Removes `ended` from `user`'s index.
    async fn prune(&self, user: &str, ended: &[&str]) -> Result<(), StoreError> {
        if ended.is_empty() {
            return Ok(());
        }
        let index = key::user_index(&self.config().key_prefix, user);
        self.backend()
            .query::<()>(redis::cmd("ZREM").arg(index).arg(ended))
            .await
    }

    /// The sessions of `digests`, each if it is live and still `user`'s, or `None` when none
    /// exists: one round trip then (see [`count_live`](Self::count_live)), two otherwise.
    async fn inspect_live(
        &self,
        user: &str,
        digests: &[String],
    ) -> Result<Option<Vec<Option<UserSession>>>, StoreError> {
        if self.count_live(digests).await? == 0 {
            return Ok(None);
        }
        self.inspect(user, digests).await.map(Some)
    }

    /// The sessions of `digests`, each if it is live and still `user`'s: one round trip for
    /// all.
    async fn inspect(
        &self,
        user: &str,
        digests: &[String],
    ) -> Result<Vec<Option<UserSession>>, StoreError> {
        let config = self.config();
        let mut fields = vec![
            fields::CREATED.to_owned(),
            fields::field_name(self.user_field()?).into_owned(),
        ];
        fields.extend(
            config
                .exposed_entries
                .iter()
                .map(|name| fields::field_name(name).into_owned()),
        );
        let mut commands = Vec::with_capacity(2 * digests.len());
        for digest in digests {
            let key = RedisKey::from_digest(&config.key_prefix, digest);
            let mut read = redis::cmd("HMGET");
            read.arg(&key).arg(&fields);
            let mut ttl = redis::cmd("PTTL");
            ttl.arg(&key);
            commands.extend([read, ttl]);
        }
        let replies = self.backend().query_each(&commands).await?;
        let mut replies = replies.into_iter();
        let mut sessions = Vec::with_capacity(digests.len());
        for digest in digests {
            let (Some(values), Some(ttl)) = (replies.next(), replies.next()) else {
                break;
            };
            // Nil for a key that holds no hash, as one that is gone.
            let values: Option<Vec<Option<String>>> = parse(values)?;
            let ttl: Option<i64> = parse(ttl)?;
            sessions.push(self.user_session(user, digest, values.unwrap_or_default(), ttl));
        }
        Ok(sessions)
    }

    /// The session of `digest` as its fields (`values`, as [`inspect`](Self::inspect) reads
    /// them) and expiry show it, if it is live and still `user`'s.
    fn user_session(
        &self,
        user: &str,
        digest: &str,
        values: Vec<Option<String>>,
        ttl: Option<i64>,
    ) -> Option<UserSession> {
        let config = self.config();
        let mut values = values.into_iter();
        let created = values
            .next()
            .flatten()
            .and_then(|created| created.parse().ok());
        let owner = values.next().flatten();
        let ttl = u64::try_from(ttl?).ok()?;
        let created = created.filter(|_| owner.as_deref() == Some(user))?;
        if !self.within_lifetime(created) {
            return None;
        }
        let entries = config
            .exposed_entries
            .iter()
            .zip(values)
            .filter_map(|(name, value)| Some((name.clone(), value?)))
            .collect();
        let now = now_millis();
        let idle = millis(config.idle_timeout);
        let end_of_life = created.saturating_add(millis(config.absolute_timeout));
        let key = RedisKey::from_digest(&config.key_prefix, digest);
        Some(UserSession {
            reference: key.reference().to_owned(),
            current: false,
            created: at(created),
            last_seen: at(now.saturating_sub(idle.saturating_sub(ttl))),
            expires: at(now.saturating_add(ttl).min(end_of_life)),
            entries,
        })
    }

    /// The name of the user entry.
    fn user_field(&self) -> Result<&str, StoreError> {
        self.config()
            .user_entry
            .as_deref()
            .ok_or(StoreError::NoUserEntry)
    }

    /// `user` as the user entry stores it (JSON, as actix-session serializes it).
    fn stored_user(&self, user: &impl Serialize) -> Result<String, StoreError> {
        self.user_field()?;
        serde_json::to_string(user).map_err(StoreError::InvalidUser)
    }
}

/// `strings` borrowed.
fn as_strs(strings: &[String]) -> Vec<&str> {
    strings.iter().map(String::as_str).collect()
}

/// One reply of [`Backend::query_each`](crate::backend::Backend::query_each), as a `T`.
fn parse<T: FromRedisValue>(reply: Value) -> Result<T, StoreError> {
    Ok(redis::from_redis_value(reply).map_err(RedisError::from)?)
}
