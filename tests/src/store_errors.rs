//! Checks of the errors the store hands to actix-session.

use std::time::Duration;

use actix_session::storage::LoadError;
use session_store::StoreError;

/// Asserts that `err` is the store's command timeout of `timeout`, as actix-session passes
/// it on; `what` says what was expected.
pub fn assert_command_timeout(err: LoadError, timeout: Duration, what: &str) {
    let LoadError::Other(cause) = err else {
        panic!("expected LoadError::Other, got {err:?}");
    };
    assert!(
        matches!(cause.downcast_ref(), Some(StoreError::CommandTimeout(limit)) if *limit == timeout),
        "{what}: {cause:?}"
    );
}
