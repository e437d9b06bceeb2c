//! Items' chunk embeddings, as stored: one encrypted row per item, for the version it was
//! computed from. Encrypting and decrypting is `cv_vault`'s job; this module never sees a
//! vector.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::DbError;
use crate::items::ItemId;
use crate::models::UserId;
use crate::schema::{item_embeddings, items};

/// An item's embeddings row.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredEmbeddings {
    pub item: ItemId,
    /// The item version the chunks were cut from.
    pub version: i32,
    /// The embedding model's name.
    pub model: String,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for StoredEmbeddings {
    // Lengths only: the ciphertext is opaque anyway, and there is no need to print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredEmbeddings")
            .field("item", &self.item.0)
            .field("version", &self.version)
            .field("model", &self.model)
            .field("ciphertext_bytes", &self.ciphertext.len())
            .finish()
    }
}

/// Stores (or replaces) the item's embeddings row, if the item is the owner's and still
/// at `version`; returns whether a row was written (false: deleted or edited meanwhile,
/// so the vectors are stale before they land).
pub async fn store(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    row: &StoredEmbeddings,
) -> Result<bool, DbError> {
    use diesel::sql_types::{Bytea, Integer, Text, Uuid as SqlUuid};
    let written = diesel::sql_query(
        "INSERT INTO item_embeddings (item_id, version, model, ciphertext) \
         SELECT items.id, $3, $4, $5 FROM items \
         WHERE items.id = $1 AND items.owner_id = $2 AND items.version = $3 \
         ON CONFLICT (item_id) DO UPDATE SET version = EXCLUDED.version, \
         model = EXCLUDED.model, ciphertext = EXCLUDED.ciphertext",
    )
    .bind::<SqlUuid, _>(row.item.0)
    .bind::<SqlUuid, _>(owner.0)
    .bind::<Integer, _>(row.version)
    .bind::<Text, _>(&row.model)
    .bind::<Bytea, _>(&row.ciphertext)
    .execute(conn)
    .await
    .map_err(DbError::query("storing embeddings"))?;
    Ok(written > 0)
}

/// The embeddings rows of the owner's items among `ids` (any version: the caller skips
/// stale ones), in one round trip.
pub async fn for_items(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    ids: &[ItemId],
) -> Result<Vec<StoredEmbeddings>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
    let rows: Vec<(Uuid, i32, String, Vec<u8>)> = item_embeddings::table
        .inner_join(items::table)
        .filter(items::owner_id.eq(owner.0))
        .filter(item_embeddings::item_id.eq_any(ids))
        .select((
            item_embeddings::item_id,
            item_embeddings::version,
            item_embeddings::model,
            item_embeddings::ciphertext,
        ))
        .load(conn)
        .await
        .map_err(DbError::query("reading embeddings"))?;
    Ok(rows
        .into_iter()
        .map(|(item, version, model, ciphertext)| StoredEmbeddings {
            item: ItemId(item),
            version,
            model,
            ciphertext,
        })
        .collect())
}
