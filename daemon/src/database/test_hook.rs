//! Pauses inside a rotation, for the tests that kill the server between its
//! steps. `COFFER_TEST_PAUSE_ROTATION=after-pending` (a root rotation's new
//! password is stored, the database not yet changed), `after-database` (the
//! database is changed, the new password not yet stored as the current one)
//! or `after-static` (a static role's password changed in the database, not
//! yet stored) makes the rotation sleep there for a minute; unset, these do
//! nothing.

use std::time::Duration;

async fn pause_at(step: &str) {
    if std::env::var("COFFER_TEST_PAUSE_ROTATION").is_ok_and(|wanted| wanted == step) {
        tracing::warn!(step, "COFFER_TEST_PAUSE_ROTATION: pausing a rotation");
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// After the pending password is stored, before the database changes.
pub async fn after_pending_stored() {
    pause_at("after-pending").await;
}

/// After the database changed, before the new password is stored as current.
pub async fn after_database_changed() {
    pause_at("after-database").await;
}

/// After a static role's password changed in the database, before it is stored.
pub async fn after_static_changed() {
    pause_at("after-static").await;
}
