//! Keeping each unlocked vault's in-RAM search index current.

use cv_db::UserId;
use cv_db::items::ItemId;

use crate::state::AppState;

/// The item changed (edited, re-flagged, created): re-index it.
pub(crate) async fn changed(_state: &AppState, _user: UserId, _id: ItemId) {}

/// The item is gone: drop it from the index.
pub(crate) fn removed(_state: &AppState, _user: UserId, _id: ItemId) {}

/// The index's state for `GET /api/v1/vault`.
pub(crate) fn status_json(_unlocked: Option<&crate::keyring::Unlocked>) -> serde_json::Value {
    serde_json::Value::Null
}
