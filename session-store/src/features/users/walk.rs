//! Walking a user's index a chunk at a time, and reading the sessions it names: what a
//! listing and a revocation of many sessions are made of.

use redis::{FromRedisValue, RedisError, Value};

use super::{UserSession, Users, as_strs};
use crate::{
    backend::batch::Batch,
    error::StoreError,
    session::clock::{at, millis, now_millis},
    session::fields,
    session::key::{self, RedisKey},
    session::seal,
};

/// How many entries of an index one step of a listing or a revocation reads: large enough
/// that a big index takes few round trips, small enough that no one command holds Redis up
/// for long.
const CHUNK: usize = 1_000;

/// How many entries one `ZSCAN` step looks at, looking for a reference.
const SCAN_COUNT: usize = 10_000;

/// Where a walk through an index from its newest entry has got to: the score of the last entry
/// read, the last entries read (the next step reads from that score on, so that entries that
/// share it are never skipped, and leaves out those it read already), and whether it has read
/// them all.
#[derive(Debug, Default)]
pub(super) struct Walk {
    lowest: Option<f64>,
    tail: Vec<String>,
    done: bool,
}

/// How many of the last entries of a step a walk remembers: more than ever share one score (a
/// score is the millisecond a session was created, plus its lifetime).
const TAIL: usize = 64;

impl Users<'_> {
    /// Removes `ended` from `user`'s index, then reads its next [`CHUNK`] entries, newest
    /// first, after those `walk` has read: one round trip. `None` when it has read them all.
    ///
    /// Only the last entry's score is asked for (formatting every score would cost Redis
    /// several times the read itself); the next step reads from that score on, so entries that
    /// share it are never skipped, and leaves out those of this step.
    pub(super) async fn next_newest(
        &self,
        user: &str,
        walk: &mut Walk,
        ended: &[String],
    ) -> Result<Option<Vec<String>>, StoreError> {
        let index = key::user_index(&self.handle.config().key_prefix, user);
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
            self.handle.backend().query(&batch).await?;
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
    pub(super) async fn next_oldest(
        &self,
        user: &str,
        kept: Option<&str>,
        done: &[String],
    ) -> Result<(Vec<String>, bool), StoreError> {
        let index = key::user_index(&self.handle.config().key_prefix, user);
        let asked = CHUNK + usize::from(kept.is_some());
        let mut batch = Batch::new();
        if !done.is_empty() {
            batch.cmd("ZREM").arg(&index).arg(done).ignore();
        }
        batch.cmd("ZRANGE").arg(&index).arg(0).arg(asked - 1);
        let (mut digests,): (Vec<String>,) = self.handle.backend().query(&batch).await?;
        let last = digests.len() < asked;
        digests.retain(|digest| Some(digest.as_str()) != kept);
        Ok((digests, last))
    }

    /// The entries of `user`'s index whose reference is `reference` (one, unless two digests
    /// share their first characters).
    pub(super) async fn find_reference(
        &self,
        user: &str,
        reference: &str,
    ) -> Result<Vec<String>, StoreError> {
        let index = key::user_index(&self.handle.config().key_prefix, user);
        let mut found = Vec::new();
        let mut cursor = 0_u64;
        loop {
            let (next, entries): (u64, Vec<String>) = self
                .handle
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
    pub(super) async fn count_live(&self, digests: &[String]) -> Result<usize, StoreError> {
        if digests.is_empty() {
            return Ok(0);
        }
        let prefix = &self.handle.config().key_prefix;
        let mut exists = redis::cmd("EXISTS");
        for digest in digests {
            exists.arg(RedisKey::from_digest(prefix, digest));
        }
        self.handle.backend().query(&exists).await
    }

    /// The stored user of each session of `digests` (`None` for one that is gone).
    pub(super) async fn owners(
        &self,
        digests: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let prefix = &self.handle.config().key_prefix;
        let field = fields::field_name(self.user_field()?).into_owned();
        let commands: Vec<_> = digests
            .iter()
            .map(|digest| {
                let mut cmd = redis::cmd("HGET");
                cmd.arg(RedisKey::from_digest(prefix, digest)).arg(&field);
                cmd
            })
            .collect();
        let owners = self.handle.backend().query_each(&commands).await?;
        owners
            .into_iter()
            .map(|owner| Ok(parse::<Option<Vec<u8>>>(owner)?.and_then(seal::clear_text)))
            .collect()
    }

    /// Removes `ended` from `user`'s index.
    pub(super) async fn prune(&self, user: &str, ended: &[&str]) -> Result<(), StoreError> {
        if ended.is_empty() {
            return Ok(());
        }
        let index = key::user_index(&self.handle.config().key_prefix, user);
        self.handle
            .backend()
            .query::<()>(redis::cmd("ZREM").arg(index).arg(ended))
            .await
    }

    /// The sessions of `digests`, each if it is live and still `user`'s, or `None` when none
    /// exists: one round trip then (see [`count_live`](Self::count_live)), two otherwise.
    pub(super) async fn inspect_live(
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
    pub(super) async fn inspect(
        &self,
        user: &str,
        digests: &[String],
    ) -> Result<Vec<Option<UserSession>>, StoreError> {
        let config = self.handle.config();
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
        let replies = self.handle.backend().query_each(&commands).await?;
        let mut replies = replies.into_iter();
        let mut sessions = Vec::with_capacity(digests.len());
        for digest in digests {
            let (Some(values), Some(ttl)) = (replies.next(), replies.next()) else {
                break;
            };
            // Nil for a key that holds no hash, as one that is gone.
            let values: Option<Vec<Option<Vec<u8>>>> = parse(values)?;
            let values = values.map(|values| {
                values
                    .into_iter()
                    .map(|value| value.and_then(seal::clear_text))
                    .collect()
            });
            let ttl: Option<i64> = parse(ttl)?;
            sessions.push(self.user_session(user, digest, values.unwrap_or_default(), ttl));
        }
        Ok(sessions)
    }

    /// The session of `digest` as its fields (`values`, as [`inspect`](Self::inspect) reads
    /// them) and expiry show it, if it is live and still `user`'s.
    pub(super) fn user_session(
        &self,
        user: &str,
        digest: &str,
        values: Vec<Option<String>>,
        ttl: Option<i64>,
    ) -> Option<UserSession> {
        let config = self.handle.config();
        let mut values = values.into_iter();
        let created = values
            .next()
            .flatten()
            .and_then(|created| created.parse().ok());
        let owner = values.next().flatten();
        let ttl = u64::try_from(ttl?).ok()?;
        let created = created.filter(|_| owner.as_deref() == Some(user))?;
        if !self.handle.within_lifetime(created) {
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
}

/// One reply of [`Backend::query_each`](crate::backend::Backend::query_each), as a `T`.
fn parse<T: FromRedisValue>(reply: Value) -> Result<T, StoreError> {
    Ok(redis::from_redis_value(reply).map_err(RedisError::from)?)
}
