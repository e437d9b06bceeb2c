//! The vault: what a person keeps, encrypted so that the database holds only ciphertext.
//!
//! Each item has its own data key (see `cv_crypto::vault`). Its content — the text, as a
//! small JSON document so fields can be added without a format change — is encrypted
//! under that key, bound to (item id, version, owner). The data key is stored wrapped by
//! the owner's vault key when the vault is unlocked, or sealed to the owner's capture
//! public key when it is locked: the appliance can write into a locked vault but not
//! read it. The next unlock re-wraps sealed keys ([`open_rewrapping`], [`store_rewrapped`]).
//!
//! Error policy: [`VaultError`] says what failed and for which item; an item whose
//! ciphertext does not authenticate is reported as tampered, never shown as garbage.

pub mod embeddings;
pub mod export;
pub mod renew;

use cv_crypto::vault::{
    CaptureSealer, DataKey, ItemBinding, SealedKeyCache, UnlockedVault, decrypt_content,
    encrypt_content,
};
use cv_db::items::{self, ItemId, StoredItem, StoredKey};
use cv_db::{DbError, UserId};
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use zeroize::{Zeroize, Zeroizing};

/// The longest text one capture may hold: 16 KiB, the web form limit. A note, not a
/// document (documents arrive as files). The same limits bind imported archives.
pub const MAX_TEXT_BYTES: usize = cv_archive::MAX_TEXT_BYTES;
/// At most this many tags on one item.
pub const MAX_TAGS: usize = cv_archive::MAX_TAGS;
/// The longest tag, in characters.
pub const MAX_TAG_CHARS: usize = cv_archive::MAX_TAG_CHARS;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the note is empty")]
    Empty,
    #[error("the note is longer than {MAX_TEXT_BYTES} bytes")]
    TooLong,
    #[error("{0}")]
    InvalidTags(String),
    #[error("no such item")]
    NotFound,
    /// The item changed since it was read (another device, another tab).
    #[error("the item changed since it was opened (it is at version {current} now)")]
    Stale { current: i32 },
    /// The item failed its integrity check and cannot be changed.
    #[error("the item failed its integrity check")]
    Tampered,
    #[error("{0}")]
    Import(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("encryption failed for item {item}: {reason}")]
    Crypto { item: uuid::Uuid, reason: String },
}

/// What the capturing side holds: the unlocked vault, or only the public capture key.
#[derive(Clone, Copy, Debug)]
pub enum Access<'a> {
    Unlocked(&'a UnlockedVault),
    /// The owner's sealer (one chain of seals at a time; see `CaptureSealer`).
    Locked(&'a std::sync::Mutex<CaptureSealer>),
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Open,
    Doing,
    Done,
}

/// How much a task matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

macro_rules! word_enum {
    ($ty:ty, $what:literal, $($variant:ident = $word:literal),+) => {
        impl $ty {
            pub const ALL: &[$ty] = &[$(<$ty>::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $(<$ty>::$variant => $word),+ }
            }
        }
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($word => Ok(<$ty>::$variant),)+
                    other => Err(format!(
                        concat!("`{}` is not a ", $what, " (one of: {})"),
                        other.chars().take(40).collect::<String>(),
                        [$($word),+].join(", ")
                    )),
                }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
word_enum!(
    TaskStatus,
    "task status",
    Open = "open",
    Doing = "doing",
    Done = "done"
);
word_enum!(
    Priority,
    "priority",
    Low = "low",
    Normal = "normal",
    High = "high"
);

/// What makes an item a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub status: TaskStatus,
    #[serde(default)]
    pub priority: Priority,
    #[serde(default, with = "iso_date")]
    pub due: Option<Date>,
}

impl Task {
    /// A new open task with normal priority and no due date.
    pub fn open() -> Task {
        Task {
            status: TaskStatus::Open,
            priority: Priority::Normal,
            due: None,
        }
    }
}

/// Dates as `YYYY-MM-DD`.
pub mod iso_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;
    use time::macros::format_description;

    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        format_description!("[year]-[month]-[day]");

    pub fn format(date: Date) -> String {
        date.format(FORMAT).unwrap_or_default()
    }

    /// Parses `YYYY-MM-DD`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Date> {
        Date::parse(s.trim(), FORMAT).ok()
    }

    pub fn serialize<S: Serializer>(date: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
        match date {
            Some(d) => s.serialize_str(&format(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => parse(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("a due date is YYYY-MM-DD")),
        }
    }
}

/// The plaintext of an item version. Tags and task state live here, encrypted: their
/// names and dates are as private as the text.
#[derive(Serialize, Deserialize)]
struct Content {
    text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    task: Option<Task>,
}

impl Drop for Content {
    fn drop(&mut self) {
        self.text.zeroize();
    }
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
    pub updated_at: OffsetDateTime,
    pub pinned: bool,
    pub archived: bool,
    /// The text, or why it cannot be shown.
    pub text: Result<Zeroizing<String>, Unreadable>,
    pub tags: Vec<String>,
    pub task: Option<Task>,
}

/// One version of an item, decrypted.
#[derive(Debug)]
pub struct VersionView {
    pub version: i32,
    pub created_at: OffsetDateTime,
    pub text: Result<Zeroizing<String>, Unreadable>,
    pub tags: Vec<String>,
    pub task: Option<Task>,
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

/// Checks the text of a capture or an edit; returns it trimmed.
fn clean_text(text: &str) -> Result<&str, VaultError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(VaultError::Empty);
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(VaultError::TooLong);
    }
    Ok(text)
}

/// Serializes and encrypts one version.
fn seal_content(
    key: &DataKey,
    id: ItemId,
    version: i32,
    owner: UserId,
    text: &str,
    tags: Vec<String>,
    task: Option<Task>,
) -> Result<Vec<u8>, VaultError> {
    let plaintext = Zeroizing::new(
        serde_json::to_vec(&Content {
            text: text.to_owned(),
            tags,
            task,
        })
        .map_err(|e| VaultError::Crypto {
            item: id.0,
            reason: e.to_string(),
        })?,
    );
    Ok(encrypt_content(
        key,
        &binding(id, version, owner),
        &plaintext,
    ))
}

/// Encrypts and stores a new note (or task); returns its id. Works locked or unlocked.
pub async fn capture(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    access: Access<'_>,
    text: &str,
    tags: &[String],
) -> Result<ItemId, VaultError> {
    create(conn, owner, access, text, tags, None).await
}

/// Encrypts and stores a new item, a task when `task` is set; returns its id.
pub async fn create(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    access: Access<'_>,
    text: &str,
    tags: &[String],
    task: Option<Task>,
) -> Result<ItemId, VaultError> {
    let tags = clean_tags(tags)?;
    let text = clean_text(text)?;
    let id = ItemId(uuid::Uuid::new_v4());
    let key = DataKey::generate();
    let content = seal_content(&key, id, 1, owner, text, tags, task)?;
    let key_binding = binding(id, 1, owner).data_key_binding();
    let stored = match access {
        Access::Unlocked(vault) => StoredKey::Wrapped(vault.wrap_data_key(&key, &key_binding)),
        Access::Locked(sealer) => StoredKey::Sealed(
            sealer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .seal(&key, &key_binding),
        ),
    };
    items::insert(conn, id, owner, &stored, &content).await?;
    Ok(id)
}

/// The item's data key, unwrapped (or unsealed, before re-wrapping ran).
fn data_key(item: &StoredItem, vault: &UnlockedVault) -> Result<DataKey, Unreadable> {
    // The key is bound to the item and owner, not to a version: it serves them all.
    let key_binding = binding(item.id, 1, item.owner).data_key_binding();
    match &item.key {
        StoredKey::Wrapped(k) => vault.unwrap_data_key(k, &key_binding),
        StoredKey::Sealed(k) => vault.open_sealed_data_key(k, &key_binding),
    }
    .map_err(|_| Unreadable::Tampered)
}

fn open_content(
    key: &DataKey,
    id: ItemId,
    version: i32,
    owner: UserId,
    ciphertext: &[u8],
) -> Result<Content, Unreadable> {
    let plaintext = Zeroizing::new(
        decrypt_content(key, &binding(id, version, owner), ciphertext)
            .map_err(|_| Unreadable::Tampered)?,
    );
    serde_json::from_slice(&plaintext).map_err(|_| Unreadable::Tampered)
}

/// A version's fields as the views hold them: the text (or why it is unreadable), the
/// tags and the task (empty when unreadable).
fn into_parts(
    content: Result<Content, Unreadable>,
) -> (
    Result<Zeroizing<String>, Unreadable>,
    Vec<String>,
    Option<Task>,
) {
    match content {
        Ok(mut c) => (
            Ok(Zeroizing::new(std::mem::take(&mut c.text))),
            std::mem::take(&mut c.tags),
            c.task.take(),
        ),
        Err(e) => (Err(e), Vec::new(), None),
    }
}

/// Decrypts one stored item for its owner.
pub fn open(item: &StoredItem, vault: &UnlockedVault) -> ItemView {
    open_with(item, data_key(item, vault))
}

fn open_with(item: &StoredItem, key: Result<DataKey, Unreadable>) -> ItemView {
    let content =
        key.and_then(|key| open_content(&key, item.id, item.version, item.owner, &item.content));
    if content.is_err() {
        tracing::warn!(item = %item.id.0, "an item failed its integrity check");
    }
    let (text, tags, task) = into_parts(content);
    ItemView {
        id: item.id,
        version: item.version,
        created_at: item.created_at,
        updated_at: item.updated_at,
        pinned: item.pinned,
        archived: item.archived,
        text,
        tags,
        task,
    }
}

/// Decrypts one stored item like [`open`]; if its data key is still sealed (captured
/// while locked), also returns the key re-wrapped under the vault key, for
/// [`store_rewrapped`]. `cache` keeps each chain of sealed keys opened once (one X25519
/// exchange per chain, not per item) across every item of one pass.
pub fn open_rewrapping(
    item: &StoredItem,
    vault: &UnlockedVault,
    cache: &SealedKeyCache,
) -> (ItemView, Option<(ItemId, Vec<u8>)>) {
    if let StoredKey::Sealed(sealed) = &item.key {
        let key_binding = binding(item.id, 1, item.owner).data_key_binding();
        return match vault.rewrap_sealed_data_key(sealed, &key_binding, cache) {
            Ok((key, wrapped)) => (open_with(item, Ok(key)), Some((item.id, wrapped))),
            Err(_) => (open_with(item, Err(Unreadable::Tampered)), None),
        };
    }
    (open(item, vault), None)
}

/// One item opened for the indexes at unlock (see [`open_for_index`]).
#[derive(Debug)]
pub struct Opened {
    pub view: ItemView,
    /// Its data key re-wrapped, when it was still sealed (for [`store_rewrapped`]).
    pub rewrapped: Option<(ItemId, Vec<u8>)>,
    /// Its embeddings, when a current row was given and opens; else why not (`None`:
    /// there is no row).
    pub embeddings: Option<Result<embeddings::Embeddings, embeddings::NotUsable>>,
}

/// [`open_rewrapping`], and the item's embeddings row decrypted with the same data key
/// (one key unwrap per item for both).
pub fn open_for_index(
    item: &StoredItem,
    vault: &UnlockedVault,
    cache: &SealedKeyCache,
    row: Option<&cv_db::embeddings::StoredEmbeddings>,
    model: &str,
) -> Opened {
    let (key, rewrapped) = match &item.key {
        StoredKey::Sealed(sealed) => {
            let key_binding = binding(item.id, 1, item.owner).data_key_binding();
            match vault.rewrap_sealed_data_key(sealed, &key_binding, cache) {
                Ok((key, wrapped)) => (Ok(key), Some((item.id, wrapped))),
                Err(_) => (Err(Unreadable::Tampered), None),
            }
        }
        StoredKey::Wrapped(_) => (data_key(item, vault), None),
    };
    let embeddings = row.map(|row| match &key {
        Ok(key) => embeddings::open_with_key(item, key, model, row),
        Err(_) => Err(embeddings::NotUsable::Unreadable),
    });
    Opened {
        view: open_with(item, key),
        rewrapped,
        embeddings,
    }
}

/// The owner's item, still encrypted (for the embedding job, which needs its key).
pub async fn stored(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    id: ItemId,
) -> Result<StoredItem, VaultError> {
    items::get(conn, owner, id)
        .await?
        .ok_or(VaultError::NotFound)
}

/// Stores keys re-wrapped by [`open_rewrapping`], in one statement.
pub async fn store_rewrapped(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    rewrapped: &[(ItemId, Vec<u8>)],
) -> Result<usize, VaultError> {
    Ok(items::store_rewrapped_keys(conn, owner, rewrapped).await?)
}

/// The owner's newest items (not archived; pinned first), decrypted.
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

/// One of the owner's items, decrypted.
pub async fn get(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    vault: &UnlockedVault,
    id: ItemId,
) -> Result<ItemView, VaultError> {
    let item = items::get(conn, owner, id)
        .await?
        .ok_or(VaultError::NotFound)?;
    Ok(open(&item, vault))
}

/// A page of the owner's items in id order, still encrypted: for walking a whole
/// vault in bounded memory (decrypt each with [`open`]).
pub async fn page(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    after: Option<ItemId>,
    limit: i64,
) -> Result<Vec<StoredItem>, VaultError> {
    Ok(items::page(conn, owner, after, limit).await?)
}

/// What an edit sets: the whole new content of the item.
#[derive(Debug)]
pub struct Edit<'a> {
    pub text: &'a str,
    pub tags: &'a [String],
    pub task: Option<Task>,
}

/// Stores a new version of the owner's item (every earlier version is kept), if
/// `base` is still its current version. Returns the new version number.
pub async fn update(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    vault: &UnlockedVault,
    id: ItemId,
    base: i32,
    edit: Edit<'_>,
) -> Result<i32, VaultError> {
    let tags = clean_tags(edit.tags)?;
    let text = clean_text(edit.text)?;
    let item = items::get(conn, owner, id)
        .await?
        .ok_or(VaultError::NotFound)?;
    if item.version != base {
        return Err(VaultError::Stale {
            current: item.version,
        });
    }
    let key = data_key(&item, vault).map_err(|_| VaultError::Tampered)?;
    let content = seal_content(&key, id, base + 1, owner, text, tags, edit.task)?;
    match items::add_version(conn, owner, id, base, &content).await? {
        items::AddVersion::Added => Ok(base + 1),
        items::AddVersion::Missing => Err(VaultError::NotFound),
        items::AddVersion::Stale(current) => Err(VaultError::Stale { current }),
    }
}

/// Stores a new version that changes only the item's task (text and tags kept):
/// `change` gets the current task and returns the new one (`None`: a plain note).
/// `base` is the version the change was made from; `None` takes the current one.
pub async fn set_task(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    vault: &UnlockedVault,
    id: ItemId,
    base: Option<i32>,
    change: impl FnOnce(Option<&Task>) -> Option<Task>,
) -> Result<i32, VaultError> {
    let current = get(conn, owner, vault, id).await?;
    let text = current.text.as_ref().map_err(|_| VaultError::Tampered)?;
    let edit = Edit {
        text,
        tags: &current.tags,
        task: change(current.task.as_ref()),
    };
    update(
        conn,
        owner,
        vault,
        id,
        base.unwrap_or(current.version),
        edit,
    )
    .await
}

/// Every version of the owner's item, oldest first, decrypted.
pub async fn history(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    vault: &UnlockedVault,
    id: ItemId,
) -> Result<Vec<VersionView>, VaultError> {
    let item = items::get(conn, owner, id)
        .await?
        .ok_or(VaultError::NotFound)?;
    let stored = items::versions_for(conn, owner, &[id.0]).await?;
    let key = data_key(&item, vault);
    Ok(stored
        .into_iter()
        .map(|(_, v)| {
            let content = key
                .as_ref()
                .map_err(|e| *e)
                .and_then(|key| open_content(key, id, v.version, owner, &v.content));
            let (text, tags, task) = into_parts(content);
            VersionView {
                version: v.version,
                created_at: v.created_at,
                text,
                tags,
                task,
            }
        })
        .collect())
}

/// Makes an earlier version `from` of the owner's item its content again, as a new
/// version (history is never rewritten), if `base` is still its current version: the
/// same check as [`update`], so a restore made from a history page that another
/// device has since outdated is refused ([`VaultError::Stale`]). A version that fails
/// its integrity check is not restored ([`VaultError::Tampered`]). Returns the new
/// version number.
pub async fn restore(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    vault: &UnlockedVault,
    id: ItemId,
    base: i32,
    from: i32,
) -> Result<i32, VaultError> {
    let versions = history(conn, owner, vault, id).await?;
    let old = versions
        .into_iter()
        .find(|v| v.version == from)
        .ok_or(VaultError::NotFound)?;
    let text = old.text.map_err(|_| VaultError::Tampered)?;
    update(
        conn,
        owner,
        vault,
        id,
        base,
        Edit {
            text: &text,
            tags: &old.tags,
            task: old.task,
        },
    )
    .await
}

/// Pins or unpins, archives or restores the owner's item.
pub async fn set_flags(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    id: ItemId,
    pinned: bool,
    archived: bool,
) -> Result<(), VaultError> {
    if items::set_flags(conn, owner, id, pinned, archived).await? {
        Ok(())
    } else {
        Err(VaultError::NotFound)
    }
}

/// Deletes the owner's item: every version and its data key, so the ciphertext left in
/// database snapshots and backups can no longer be opened once they expire.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    id: ItemId,
) -> Result<(), VaultError> {
    if items::delete(conn, owner, id).await? {
        Ok(())
    } else {
        Err(VaultError::NotFound)
    }
}

pub use cv_db::items::count;
