//! Session ids: how they are made, how their shape is checked, and the session key (the
//! cookie's value) that carries one.

use actix_session::storage::SessionKey;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

/// Bytes of CSPRNG output in one session id: 256 bits.
const ID_BYTES: usize = 32;

/// Length of an id: 32 bytes in base64url without padding.
pub(crate) const ID_LEN: usize = 43;

/// A fresh session id: 256 bits from `rand`'s thread-local CSPRNG, in URL-safe characters.
pub(crate) fn generate() -> String {
    let mut bytes = [0u8; ID_BYTES];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Length of the ids of actix-session's own store: 64 alphanumeric characters.
pub(crate) const LEGACY_ID_LEN: usize = 64;

/// A fresh id of actix-session's own store's shape (as its `generate_session_key` makes them:
/// 64 characters from `rand`'s `Alphanumeric`, 381 bits), for a session that old instances
/// must be able to read.
pub(crate) fn generate_legacy() -> String {
    use rand::{RngExt as _, distr::Alphanumeric};
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(LEGACY_ID_LEN)
        .map(char::from)
        .collect()
}

/// Whether `id` has the shape of an id that [`generate`] makes, or of one that actix-session's
/// own store made ([`is_legacy`]): sessions moved from that store keep their ids.
///
/// The check runs before any Redis call: a cookie that fails it is "no session" and never
/// becomes part of a Redis command.
pub(crate) fn is_well_formed(id: &str) -> bool {
    (id.len() == ID_LEN && id.bytes().all(is_id_byte)) || is_legacy(id)
}

/// Whether `id` has the shape of actix-session's own store's ids.
pub(crate) fn is_legacy(id: &str) -> bool {
    id.len() == LEGACY_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Which idle timeout a session slides by: the session key says, so that a load can slide it
/// in the same round trip as it reads the session, before it knows what the session holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleClass {
    /// The store's idle timeout: a session with a user, or any session of a store that names
    /// no user entry. Its key is the bare id.
    Normal,
    /// The anonymous idle timeout: a session without a user, when the store names a user
    /// entry. Its key is the id followed by [`ANONYMOUS_MARK`].
    Anonymous,
}

/// What follows the id in the key of an [anonymous](IdleClass::Anonymous) session.
///
/// The key travels in a cookie that actix-session signs or encrypts, so a client cannot change
/// it; a stale one (a request that raced the login that changed the class) slides the session
/// by the other timeout once, until the next request.
const ANONYMOUS_MARK: &str = ".a";

/// The id in a session key and the idle class it says, or `None` when the key is not of the
/// store's shape (then it must not reach Redis at all).
pub(crate) fn parse(key: &str) -> Option<(&str, IdleClass)> {
    let (id, class) = match key.strip_suffix(ANONYMOUS_MARK) {
        Some(id) => (id, IdleClass::Anonymous),
        None => (key, IdleClass::Normal),
    };
    is_well_formed(id).then_some((id, class))
}

/// The session key of the session with `id` in `class`.
pub(crate) fn session_key(id: &str, class: IdleClass) -> SessionKey {
    let key = match class {
        IdleClass::Normal => id.to_owned(),
        IdleClass::Anonymous => format!("{id}{ANONYMOUS_MARK}"),
    };
    SessionKey::try_from(key).expect("a key of at most 66 bytes is a valid session key")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn generated_ids_are_well_formed_and_distinct() {
        let a = generate();
        let b = generate();
        assert!(is_well_formed(&a), "{a}");
        assert!(is_well_formed(&b), "{b}");
        assert_ne!(a, b);
    }

    #[test]
    fn a_session_key_carries_its_id_and_class() {
        let id = generate();
        for class in [IdleClass::Normal, IdleClass::Anonymous] {
            let key = session_key(&id, class);
            assert_eq!(parse(key.as_ref()), Some((id.as_str(), class)));
        }
        assert_eq!(parse(&format!("{id}.b")), None);
        assert_eq!(parse(&format!("{id}.a.a")), None);
        assert_eq!(parse(".a"), None);
    }

    #[test]
    fn legacy_ids_are_well_formed_and_distinct() {
        let a = generate_legacy();
        assert!(is_legacy(&a) && is_well_formed(&a), "{a}");
        assert_ne!(a, generate_legacy());
        assert!(!is_legacy(&generate()));
        for bad in [
            a[1..].to_owned(),
            format!("{a}b"),
            format!("{}-", &a[1..]),
            format!("{}_", &a[1..]),
        ] {
            assert!(!is_well_formed(&bad), "{bad:?} passed");
        }
    }

    #[test]
    fn rejects_ids_of_other_shapes() {
        let good = generate();
        for bad in [
            String::new(),
            good[1..].to_owned(),
            format!("{good}A"),
            format!("{}*", &good[1..]),
            format!("{}{{", &good[1..]),
            format!("{} ", &good[1..]),
            format!("{}\r", &good[1..]),
            format!("{}\0", &good[1..]),
            format!("{}é", &good[2..]),
        ] {
            assert!(!is_well_formed(&bad), "{bad:?} passed");
        }
    }

    /// Characters that never occur in an id: Redis-special, control, padding, separators and
    /// non-ASCII ones.
    const ODD: &[char] = &[
        '*', '{', '}', '?', '[', ']', ' ', '\r', '\n', '\t', '\0', '%', '+', '/', '=', ':', 'é',
    ];

    /// Strings of id characters only, of any length from 0 to 86: each of the right length
    /// is a real id's shape, every other one a near miss.
    fn id_characters() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[A-Za-z0-9_-]{0,86}").expect("a valid regex")
    }

    /// Real ids (from proptest's bytes, so that a failure shrinks), real ids with one edit of
    /// any character, and any strings, in equal parts.
    fn candidates() -> impl Strategy<Value = String> {
        let real =
            || proptest::array::uniform32(any::<u8>()).prop_map(|b| URL_SAFE_NO_PAD.encode(b));
        let edited = (real(), 0..=ID_LEN, any::<char>(), 0..3u8).prop_map(|(id, at, c, edit)| {
            let mut chars: Vec<char> = id.chars().collect();
            match edit {
                0 => chars[at.min(ID_LEN - 1)] = c,
                1 => chars.insert(at, c),
                _ => drop(chars.remove(at.min(ID_LEN - 1))),
            }
            chars.into_iter().collect::<String>()
        });
        prop_oneof![real(), edited, any::<String>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// A real id passes; the same id with one character swapped for an odd one does not.
        /// Both outcomes occur in every case.
        #[test]
        fn an_id_passes_and_one_odd_character_spoils_it(
            at in 0..ID_LEN,
            odd in proptest::sample::select(ODD),
        ) {
            let id = generate();
            prop_assert!(is_well_formed(&id));
            let mut spoiled: Vec<char> = id.chars().collect();
            spoiled[at] = odd;
            let spoiled: String = spoiled.into_iter().collect();
            prop_assert!(!is_well_formed(&spoiled), "{:?} passed", spoiled);
        }

        /// Only id characters: well-formed exactly when there are 43 of them, or 64 of them
        /// all alphanumeric (a legacy id). Lengths are
        /// drawn evenly, so about one case in 87 has the right length; the test below covers
        /// that outcome in quantity.
        #[test]
        fn the_length_decides_for_strings_of_id_characters(id in id_characters()) {
            let legacy = id.len() == LEGACY_ID_LEN && !id.contains(['-', '_']);
            prop_assert_eq!(is_well_formed(&id), id.len() == ID_LEN || legacy);
        }

        /// 43 characters drawn from id characters with, in about half the cases, one odd
        /// character among them: well-formed exactly when none is odd.
        #[test]
        fn at_the_right_length_one_odd_character_decides(
            id in proptest::string::string_regex("[A-Za-z0-9_-]{43}").expect("a valid regex"),
            spoil in proptest::option::of((0..ID_LEN, proptest::sample::select(ODD))),
        ) {
            let mut chars: Vec<char> = id.chars().collect();
            if let Some((at, odd)) = spoil {
                chars[at] = odd;
            }
            let candidate: String = chars.into_iter().collect();
            prop_assert_eq!(is_well_formed(&candidate), spoil.is_none());
        }

        /// Any string passes exactly when it is 43 characters of the base64url alphabet, or 64
        /// alphanumerics, as spelt out here rather than as the check computes it. A third of the strings are
        /// real ids, a third real ids with one character replaced, added or removed (any
        /// character at all), a third any string: both outcomes occur in quantity.
        #[test]
        fn a_string_passes_exactly_when_it_is_43_base64url_characters(id in candidates()) {
            const ALPHABET: &str =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let shaped = (id.chars().count() == 43 && id.chars().all(|c| ALPHABET.contains(c)))
                || (id.chars().count() == 64 && id.chars().all(|c| c.is_ascii_alphanumeric()));
            prop_assert_eq!(is_well_formed(&id), shaped, "{:?}", id);
        }
    }
}
