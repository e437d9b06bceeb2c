//! Each unlocked vault's full-text index (`cv_search`, tantivy in RAM): built from the
//! decrypted items at unlock, with progress; kept current on every write while the
//! vault is open; dropped with the keys at lock. Nothing of it is ever on disk.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use cv_db::UserId;
use cv_db::items::ItemId;
use cv_search::{Document, SearchIndex};
use cv_vault::ItemView;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::keyring::Unlocked;
use crate::state::AppState;

/// Items read and decrypted per database round trip while building.
const BUILD_PAGE: i64 = 1_000;

const BUILDING: u8 = 0;
const READY: u8 = 1;
const FAILED: u8 = 2;

/// One vault's index and how far its build got.
pub(crate) struct VaultIndex {
    pub index: SearchIndex,
    /// The vector side (search by meaning), filled in the same pass.
    pub semantic: crate::semantic::Semantic,
    /// Themes and tasks due soon, computed from the two indexes.
    pub insights: crate::insights::Slot,
    phase: AtomicU8,
    indexed: AtomicU64,
    total: AtomicU64,
    build_ms: AtomicU64,
}

impl std::fmt::Debug for VaultIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (phase, indexed, total) = self.progress();
        write!(f, "VaultIndex({phase}, {indexed}/{total})")
    }
}

impl VaultIndex {
    pub fn new() -> Result<VaultIndex, cv_search::SearchError> {
        Ok(VaultIndex {
            index: SearchIndex::new()?,
            semantic: crate::semantic::Semantic::default(),
            insights: crate::insights::Slot::default(),
            phase: AtomicU8::new(BUILDING),
            indexed: AtomicU64::new(0),
            total: AtomicU64::new(0),
            build_ms: AtomicU64::new(0),
        })
    }

    /// "building", "ready" or "failed", with items indexed and items to index.
    pub fn progress(&self) -> (&'static str, u64, u64) {
        let phase = match self.phase.load(Ordering::Acquire) {
            BUILDING => "building",
            READY => "ready",
            _ => "failed",
        };
        (
            phase,
            self.indexed.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    pub fn is_building(&self) -> bool {
        self.phase.load(Ordering::Acquire) == BUILDING
    }

    /// How long the build took, once it is done.
    pub fn build_ms(&self) -> Option<u64> {
        (self.phase.load(Ordering::Acquire) == READY).then(|| self.build_ms.load(Ordering::Relaxed))
    }
}

/// The index document of an item; `None` for one that failed its integrity check.
pub(crate) fn document(view: &ItemView) -> Option<Document> {
    let text = view.text.as_ref().ok()?;
    Some(Document {
        id: view.id.0,
        text: text.to_string(),
        tags: view.tags.clone(),
        kind: if view.task.is_some() {
            cv_search::Kind::Task
        } else {
            cv_search::Kind::Note
        },
        status: view.task.as_ref().map(|t| search_status(t.status)),
        due: view.task.as_ref().and_then(|t| t.due),
        created: view.created_at,
        updated: view.updated_at,
        pinned: view.pinned,
        archived: view.archived,
    })
}

pub(crate) fn search_status(status: cv_vault::TaskStatus) -> cv_search::TaskStatus {
    match status {
        cv_vault::TaskStatus::Open => cv_search::TaskStatus::Open,
        cv_vault::TaskStatus::Doing => cv_search::TaskStatus::Doing,
        cv_vault::TaskStatus::Done => cv_search::TaskStatus::Done,
    }
}

/// Builds `unlocked`'s index in the background: pages of items are read, decrypted off
/// the async workers and streamed into the index. Stops early if the vault is locked
/// meanwhile (its index is then dropped with the keys).
pub(crate) fn start_build(
    state: &actix_web::web::Data<AppState>,
    user: UserId,
    unlocked: Unlocked,
) {
    let state = state.clone();
    actix_web::rt::spawn(async move {
        let started = Instant::now();
        let index = unlocked.index.clone();
        match build(&state, user, &unlocked).await {
            Ok((n, stale)) => {
                let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                index.build_ms.store(ms, Ordering::Relaxed);
                index.phase.store(READY, Ordering::Release);
                info!(%user, items = n, ms, memory_bytes = index.index.memory_bytes(), by_meaning = index.semantic.items(), to_embed = stale.len(), "search index ready");
                // What has no current embeddings (captured while locked, or while the
                // AI was off or failing) is embedded now, in the background.
                crate::semantic::embed_later(&state, user, stale);
            }
            Err(why) => {
                index.phase.store(FAILED, Ordering::Release);
                warn!(%user, error = %why, "building the search index failed");
            }
        }
    });
}

/// Builds the index; returns how many items it holds and the items without current
/// embeddings.
async fn build(
    state: &actix_web::web::Data<AppState>,
    user: UserId,
    unlocked: &Unlocked,
) -> Result<(u64, Vec<ItemId>), String> {
    let index = unlocked.index.clone();
    let total = {
        let mut conn = state.conn().await.map_err(|e| e.to_string())?;
        cv_vault::count(&mut conn, user)
            .await
            .map_err(|e| e.to_string())?
    };
    index
        .total
        .store(u64::try_from(total).unwrap_or(0), Ordering::Relaxed);
    // The index takes documents on a blocking thread while pages are fetched here.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Document>>(2);
    let builder = {
        let index = index.clone();
        tokio::task::spawn_blocking(move || {
            let progress = |n: usize| {
                index
                    .indexed
                    .store(u64::try_from(n).unwrap_or(0), Ordering::Relaxed);
            };
            index
                .index
                .build(rx.into_iter().flatten(), progress)
                .map_err(|e| e.to_string())
        })
    };
    // A pipeline: while one page is decrypted (on every core), the next is fetched, the
    // previous page's re-wrapped keys are stored, and the index thread takes the one
    // before that.
    let fetch = |after: Option<ItemId>| async move {
        let mut conn = state.conn().await.map_err(|e| e.to_string())?;
        let items = cv_vault::page(&mut conn, user, after, BUILD_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let ids: Vec<ItemId> = items.iter().map(|i| i.id).collect();
        let rows = cv_db::embeddings::for_items(&mut conn, user, &ids)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((items, rows))
    };
    // Chains of keys sealed while locked, each opened once for the whole build.
    let sealed_keys = std::sync::Arc::new(cv_crypto::vault::SealedKeyCache::default());
    let mut next = fetch(None).await?;
    let mut stores: Vec<actix_web::rt::task::JoinHandle<Result<usize, String>>> = Vec::new();
    let mut sent = 0u64;
    let mut stale = Vec::new();
    loop {
        if !state.keyring.holds(user, &index) {
            info!(%user, "vault locked during indexing; stopped");
            break;
        }
        let (page, rows) = std::mem::take(&mut next);
        let Some(last) = page.last().map(|i| i.id) else {
            break;
        };
        let vault = unlocked.vault.clone();
        let cache = sealed_keys.clone();
        let decrypt = tokio::task::spawn_blocking(move || open_page(&page, &rows, &vault, &cache));
        let (fetched, decrypted) = tokio::join!(fetch(Some(last)), decrypt);
        next = fetched?;
        let Opened {
            docs,
            rewrapped,
            vectors,
            stale: page_stale,
        } = decrypted.map_err(|e| e.to_string())?;
        for (id, embeddings) in vectors {
            index.semantic.upsert(id.0, &embeddings);
        }
        stale.extend(page_stale);
        if !rewrapped.is_empty() {
            let state = state.clone();
            stores.push(actix_web::rt::spawn(async move {
                let mut conn = state.conn().await.map_err(|e| e.to_string())?;
                cv_vault::store_rewrapped(&mut conn, user, &rewrapped)
                    .await
                    .map_err(|e| e.to_string())
            }));
        }
        sent += docs.len() as u64;
        let tx = tx.clone();
        // A full channel waits for the index, off the async workers.
        tokio::task::spawn_blocking(move || tx.send(docs))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "the index builder stopped".to_owned())?;
    }
    let mut rewrapped = 0;
    for store in stores {
        rewrapped += store.await.map_err(|e| e.to_string())??;
    }
    if rewrapped > 0 {
        info!(%user, rewrapped, "re-wrapped item keys sealed while the vault was locked");
    }
    drop(tx);
    builder.await.map_err(|e| e.to_string())??;
    Ok((sent, stale))
}

/// A page of items decrypted for the indexes.
#[derive(Default)]
struct Opened {
    docs: Vec<Document>,
    /// Keys sealed while locked, re-wrapped.
    rewrapped: Vec<(ItemId, Vec<u8>)>,
    /// Current embeddings, opened.
    vectors: Vec<(ItemId, cv_vault::embeddings::Embeddings)>,
    /// Readable items without current embeddings.
    stale: Vec<ItemId>,
}

/// Decrypts a page of items into index documents and their embeddings rows into
/// vectors, on every core; also returns the re-wrapped forms of the keys sealed while
/// the vault was locked, and the items whose embeddings are missing or stale.
fn open_page(
    page: &[cv_db::items::StoredItem],
    rows: &[cv_db::embeddings::StoredEmbeddings],
    vault: &cv_crypto::vault::UnlockedVault,
    cache: &cv_crypto::vault::SealedKeyCache,
) -> Opened {
    let rows: std::collections::HashMap<ItemId, &cv_db::embeddings::StoredEmbeddings> =
        rows.iter().map(|r| (r.item, r)).collect();
    let rows = &rows;
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = page.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = page
            .chunks(chunk)
            .map(|items| {
                scope.spawn(move || {
                    let mut part = Opened::default();
                    for item in items {
                        let opened = cv_vault::open_for_index(
                            item,
                            vault,
                            cache,
                            rows.get(&item.id).copied(),
                            crate::semantic::MODEL,
                        );
                        if let Some(doc) = document(&opened.view) {
                            part.docs.push(doc);
                            match opened.embeddings {
                                Some(Ok(embeddings)) => part.vectors.push((item.id, embeddings)),
                                _ => part.stale.push(item.id),
                            }
                        }
                        part.rewrapped.extend(opened.rewrapped);
                    }
                    part
                })
            })
            .collect();
        let mut all = Opened::default();
        for part in parts {
            // A panic while decrypting (none is expected) loses that chunk's documents
            // from the index, not the vault's data.
            if let Ok(part) = part.join() {
                all.docs.extend(part.docs);
                all.rewrapped.extend(part.rewrapped);
                all.vectors.extend(part.vectors);
                all.stale.extend(part.stale);
            }
        }
        all
    })
}

/// The item changed (edited, re-flagged, made a task): re-index it from the database.
pub(crate) async fn changed(state: &actix_web::web::Data<AppState>, user: UserId, id: ItemId) {
    let Some(unlocked) = state.keyring.peek(user) else {
        return;
    };
    let view = match state.conn().await {
        Ok(mut conn) => cv_vault::get(&mut conn, user, &unlocked.vault, id).await,
        Err(_) => return,
    };
    match view {
        Ok(view) => match document(&view) {
            Some(doc) => {
                unlocked.index.index.upsert(doc);
                // Its text may have changed: embed it again (in the background).
                crate::semantic::embed_later(state, user, vec![id]);
            }
            None => {
                unlocked.index.index.remove(id.0);
                unlocked.index.semantic.remove(id.0);
            }
        },
        Err(e) => warn!(%user, item = %id.0, error = %e, "could not re-index an item"),
    }
}

/// A note was just captured into an unlocked vault: index it from what was written,
/// without reading it back.
pub(crate) fn captured(
    state: &actix_web::web::Data<AppState>,
    user: UserId,
    id: ItemId,
    text: &str,
    tags: &[String],
) {
    let Some(unlocked) = state.keyring.peek(user) else {
        return;
    };
    let now = OffsetDateTime::now_utc();
    let Ok(tags) = cv_vault::clean_tags(tags) else {
        return;
    };
    unlocked.index.index.upsert(Document {
        id: id.0,
        text: text.trim().to_owned(),
        tags,
        kind: cv_search::Kind::Note,
        status: None,
        due: None,
        created: now,
        updated: now,
        pinned: false,
        archived: false,
    });
    crate::semantic::embed_later(state, user, vec![id]);
}

/// The item is gone: drop it from the index.
pub(crate) fn removed(state: &AppState, user: UserId, id: ItemId) {
    if let Some(unlocked) = state.keyring.peek(user) {
        unlocked.index.index.remove(id.0);
        unlocked.index.semantic.remove(id.0);
    }
}

/// The index's state for `GET /api/v1/vault`.
pub(crate) fn status_json(unlocked: Option<&Unlocked>, ai_on: bool) -> serde_json::Value {
    let Some(unlocked) = unlocked else {
        return serde_json::Value::Null;
    };
    let index = &unlocked.index;
    let (phase, indexed, total) = index.progress();
    serde_json::json!({
        "state": phase,
        "indexed": indexed,
        "total": total,
        "documents": index.index.len(),
        "memory_bytes": index.index.memory_bytes(),
        "build_ms": index.build_ms(),
        "semantic": index.semantic.status_json(ai_on),
    })
}

/// Replaces the vault's index by a new one built from the database (after an import).
pub(crate) fn rebuild(state: &actix_web::web::Data<AppState>, user: UserId) {
    let index = match VaultIndex::new() {
        Ok(index) => index,
        Err(e) => {
            warn!(%user, error = %e, "could not create a search index");
            return;
        }
    };
    if let Some(unlocked) = state.keyring.replace_index(user, index) {
        start_build(state, user, unlocked);
    }
}
