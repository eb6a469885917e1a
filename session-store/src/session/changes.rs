//! What a request changed in its session: the entries `update` has to write.

use crate::session::fields::SessionState;

/// What a request changed: entries set (new or with a new value) and entries removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes<'a> {
    pub(crate) set: Vec<(&'a str, &'a str)>,
    pub(crate) removed: Vec<&'a str>,
}

impl<'a> Changes<'a> {
    /// The difference from the state as `loaded` to the state as it is `now`.
    pub(crate) fn between(loaded: &'a SessionState, now: &'a SessionState) -> Self {
        let set = now
            .iter()
            .filter(|(name, value)| loaded.get(*name) != Some(*value))
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let removed = loaded
            .keys()
            .filter(|name| !now.contains_key(*name))
            .map(String::as_str)
            .collect();
        Self { set, removed }
    }

    /// Adds the entries of `now` named in `rewrite` that are not set already: entries read in
    /// the other form than the store writes now (in clear though it seals them, or the other
    /// way round), written again by a write that changes anything.
    pub(crate) fn rewrite(&mut self, rewrite: &'a [String], now: &'a SessionState) {
        for name in rewrite {
            if let Some(value) = now.get(name)
                && !self.set.iter().any(|(set, _)| set == name)
            {
                self.set.push((name, value));
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty() && self.removed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(entries: &[(&str, &str)]) -> SessionState {
        entries
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn changes_are_what_was_set_or_removed() {
        let loaded = state(&[("kept", "1"), ("changed", "2"), ("removed", "3")]);
        let now = state(&[("kept", "1"), ("changed", "20"), ("added", "4")]);
        let mut changes = Changes::between(&loaded, &now);
        changes.set.sort_unstable();
        assert_eq!(
            changes,
            Changes {
                set: vec![("added", "4"), ("changed", "20")],
                removed: vec!["removed"],
            }
        );
        assert!(Changes::between(&loaded, &loaded).is_empty());
    }

    #[test]
    fn rewriting_adds_the_entries_still_there_once() {
        let loaded = state(&[("kept", "1"), ("changed", "2"), ("removed", "3")]);
        let now = state(&[("kept", "1"), ("changed", "20")]);
        let rewrite = ["kept", "changed", "removed"].map(str::to_owned);
        let mut changes = Changes::between(&loaded, &now);
        changes.rewrite(&rewrite, &now);
        changes.set.sort_unstable();
        assert_eq!(changes.set, vec![("changed", "20"), ("kept", "1")]);
        assert_eq!(changes.removed, vec!["removed"]);
    }
}
