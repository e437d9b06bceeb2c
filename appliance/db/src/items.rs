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
    pub pinned: bool,
    pub archived: bool,
}

/// One stored version of an item: its ciphertext and when it was written.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    pub version: i32,
    pub content: Vec<u8>,
    pub created_at: OffsetDateTime,
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
    bool,
    bool,
);

fn from_row(
    (id, owner, key, sealed, version, content, created_at, updated_at, pinned, archived): Row,
) -> StoredItem {
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
        pinned,
        archived,
    }
}

/// The columns of a [`Row`]: an item joined with its current version.
macro_rules! current_item_columns {
    () => {
        (
            items::id,
            items::owner_id,
            items::data_key,
            items::data_key_sealed,
            items::version,
            item_versions::content,
            items::created_at,
            items::updated_at,
            items::pinned,
            items::archived,
        )
    };
}

/// Items joined with their current version.
macro_rules! current_items {
    () => {
        items::table.inner_join(
            item_versions::table.on(item_versions::item_id
                .eq(items::id)
                .and(item_versions::version.eq(items::version))),
        )
    };
}

/// The owner's newest items (current versions) that are not archived: pinned first,
/// then newest first.
pub async fn newest(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    limit: i64,
) -> Result<Vec<StoredItem>, DbError> {
    let rows: Vec<Row> = current_items!()
        .filter(items::owner_id.eq(owner.0))
        .filter(items::archived.eq(false))
        .order((items::pinned.desc(), items::created_at.desc(), items::id))
        .limit(limit)
        .select(current_item_columns!())
        .load(conn)
        .await
        .map_err(DbError::query("listing items"))?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// One of the owner's items, with its current version; `None` when it does not exist
/// or belongs to someone else (the two are not told apart).
pub async fn get(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    id: ItemId,
) -> Result<Option<StoredItem>, DbError> {
    let row: Option<Row> = current_items!()
        .filter(items::owner_id.eq(owner.0))
        .filter(items::id.eq(id.0))
        .select(current_item_columns!())
        .first(conn)
        .await
        .optional()
        .map_err(DbError::query("reading an item"))?;
    Ok(row.map(from_row))
}

/// A page of the owner's items (current versions) in id order, after `after`: for
/// walking a whole vault (index build, export) without holding it all at once.
pub async fn page(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    after: Option<ItemId>,
    limit: i64,
) -> Result<Vec<StoredItem>, DbError> {
    let mut query = current_items!()
        .filter(items::owner_id.eq(owner.0))
        .order(items::id)
        .limit(limit)
        .select(current_item_columns!())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(items::id.gt(after.0));
    }
    let rows: Vec<Row> = query
        .load(conn)
        .await
        .map_err(DbError::query("reading items"))?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Every version of the owner's items among `ids`, by item then version: one round trip
/// for a page of items (export), or for one item (its history).
pub async fn versions_for(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    ids: &[Uuid],
) -> Result<Vec<(ItemId, StoredVersion)>, DbError> {
    let rows: Vec<(Uuid, i32, Vec<u8>, OffsetDateTime)> = item_versions::table
        .inner_join(items::table)
        .filter(items::owner_id.eq(owner.0))
        .filter(items::id.eq_any(ids))
        .order((item_versions::item_id, item_versions::version))
        .select((
            item_versions::item_id,
            item_versions::version,
            item_versions::content,
            item_versions::created_at,
        ))
        .load(conn)
        .await
        .map_err(DbError::query("reading item versions"))?;
    Ok(rows
        .into_iter()
        .map(|(id, version, content, created_at)| {
            (
                ItemId(id),
                StoredVersion {
                    version,
                    content,
                    created_at,
                },
            )
        })
        .collect())
}

/// Why a new version was not stored.
#[derive(Debug, PartialEq, Eq)]
pub enum AddVersion {
    Added,
    /// No such item for this owner.
    Missing,
    /// The item changed since `base` was read: its current version is this one.
    Stale(i32),
}

/// Stores `content` as version `base + 1` of the owner's item and makes it current, in
/// one transaction, only if the current version is still `base` (optimistic locking:
/// two edits of the same version cannot both win).
pub async fn add_version(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    id: ItemId,
    base: i32,
    content: &[u8],
) -> Result<AddVersion, DbError> {
    let content = content.to_vec();
    conn.transaction::<_, DbError, _>(async move |conn: &mut AsyncPgConnection| {
        let current: Option<i32> = items::table
            .filter(items::id.eq(id.0))
            .filter(items::owner_id.eq(owner.0))
            .select(items::version)
            .for_update()
            .first(conn)
            .await
            .optional()
            .map_err(DbError::query("locking an item"))?;
        match current {
            None => return Ok(AddVersion::Missing),
            Some(v) if v != base => return Ok(AddVersion::Stale(v)),
            Some(_) => {}
        }
        let next = base + 1;
        diesel::insert_into(item_versions::table)
            .values((
                item_versions::item_id.eq(id.0),
                item_versions::version.eq(next),
                item_versions::content.eq(&content),
            ))
            .execute(conn)
            .await
            .map_err(DbError::query("storing an item version"))?;
        diesel::update(items::table.filter(items::id.eq(id.0)))
            .set((
                items::version.eq(next),
                items::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await
            .map_err(DbError::query("updating an item"))?;
        Ok(AddVersion::Added)
    })
    .await
}

/// Sets the pinned and archived flags of the owner's item; returns whether it exists.
pub async fn set_flags(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    id: ItemId,
    pinned: bool,
    archived: bool,
) -> Result<bool, DbError> {
    let n = diesel::update(
        items::table
            .filter(items::id.eq(id.0))
            .filter(items::owner_id.eq(owner.0)),
    )
    .set((items::pinned.eq(pinned), items::archived.eq(archived)))
    .execute(conn)
    .await
    .map_err(DbError::query("updating an item"))?;
    Ok(n == 1)
}

/// Deletes the owner's item with every version and its data key; returns whether it
/// existed.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    id: ItemId,
) -> Result<bool, DbError> {
    let n = diesel::delete(
        items::table
            .filter(items::id.eq(id.0))
            .filter(items::owner_id.eq(owner.0)),
    )
    .execute(conn)
    .await
    .map_err(DbError::query("deleting an item"))?;
    Ok(n == 1)
}

/// An item as restored from an export: every version, with its original times.
#[derive(Debug)]
pub struct RestoredItem {
    pub id: ItemId,
    pub key: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub pinned: bool,
    pub archived: bool,
    pub versions: Vec<StoredVersion>,
}

/// Whether any of `ids` is already taken, by anyone.
pub async fn any_exists(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> Result<bool, DbError> {
    let n: i64 = items::table
        .filter(items::id.eq_any(ids))
        .count()
        .get_result(conn)
        .await
        .map_err(DbError::query("checking item ids"))?;
    Ok(n > 0)
}

/// Stores restored items in one transaction: all or nothing.
pub async fn restore(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    restored: Vec<RestoredItem>,
) -> Result<(), DbError> {
    conn.transaction::<_, DbError, _>(async move |conn: &mut AsyncPgConnection| {
        for item in &restored {
            let current = item.versions.iter().map(|v| v.version).max().unwrap_or(1);
            diesel::insert_into(items::table)
                .values((
                    items::id.eq(item.id.0),
                    items::owner_id.eq(owner.0),
                    items::data_key.eq(&item.key),
                    items::data_key_sealed.eq(false),
                    items::version.eq(current),
                    items::created_at.eq(item.created_at),
                    items::updated_at.eq(item.updated_at),
                    items::pinned.eq(item.pinned),
                    items::archived.eq(item.archived),
                ))
                .execute(conn)
                .await
                .map_err(DbError::query("restoring an item"))?;
            let rows: Vec<_> = item
                .versions
                .iter()
                .map(|v| {
                    (
                        item_versions::item_id.eq(item.id.0),
                        item_versions::version.eq(v.version),
                        item_versions::content.eq(&v.content),
                        item_versions::created_at.eq(v.created_at),
                    )
                })
                .collect();
            diesel::insert_into(item_versions::table)
                .values(&rows)
                .execute(conn)
                .await
                .map_err(DbError::query("restoring an item's versions"))?;
        }
        Ok(())
    })
    .await
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

/// Replaces many sealed data keys of the owner's items by their wrapped forms, in one
/// statement (a page of them at unlock); only those still sealed. Returns how many.
pub async fn store_rewrapped_keys(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    rewrapped: &[(ItemId, Vec<u8>)],
) -> Result<usize, DbError> {
    use diesel::sql_types::{Array, Bytea, Uuid as SqlUuid};
    if rewrapped.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = rewrapped.iter().map(|(id, _)| id.0).collect();
    let keys: Vec<Vec<u8>> = rewrapped.iter().map(|(_, key)| key.clone()).collect();
    diesel::sql_query(
        "UPDATE items SET data_key = v.key, data_key_sealed = false \
         FROM unnest($1::uuid[], $2::bytea[]) AS v(id, key) \
         WHERE items.id = v.id AND items.owner_id = $3 AND items.data_key_sealed",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<Bytea>, _>(keys)
    .bind::<SqlUuid, _>(owner.0)
    .execute(conn)
    .await
    .map_err(DbError::query("re-wrapping item keys"))
}

/// Replaces an item's data key (wrapped) and the ciphertext of each of its versions, and
/// drops its embeddings (they were under the old key; they are computed again): the item
/// is moved to a new key. Part of the caller's transaction.
pub async fn replace_encryption(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    id: ItemId,
    wrapped_key: &[u8],
    versions: &[(i32, Vec<u8>)],
) -> Result<(), DbError> {
    use crate::schema::item_embeddings;
    diesel::update(
        items::table
            .filter(items::id.eq(id.0))
            .filter(items::owner_id.eq(owner.0)),
    )
    .set((
        items::data_key.eq(wrapped_key),
        items::data_key_sealed.eq(false),
    ))
    .execute(conn)
    .await
    .map_err(DbError::query("replacing an item's key"))?;
    for (version, content) in versions {
        diesel::update(
            item_versions::table
                .filter(item_versions::item_id.eq(id.0))
                .filter(item_versions::version.eq(version)),
        )
        .set(item_versions::content.eq(content))
        .execute(conn)
        .await
        .map_err(DbError::query("re-encrypting an item version"))?;
    }
    diesel::delete(item_embeddings::table.filter(item_embeddings::item_id.eq(id.0)))
        .execute(conn)
        .await
        .map_err(DbError::query("dropping an item's old embeddings"))?;
    Ok(())
}
