//! Items and their versions, as stored: ciphertext and the little metadata that orders
//! it. Encrypting and decrypting is `cv_vault`'s job; this module never sees plaintext.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::DbError;
use crate::models::UserId;
use crate::schema::{item_versions, items};

/// An item's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ItemId(pub Uuid);

/// An item's data key as stored: wrapped by the vault key, or sealed while locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredKey {
    Wrapped(Vec<u8>),
    Sealed(Vec<u8>),
}

/// One item with its current version's ciphertext.
#[derive(Debug, Clone)]
pub struct StoredItem {
    pub id: ItemId,
    pub owner: UserId,
    pub key: StoredKey,
    pub version: i32,
    pub content: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Inserts an item and its first version in one transaction.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    id: ItemId,
    owner: UserId,
    key: &StoredKey,
    content: &[u8],
) -> Result<(), DbError> {
    let (sealed, key) = match key {
        StoredKey::Wrapped(k) => (false, k.clone()),
        StoredKey::Sealed(k) => (true, k.clone()),
    };
    let content = content.to_vec();
    conn.transaction::<_, DbError, _>(async move |conn: &mut AsyncPgConnection| {
        diesel::insert_into(items::table)
            .values((
                items::id.eq(id.0),
                items::owner_id.eq(owner.0),
                items::data_key.eq(&key),
                items::data_key_sealed.eq(sealed),
                items::version.eq(1),
            ))
            .execute(conn)
            .await
            .map_err(DbError::query("storing an item"))?;
        diesel::insert_into(item_versions::table)
            .values((
                item_versions::item_id.eq(id.0),
                item_versions::version.eq(1),
                item_versions::content.eq(&content),
            ))
            .execute(conn)
            .await
            .map_err(DbError::query("storing an item's first version"))?;
        Ok(())
    })
    .await
}

type Row = (
    Uuid,
    Uuid,
    Vec<u8>,
    bool,
    i32,
    Vec<u8>,
    OffsetDateTime,
    OffsetDateTime,
);

fn from_row((id, owner, key, sealed, version, content, created_at, updated_at): Row) -> StoredItem {
    StoredItem {
        id: ItemId(id),
        owner: UserId(owner),
        key: if sealed {
            StoredKey::Sealed(key)
        } else {
            StoredKey::Wrapped(key)
        },
        version,
        content,
        created_at,
        updated_at,
    }
}

/// The owner's newest items (current versions), newest first.
pub async fn newest(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    limit: i64,
) -> Result<Vec<StoredItem>, DbError> {
    let rows: Vec<Row> = items::table
        .inner_join(
            item_versions::table.on(item_versions::item_id
                .eq(items::id)
                .and(item_versions::version.eq(items::version))),
        )
        .filter(items::owner_id.eq(owner.0))
        .order((items::created_at.desc(), items::id))
        .limit(limit)
        .select((
            items::id,
            items::owner_id,
            items::data_key,
            items::data_key_sealed,
            items::version,
            item_versions::content,
            items::created_at,
            items::updated_at,
        ))
        .load(conn)
        .await
        .map_err(DbError::query("listing items"))?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// How many items the owner has.
pub async fn count(conn: &mut AsyncPgConnection, owner: UserId) -> Result<i64, DbError> {
    items::table
        .filter(items::owner_id.eq(owner.0))
        .count()
        .get_result(conn)
        .await
        .map_err(DbError::query("counting items"))
}

/// The owner's items whose data key is still sealed (captured while locked).
pub async fn sealed_keys(
    conn: &mut AsyncPgConnection,
    owner: UserId,
) -> Result<Vec<(ItemId, Vec<u8>)>, DbError> {
    let rows: Vec<(Uuid, Vec<u8>)> = items::table
        .filter(items::owner_id.eq(owner.0))
        .filter(items::data_key_sealed)
        .select((items::id, items::data_key))
        .load(conn)
        .await
        .map_err(DbError::query("finding sealed item keys"))?;
    Ok(rows
        .into_iter()
        .map(|(id, key)| (ItemId(id), key))
        .collect())
}

/// Replaces a sealed data key by its wrapped form; only if it is still sealed, so two
/// unlocks racing do no harm.
pub async fn store_rewrapped_key(
    conn: &mut AsyncPgConnection,
    item: ItemId,
    wrapped: &[u8],
) -> Result<bool, DbError> {
    let n = diesel::update(
        items::table
            .filter(items::id.eq(item.0))
            .filter(items::data_key_sealed),
    )
    .set((
        items::data_key.eq(wrapped),
        items::data_key_sealed.eq(false),
    ))
    .execute(conn)
    .await
    .map_err(DbError::query("re-wrapping an item key"))?;
    Ok(n == 1)
}
