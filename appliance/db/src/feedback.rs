//! A person's answers to suggestions, as stored: opaque encrypted records (see the
//! migration `suggestion_feedback`). Encrypting and decrypting is the vault service's
//! job; this module never sees a tag name.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::DbError;
use crate::models::UserId;
use crate::schema::suggestion_feedback;

/// The most records kept per person; adding one more drops the oldest. Feedback only
/// weighs and hides suggestions, so the recent answers are the ones that matter, and a
/// fixed cap bounds what each page load decrypts (a thousand records of ~100 bytes:
/// about a millisecond of AES-GCM).
pub const MAX_PER_USER: i64 = 1_000;

/// One stored record.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredFeedback {
    pub id: Uuid,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for StoredFeedback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredFeedback")
            .field("id", &self.id)
            .field("ciphertext_bytes", &self.ciphertext.len())
            .finish()
    }
}

/// Stores a record and drops the person's oldest beyond [`MAX_PER_USER`], in one
/// transaction.
pub async fn add(
    conn: &mut AsyncPgConnection,
    user: UserId,
    record: &StoredFeedback,
) -> Result<(), DbError> {
    let (id, ciphertext) = (record.id, record.ciphertext.clone());
    conn.transaction::<_, DbError, _>(async move |conn: &mut AsyncPgConnection| {
        diesel::insert_into(suggestion_feedback::table)
            .values((
                suggestion_feedback::id.eq(id),
                suggestion_feedback::user_id.eq(user.0),
                suggestion_feedback::ciphertext.eq(ciphertext),
            ))
            .execute(conn)
            .await
            .map_err(DbError::query("storing suggestion feedback"))?;
        diesel::sql_query(
            "DELETE FROM suggestion_feedback WHERE user_id = $1 AND id IN ( \
                 SELECT id FROM suggestion_feedback WHERE user_id = $1 \
                 ORDER BY created_at DESC, id DESC OFFSET $2)",
        )
        .bind::<diesel::sql_types::Uuid, _>(user.0)
        .bind::<diesel::sql_types::BigInt, _>(MAX_PER_USER)
        .execute(conn)
        .await
        .map_err(DbError::query("trimming suggestion feedback"))?;
        Ok(())
    })
    .await
}

/// Replaces one record's ciphertext (the vault's key was renewed).
pub async fn replace(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: Uuid,
    ciphertext: &[u8],
) -> Result<(), DbError> {
    diesel::update(
        suggestion_feedback::table
            .filter(suggestion_feedback::user_id.eq(user.0))
            .filter(suggestion_feedback::id.eq(id)),
    )
    .set(suggestion_feedback::ciphertext.eq(ciphertext))
    .execute(conn)
    .await
    .map_err(DbError::query("re-encrypting suggestion feedback"))?;
    Ok(())
}

/// The person's records, oldest first.
pub async fn for_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
) -> Result<Vec<StoredFeedback>, DbError> {
    let rows: Vec<(Uuid, Vec<u8>)> = suggestion_feedback::table
        .filter(suggestion_feedback::user_id.eq(user.0))
        .order((suggestion_feedback::created_at, suggestion_feedback::id))
        .select((suggestion_feedback::id, suggestion_feedback::ciphertext))
        .load(conn)
        .await
        .map_err(DbError::query("reading suggestion feedback"))?;
    Ok(rows
        .into_iter()
        .map(|(id, ciphertext)| StoredFeedback { id, ciphertext })
        .collect())
}
