//! Session ids: how they are made, how their shape is checked, and which Redis key holds them.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest as _, Sha256};

/// Bytes of CSPRNG output in one session id: 256 bits.
const ID_BYTES: usize = 32;

/// Length of an id: 32 bytes in base64url without padding.
const ID_LEN: usize = 43;

/// A fresh session id: 256 bits from `rand`'s thread-local CSPRNG, in URL-safe characters.
pub(crate) fn generate() -> String {
    let mut bytes = [0u8; ID_BYTES];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `id` has the shape of an id that [`generate`] makes.
///
/// The check runs before any Redis call: a cookie that fails it is "no session" and never
/// becomes part of a Redis command.
pub(crate) fn is_well_formed(id: &str) -> bool {
    id.len() == ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The Redis key of the session with this id: `{prefix}s:{base64url(sha256(id))}`.
///
/// Only the hash reaches Redis, so a key listing, a dump or the slow log hands nobody a cookie.
pub(crate) fn redis_key(prefix: &str, id: &str) -> String {
    let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(id.as_bytes()));
    let mut key = String::with_capacity(prefix.len() + 2 + digest.len());
    key.push_str(prefix);
    key.push_str("s:");
    key.push_str(&digest);
    key
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn redis_key_hides_the_id() {
        let id = generate();
        let key = redis_key("app:", &id);
        assert!(key.starts_with("app:s:"));
        assert!(!key.contains(&id));
        assert_eq!(key, redis_key("app:", &id));
        assert_eq!(key.len(), "app:s:".len() + 43);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(10_000))]

        /// Any string at all: well-formed exactly when it has 43 base64url characters.
        #[test]
        fn only_43_base64url_characters_pass(id in proptest::arbitrary::any::<String>()) {
            let expected = id.len() == 43
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            proptest::prop_assert_eq!(is_well_formed(&id), expected);
        }

        /// A real id with one character swapped for a Redis-special, control, padding or
        /// non-ASCII one is refused; the id itself passes, and its key hides it.
        #[test]
        fn one_odd_character_spoils_an_id(
            at in 0..ID_LEN,
            odd in proptest::sample::select(
                &['*', '{', '}', '?', '[', ']', ' ', '\r', '\n', '\t', '\0', '%', '+', '/', '=', ':', 'é'][..],
            ),
        ) {
            let id = generate();
            proptest::prop_assert!(is_well_formed(&id));
            let key = redis_key("session:", &id);
            proptest::prop_assert!(!key.contains(&id));
            let mut spoiled: Vec<char> = id.chars().collect();
            spoiled[at] = odd;
            let spoiled: String = spoiled.into_iter().collect();
            proptest::prop_assert!(!is_well_formed(&spoiled), "{:?} passed", spoiled);
        }
    }
}
