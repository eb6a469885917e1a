//! Session ids: how they are made and how their shape is checked.

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

/// Whether `id` has the shape of an id that [`generate`] makes.
///
/// The check runs before any Redis call: a cookie that fails it is "no session" and never
/// becomes part of a Redis command.
pub(crate) fn is_well_formed(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(is_id_byte)
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
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

        /// Only id characters: well-formed exactly when there are 43 of them. Lengths are
        /// drawn evenly, so about one case in 87 has the right length; the test below covers
        /// that outcome in quantity.
        #[test]
        fn the_length_decides_for_strings_of_id_characters(id in id_characters()) {
            prop_assert_eq!(is_well_formed(&id), id.len() == ID_LEN);
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

        /// Any string at all never panics, and passes only if it has the shape.
        #[test]
        fn any_string_passes_only_with_the_shape(id in any::<String>()) {
            let shaped = id.len() == ID_LEN && id.bytes().all(is_id_byte);
            prop_assert_eq!(is_well_formed(&id), shaped);
        }
    }
}
