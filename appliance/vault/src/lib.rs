//! The vault: what a person keeps, encrypted so that the database holds only ciphertext.
//!
//! Each item has its own data key (see `cv_crypto::vault`). Its content — the text, as a
//! small JSON document so fields can be added without a format change — is encrypted
//! under that key, bound to (item id, version, owner). The data key is stored wrapped by
//! the owner's vault key when the vault is unlocked, or sealed to the owner's capture
//! public key when it is locked: the appliance can write into a locked vault but not
//! read it. The next unlock re-wraps sealed keys ([`rewrap_sealed`]).
//!
//! Error policy: [`VaultError`] says what failed and for which item; an item whose
//! ciphertext does not authenticate is reported as tampered, never shown as garbage.

use cv_crypto::vault::{
    CapturePublicKey, DataKey, ItemBinding, UnlockedVault, decrypt_content, encrypt_content,
    seal_data_key,
};
use cv_db::items::{self, ItemId, StoredItem, StoredKey};
use cv_db::{DbError, UserId};
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// The longest text one capture may hold: 16 KiB, the web form limit. A note, not a
/// document (documents arrive as files).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// At most this many tags on one item.
pub const MAX_TAGS: usize = 32;
/// The longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the note is empty")]
    Empty,
    #[error("the note is longer than {MAX_TEXT_BYTES} bytes")]
    TooLong,
    #[error("{0}")]
    InvalidTags(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("encryption failed for item {item}: {reason}")]
    Crypto { item: uuid::Uuid, reason: String },
}

/// What the capturing side holds: the unlocked vault, or only the public capture key.
#[derive(Clone, Copy, Debug)]
pub enum Access<'a> {
    Unlocked(&'a UnlockedVault),
    Locked(&'a CapturePublicKey),
}

/// The plaintext of an item version. Tags live here, encrypted: their names are as
/// private as the text.
#[derive(Serialize, Deserialize)]
struct Content {
    text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
}

/// Trims, checks and de-duplicates tags: at most [`MAX_TAGS`], each 1 to
/// [`MAX_TAG_CHARS`] characters without control characters.
pub fn clean_tags(tags: &[String]) -> Result<Vec<String>, VaultError> {
    if tags.len() > MAX_TAGS {
        return Err(VaultError::InvalidTags(format!(
            "at most {MAX_TAGS} tags, not {}",
            tags.len()
        )));
    }
    let mut clean: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = tag.trim();
        if tag.is_empty()
            || tag.chars().count() > MAX_TAG_CHARS
            || tag.chars().any(char::is_control)
        {
            return Err(VaultError::InvalidTags(format!(
                "a tag is 1 to {MAX_TAG_CHARS} characters without control characters"
            )));
        }
        if !clean.iter().any(|t| t == tag) {
            clean.push(tag.to_owned());
        }
    }
    Ok(clean)
}

/// An item as its owner sees it.
#[derive(Debug)]
pub struct ItemView {
    pub id: ItemId,
    pub version: i32,
    pub created_at: OffsetDateTime,
    /// The text and tags, or why they cannot be shown.
    pub text: Result<Zeroizing<String>, Unreadable>,
    pub tags: Vec<String>,
}

/// Why an item's content cannot be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Its key or ciphertext failed authentication: changed outside the appliance.
    Tampered,
    /// Captured while locked and not yet re-wrapped (re-wrapping runs at unlock).
    StillSealed,
}

fn binding(item: ItemId, version: i32, owner: UserId) -> ItemBinding {
    ItemBinding {
        item: *item.0.as_bytes(),
        version: u64::try_from(version).unwrap_or_default(),
        owner: *owner.0.as_bytes(),
    }
}

/// Encrypts and stores a new note; returns its id. Works locked or unlocked.
pub async fn capture(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    access: Access<'_>,
    text: &str,
    tags: &[String],
) -> Result<ItemId, VaultError> {
    let tags = clean_tags(tags)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(VaultError::Empty);
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(VaultError::TooLong);
    }
    let id = ItemId(uuid::Uuid::new_v4());
    let binding = binding(id, 1, owner);
    let key = DataKey::generate();
    let plaintext = Zeroizing::new(
        serde_json::to_vec(&Content {
            text: text.to_owned(),
            tags,
        })
        .map_err(|e| VaultError::Crypto {
            item: id.0,
            reason: e.to_string(),
        })?,
    );
    let content = encrypt_content(&key, &binding, &plaintext);
    let stored = match access {
        Access::Unlocked(vault) => {
            StoredKey::Wrapped(vault.wrap_data_key(&key, &binding.data_key_binding()))
        }
        Access::Locked(public) => {
            StoredKey::Sealed(seal_data_key(public, &key, &binding.data_key_binding()))
        }
    };
    items::insert(conn, id, owner, &stored, &content).await?;
    Ok(id)
}

/// Decrypts one stored item for its owner.
pub fn open(item: &StoredItem, vault: &UnlockedVault) -> ItemView {
    let binding = binding(item.id, item.version, item.owner);
    let mut tags = Vec::new();
    let text = (|| {
        let key = match &item.key {
            StoredKey::Wrapped(k) => vault.unwrap_data_key(k, &binding.data_key_binding()),
            // Readable now (the vault is open), even before re-wrapping ran.
            StoredKey::Sealed(k) => vault.open_sealed_data_key(k, &binding.data_key_binding()),
        }
        .map_err(|_| Unreadable::Tampered)?;
        let plaintext =
            decrypt_content(&key, &binding, &item.content).map_err(|_| Unreadable::Tampered)?;
        let content: Content =
            serde_json::from_slice(&plaintext).map_err(|_| Unreadable::Tampered)?;
        tags = content.tags;
        Ok(Zeroizing::new(content.text))
    })();
    if text.is_err() {
        tracing::warn!(item = %item.id.0, "an item failed its integrity check");
    }
    ItemView {
        id: item.id,
        version: item.version,
        created_at: item.created_at,
        text,
        tags,
    }
}

/// The owner's newest items, decrypted.
pub async fn newest(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    vault: &UnlockedVault,
    limit: i64,
) -> Result<Vec<ItemView>, VaultError> {
    Ok(items::newest(conn, owner, limit)
        .await?
        .iter()
        .map(|item| open(item, vault))
        .collect())
}

/// Re-wraps, under the vault key, every data key sealed while the vault was locked.
/// Returns how many were re-wrapped; a sealed key that does not open is left as it is
/// (and shows as tampered).
pub async fn rewrap_sealed(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    vault: &UnlockedVault,
) -> Result<usize, VaultError> {
    let mut done = 0;
    for (item, sealed) in items::sealed_keys(conn, owner).await? {
        let binding = binding(item, 1, owner).data_key_binding();
        match vault.rewrap_sealed_data_key(&sealed, &binding) {
            Ok(wrapped) => {
                if items::store_rewrapped_key(conn, item, &wrapped).await? {
                    done += 1;
                }
            }
            Err(e) => tracing::warn!(item = %item.0, error = %e, "a sealed item key did not open"),
        }
    }
    Ok(done)
}

pub use cv_db::items::count;
