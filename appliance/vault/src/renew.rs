//! Renewing a vault whose first passphrase someone else chose.
//!
//! Whoever created such an account (an admin with `contextvault admin create-user`, or
//! the add-member form of earlier versions) knows its first passphrase and saw its
//! recovery key, and could have kept a copy of the database from that time. A new
//! passphrase and a new recovery key alone would not shut them out: the old key bundle
//! still opens with what they know, and yields the vault key. So a renewal replaces
//! **every** key:
//!
//! - a new vault key, capture key pair and recovery key (a new `KeyBundle`, made by the
//!   caller from the holder's own passphrase);
//! - every item gets a new data key, and each of its versions is re-encrypted under it
//!   (the embeddings, under the old data key, are dropped and computed again);
//! - the suggestion feedback, under the vault key, is re-encrypted;
//! - the login hash, sessions and API tokens are replaced or ended
//!   ([`cv_db::User::finish_renewal`]).
//!
//! All of it happens in one transaction: a renewal that fails leaves the vault as it was.
//! Afterwards nothing stored opens with anything from before.

use cv_crypto::vault::{DataKey, UnlockedVault, decrypt_content, encrypt_content};
use cv_db::items::{self, ItemId};
use cv_db::{DbError, User, UserId, feedback};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use zeroize::Zeroizing;

use crate::{VaultError, binding, data_key};

/// Items moved to new keys per round trip.
const PAGE: i64 = 200;

/// What a renewal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewed {
    /// Items moved to new data keys.
    pub items: usize,
}

/// Renews `owner`'s account: moves every item from `old` (the vault opened with the
/// passphrase someone else chose) to `new` (the vault of the new `bundle`), and stores
/// the holder's `password_hash` and `bundle`, all in one transaction (see the module
/// documentation). `Ok(None)` when the account did not need renewing (any more): nothing
/// changed.
pub async fn renew(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    old: &UnlockedVault,
    new: &UnlockedVault,
    password_hash: &str,
    bundle: &[u8],
) -> Result<Option<Renewed>, VaultError> {
    conn.transaction::<_, VaultError, _>(async move |conn: &mut AsyncPgConnection| {
        // First, so that two renewals racing do not both re-key: the second finds the
        // mark gone (the row is locked until this transaction ends) and stops.
        if !User::finish_renewal(conn, owner, password_hash, bundle).await? {
            return Ok(None);
        }
        let mut moved = 0;
        let mut after = None;
        loop {
            let page = items::page(conn, owner, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let ids: Vec<uuid::Uuid> = page.iter().map(|i| i.id.0).collect();
            let versions = items::versions_for(conn, owner, &ids).await?;
            for item in &page {
                let old_key = data_key(item, old).map_err(|_| VaultError::Tampered)?;
                let new_key = DataKey::generate();
                let mut contents = Vec::new();
                for (_, version) in versions.iter().filter(|(id, _)| *id == item.id) {
                    contents.push((
                        version.version,
                        reencrypt(
                            &old_key,
                            &new_key,
                            item.id,
                            version.version,
                            owner,
                            &version.content,
                        )?,
                    ));
                }
                let wrapped =
                    new.wrap_data_key(&new_key, &binding(item.id, 1, owner).data_key_binding());
                items::replace_encryption(conn, owner, item.id, &wrapped, &contents).await?;
                moved += 1;
            }
        }
        let owner_bytes = *owner.0.as_bytes();
        for record in feedback::for_user(conn, owner).await? {
            let plain = old
                .decrypt_feedback(owner_bytes, *record.id.as_bytes(), &record.ciphertext)
                .map_err(|_| VaultError::Tampered)?;
            let sealed = new.encrypt_feedback(owner_bytes, *record.id.as_bytes(), &plain);
            feedback::replace(conn, owner, record.id, &sealed).await?;
        }
        Ok(Some(Renewed { items: moved }))
    })
    .await
}

/// One version's ciphertext, decrypted under `old` and encrypted under `new` with the
/// same binding (item, version, owner).
fn reencrypt(
    old: &DataKey,
    new: &DataKey,
    id: ItemId,
    version: i32,
    owner: UserId,
    ciphertext: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let binding = binding(id, version, owner);
    let plain: Zeroizing<Vec<u8>> =
        decrypt_content(old, &binding, ciphertext).map_err(|_| VaultError::Tampered)?;
    Ok(encrypt_content(new, &binding, &plain))
}

impl From<diesel::result::Error> for VaultError {
    fn from(e: diesel::result::Error) -> Self {
        VaultError::Db(DbError::from(e))
    }
}
