//! How actix-session's state maps onto the fields of a session's Redis hash.
//!
//! Each entry is one field: its name as the application wrote it, its value as actix-session
//! hands it over (JSON text), sealed or in clear (see [`seal`](super::seal)). Metadata fields are a NUL byte followed by a
//! letter (`\0c`: created, in milliseconds since the epoch). An entry whose name starts with NUL
//! is stored with one more NUL in front, so no entry name can collide with a metadata field.

use std::{borrow::Cow, collections::HashMap};

use crate::session::seal::Seal;

/// Session state as actix-session passes it around.
pub(crate) type SessionState = HashMap<String, String>;

/// The hash field that holds the entry `name`.
pub(crate) fn field_name(name: &str) -> Cow<'_, str> {
    if name.starts_with('\0') {
        Cow::Owned(format!("\0{name}"))
    } else {
        Cow::Borrowed(name)
    }
}

/// The entry name stored in `field`, or `None` when `field` is metadata.
fn entry_name(mut field: String) -> Option<String> {
    match field.as_bytes() {
        [0, 0, ..] => {
            field.remove(0);
            Some(field)
        }
        [0, ..] => None,
        _ => Some(field),
    }
}

/// The field that holds a session's creation time.
pub(crate) const CREATED: &str = "\0c";

/// The field that marks a session moved from actix-session's own store whose old key may still
/// be there: it holds when the move began, in milliseconds since the epoch (see
/// `store/legacy.rs`).
pub(crate) const MIGRATING: &str = "\0m";

/// A session as stored: its entries and when it was created.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) state: SessionState,
    /// Milliseconds since the epoch; `None` when the hash lacks it (so it is no session of ours).
    pub(crate) created: Option<u64>,
    /// When its move from actix-session's own store began, while that move is unfinished.
    pub(crate) migrating: Option<u64>,
    /// The entries stored in the other form than the store writes now (sealed or in clear):
    /// the next write writes them again.
    pub(crate) rewrite: Vec<String>,
}

/// Rebuilds a session from its hash's fields and values, or `None` when a field is not UTF-8
/// or a value does not open with `seal`: no session state of actix-session's.
pub(crate) fn decode(fields: Vec<(Vec<u8>, Vec<u8>)>, seal: &Seal<'_>) -> Option<Stored> {
    let mut stored = Stored {
        state: SessionState::with_capacity(fields.len()),
        created: None,
        migrating: None,
        rewrite: Vec::new(),
    };
    for (field, value) in fields {
        let field = String::from_utf8(field).ok()?;
        if field == CREATED {
            stored.created = metadata(value);
        } else if field == MIGRATING {
            stored.migrating = metadata(value);
        } else if let Some(name) = entry_name(field) {
            let opened = seal.open(&name, value)?;
            if opened.rewrite {
                stored.rewrite.push(name.clone());
            }
            stored.state.insert(name, opened.value);
        }
    }
    Some(stored)
}

/// A metadata field's number.
fn metadata(value: Vec<u8>) -> Option<u64> {
    std::str::from_utf8(&value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Config,
        session::{key::RedisKey, seal::OpenedValues},
    };

    /// Decodes with sealing as a default store has it, for a session "id".
    fn decode(fields: Vec<(Vec<u8>, Vec<u8>)>) -> Option<Stored> {
        let config = Config::default();
        let key = RedisKey::for_id("test:", "id");
        super::decode(
            fields,
            &Seal::new(&config, &OpenedValues::new(), "id", &key),
        )
    }

    fn stored(state: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut fields: Vec<_> = state
            .iter()
            .map(|(name, value)| {
                (
                    field_name(name).as_bytes().to_vec(),
                    value.as_bytes().to_vec(),
                )
            })
            .collect();
        fields.push((b"\0c".to_vec(), b"1700000000000".to_vec()));
        fields
    }

    #[test]
    fn entries_round_trip_and_metadata_stays_out() {
        let entries = [
            ("user", "\"alice\""),
            ("", "1"),
            ("\0c", "2"),
            ("\0", "3"),
            ("\0\0s", "4"),
        ];
        let stored_session = decode(stored(&entries)).expect("valid state");
        assert_eq!(stored_session.created, Some(1_700_000_000_000));
        let state = stored_session.state;
        let expected: SessionState = entries
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(state, expected);
    }

    #[test]
    fn names_starting_with_nul_never_look_like_metadata() {
        assert_eq!(field_name("\0c"), "\0\0c");
        assert_eq!(field_name("c"), "c");
        assert_eq!(entry_name("\0c".to_owned()), None);
    }

    #[test]
    fn invalid_utf8_is_no_state() {
        let fields = vec![(b"user".to_vec(), vec![0xff, 0xfe])];
        assert_eq!(decode(fields), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2_000))]

        /// Whatever names and values an application uses, the state reads back as written and
        /// the creation time is never taken from, or lost to, an entry.
        #[test]
        fn any_state_round_trips(
            entries in proptest::collection::hash_map("(\\x00{0,3})\\PC{0,6}", "\\PC{0,12}", 0..12),
            created in proptest::arbitrary::any::<u64>(),
        ) {
            let mut fields: Vec<_> = entries
                .iter()
                .map(|(name, value)| (field_name(name).as_bytes().to_vec(), value.as_bytes().to_vec()))
                .collect();
            fields.push((CREATED.as_bytes().to_vec(), created.to_string().into_bytes()));
            let decoded = decode(fields).expect("valid UTF-8");
            proptest::prop_assert_eq!(decoded.created, Some(created));
            proptest::prop_assert_eq!(decoded.state, entries);
        }

        /// Whatever fields a hash holds, metadata-shaped ones (a NUL, then anything but a NUL)
        /// never become entries, every other field does, and the creation time is read from
        /// `\0c` alone.
        #[test]
        fn any_hash_decodes_to_its_entries(
            fields in proptest::collection::hash_map("\\x00{0,2}[c\\x00a-]{0,3}", "[0-9]{0,4}|x", 0..10),
        ) {
            let stored = decode(
                fields
                    .iter()
                    .map(|(f, v)| (f.as_bytes().to_vec(), v.as_bytes().to_vec()))
                    .collect(),
            )
            .expect("valid UTF-8");
            let is_metadata = |field: &str| matches!(field.as_bytes(), [0, b, ..] if *b != 0) || field == "\0";
            let entries: SessionState = fields
                .iter()
                .filter(|(field, _)| !is_metadata(field))
                .map(|(field, value)| (entry_name(field.clone()).expect("an entry"), value.clone()))
                .collect();
            proptest::prop_assert_eq!(stored.state, entries);
            proptest::prop_assert_eq!(stored.created, fields.get(CREATED).and_then(|v| v.parse().ok()));
        }

        /// Arbitrary bytes out of Redis never panic: they decode, or are corrupt state; text
        /// that is no sealed value (JSON never starts with a NUL) always decodes.
        #[test]
        fn any_bytes_decode_or_are_refused(
            fields in proptest::collection::vec(
                (proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..8),
                 proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..8)),
                0..8,
            ),
        ) {
            let all_text = fields.iter().all(|(f, v)| {
                std::str::from_utf8(f).is_ok() && std::str::from_utf8(v).is_ok() && v.first() != Some(&0)
            });
            let decoded = decode(fields);
            if all_text {
                proptest::prop_assert!(decoded.is_some());
            }
        }
    }
}
