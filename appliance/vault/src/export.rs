//! Export and import: the vault as plain documents (`cv_archive`), and back.
//!
//! Export decrypts every version of every item, a page at a time. Import encrypts each
//! version afresh under a new data key, bound to the importing owner, and stores
//! everything in one transaction: a failed import leaves nothing behind.

use std::collections::HashMap;

use cv_archive::{ExportItem, ExportTask, ExportVersion};
use cv_crypto::vault::{DataKey, UnlockedVault};
use cv_db::UserId;
use cv_db::items::{self, ItemId, RestoredItem, StoredVersion};
use diesel_async::AsyncPgConnection;
use zeroize::Zeroizing;

use crate::{
    Priority, Task, TaskStatus, VaultError, binding, clean_tags, clean_text, data_key,
    open_content, seal_content,
};

/// One page of the owner's items, after `after`, as export documents. Items that fail
/// their integrity check are returned by id in the second list, never as garbage.
pub async fn page(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    vault: &UnlockedVault,
    after: Option<ItemId>,
    limit: i64,
) -> Result<(Vec<ExportItem>, Vec<ItemId>), VaultError> {
    let stored = items::page(conn, owner, after, limit).await?;
    let ids: Vec<uuid::Uuid> = stored.iter().map(|i| i.id.0).collect();
    let mut versions: HashMap<ItemId, Vec<StoredVersion>> = HashMap::new();
    for (id, v) in items::versions_for(conn, owner, &ids).await? {
        versions.entry(id).or_default().push(v);
    }
    let mut out = Vec::with_capacity(stored.len());
    let mut tampered = Vec::new();
    for item in &stored {
        let Ok(key) = data_key(item, vault) else {
            tampered.push(item.id);
            continue;
        };
        let mut exported = Vec::new();
        let mut ok = true;
        for v in versions.remove(&item.id).unwrap_or_default() {
            match open_content(&key, item.id, v.version, owner, &v.content) {
                Ok(mut content) => exported.push(ExportVersion {
                    version: v.version,
                    created_at: v.created_at,
                    text: Zeroizing::new(std::mem::take(&mut content.text)),
                    tags: std::mem::take(&mut content.tags),
                    task: content.task.take().map(|t| ExportTask {
                        status: t.status.as_str().to_owned(),
                        priority: t.priority.as_str().to_owned(),
                        due: t.due,
                    }),
                }),
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if ok && !exported.is_empty() {
            out.push(ExportItem {
                id: item.id.0,
                created_at: item.created_at,
                updated_at: item.updated_at,
                pinned: item.pinned,
                archived: item.archived,
                versions: exported,
            });
        } else {
            tampered.push(item.id);
        }
    }
    Ok((out, tampered))
}

/// Encrypts imported items for `owner` (off the async workers: it is CPU work). Ids are
/// kept; `fresh_ids` gives every item a new one (when the archive's ids are taken on
/// this appliance, e.g. an export imported into another account).
pub fn seal_import(
    owner: UserId,
    vault: &UnlockedVault,
    items: &[ExportItem],
    fresh_ids: bool,
) -> Result<Vec<RestoredItem>, VaultError> {
    items
        .iter()
        .map(|item| {
            let id = ItemId(if fresh_ids {
                uuid::Uuid::new_v4()
            } else {
                item.id
            });
            let key = DataKey::generate();
            let versions = item
                .versions
                .iter()
                .map(|v| {
                    let what = |e: String| VaultError::Import(format!("item {}: {e}", item.id));
                    let text = clean_text(&v.text).map_err(|e| what(e.to_string()))?;
                    let tags = clean_tags(&v.tags).map_err(|e| what(e.to_string()))?;
                    let task = v
                        .task
                        .as_ref()
                        .map(|t| -> Result<Task, VaultError> {
                            Ok(Task {
                                status: t.status.parse::<TaskStatus>().map_err(&what)?,
                                priority: t.priority.parse::<Priority>().map_err(&what)?,
                                due: t.due,
                            })
                        })
                        .transpose()?;
                    Ok(StoredVersion {
                        version: v.version,
                        content: seal_content(&key, id, v.version, owner, text, tags, task)?,
                        created_at: v.created_at,
                    })
                })
                .collect::<Result<Vec<_>, VaultError>>()?;
            Ok(RestoredItem {
                id,
                key: vault.wrap_data_key(&key, &binding(id, 1, owner).data_key_binding()),
                created_at: item.created_at,
                updated_at: item.updated_at,
                pinned: item.pinned,
                archived: item.archived,
                versions,
            })
        })
        .collect()
}

/// Stores sealed imported items, all or nothing. The vault must be empty: an import
/// restores a vault, it does not merge into one.
pub async fn store_import(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    sealed: Vec<RestoredItem>,
) -> Result<usize, VaultError> {
    if items::count(conn, owner).await? > 0 {
        return Err(VaultError::Import(
            "an import restores a vault into an empty one; this vault already has items".into(),
        ));
    }
    let n = sealed.len();
    items::restore(conn, owner, sealed).await?;
    Ok(n)
}

/// Whether any of the archive's item ids is already used on this appliance.
pub async fn ids_taken(
    conn: &mut AsyncPgConnection,
    items: &[ExportItem],
) -> Result<bool, VaultError> {
    let ids: Vec<uuid::Uuid> = items.iter().map(|i| i.id).collect();
    for chunk in ids.chunks(10_000) {
        if items::any_exists(conn, chunk).await? {
            return Ok(true);
        }
    }
    Ok(false)
}
