//! An item's chunk embeddings, encrypted like its content.
//!
//! Embedding vectors can be inverted back to (approximately) the text they came from, so
//! they are as private as the text: one row per item (`cv_db::embeddings`), encrypted
//! under the item's own data key with `cv_crypto::vault::encrypt_embeddings` (AAD:
//! item id, version, owner, model, and a label of its own). Deleting the item deletes
//! the row; destroying its data key shreds it as well.
//!
//! **Plaintext format** (all integers big-endian), int8 like the in-RAM index
//! (`cv_semantic::VectorIndex`), which re-quantises them to the same codes:
//!
//! ```text
//! 01 | dimensions u16 | chunks u32 | per chunk: start u32 | end u32 | scale f32 | codes i8 × dimensions
//! ```
//!
//! Each vector is normalised to unit length, then divided by `scale` = its largest
//! component / 127 and rounded: 396 bytes per 384-dimension chunk instead of 1 544 as
//! `f32`, at the accuracy `cv_semantic` measured for its index (scores within 0.0023
//! of the exact cosines). `start..end` is the chunk's byte range in the item's text, for
//! showing the chunk that matched.

use std::ops::Range;

use cv_crypto::vault::{DataKey, UnlockedVault, decrypt_embeddings, encrypt_embeddings};
use cv_db::embeddings::StoredEmbeddings;
use cv_db::items::StoredItem;
use zeroize::{Zeroize, Zeroizing};

use crate::{Unreadable, binding, data_key};

const FORMAT: u8 = 1;
/// The most dimensions a stored vector may have (the index's own limit).
const MAX_DIMENSIONS: usize = 1 << 16;
/// The most chunks one item may have: a 16 KiB note cut into the smallest chunks
/// possible stays far below.
pub const MAX_CHUNKS: usize = 4_096;

/// One chunk's vector and where it is in the text.
pub struct EmbeddedChunk {
    pub range: Range<usize>,
    pub vector: Vec<f32>,
}

impl std::fmt::Debug for EmbeddedChunk {
    // The range only: a vector can be inverted back to text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EmbeddedChunk({:?}, {} dimensions)",
            self.range,
            self.vector.len()
        )
    }
}

/// The embeddings of one version of an item, in order of its chunks. Prints counts
/// only, and wipes its vectors when dropped.
#[derive(Default)]
pub struct Embeddings {
    pub chunks: Vec<EmbeddedChunk>,
}

impl std::fmt::Debug for Embeddings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Embeddings({} chunks)", self.chunks.len())
    }
}

impl Drop for Embeddings {
    fn drop(&mut self) {
        for chunk in &mut self.chunks {
            chunk.vector.zeroize();
        }
    }
}

/// Why a stored row is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotUsable {
    /// Computed from another version or by another model: recompute.
    Stale,
    /// It failed authentication or does not parse: recompute (and it is logged).
    Unreadable,
}

impl Embeddings {
    /// The plaintext form (see the module documentation). Vectors must all have the
    /// same length; a vector without direction is stored as zeros.
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let dimensions = self.chunks.first().map_or(0, |c| c.vector.len());
        let mut out = Zeroizing::new(Vec::with_capacity(
            7 + self.chunks.len() * (12 + dimensions),
        ));
        out.push(FORMAT);
        out.extend_from_slice(&u16::try_from(dimensions).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&u32::try_from(self.chunks.len()).unwrap_or(0).to_be_bytes());
        for chunk in &self.chunks {
            let start = u32::try_from(chunk.range.start).unwrap_or(0);
            let end = u32::try_from(chunk.range.end).unwrap_or(0);
            out.extend_from_slice(&start.to_be_bytes());
            out.extend_from_slice(&end.to_be_bytes());
            let norm = chunk.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            let max = chunk
                .vector
                .iter()
                .map(|x| (x / norm).abs())
                .fold(0.0f32, f32::max);
            let usable = norm.is_finite() && norm > 0.0 && max.is_finite() && max > 0.0;
            let scale = if usable { max / 127.0 } else { 0.0 };
            out.extend_from_slice(&scale.to_be_bytes());
            for x in chunk.vector.iter().take(dimensions) {
                let code = if usable {
                    (x / norm / scale).round().clamp(-127.0, 127.0) as i8
                } else {
                    0
                };
                out.push(code.to_be_bytes()[0]);
            }
            // A short vector is padded: the index refuses it anyway.
            for _ in chunk.vector.len()..dimensions {
                out.push(0);
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Embeddings> {
        let (&format, rest) = bytes.split_first()?;
        if format != FORMAT {
            return None;
        }
        let (dimensions, rest) = rest.split_first_chunk::<2>()?;
        let dimensions = usize::from(u16::from_be_bytes(*dimensions));
        let (count, mut rest) = rest.split_first_chunk::<4>()?;
        let count = usize::try_from(u32::from_be_bytes(*count)).ok()?;
        if count > MAX_CHUNKS || dimensions > MAX_DIMENSIONS {
            return None;
        }
        if rest.len() != count * (12 + dimensions) {
            return None;
        }
        let mut chunks = Vec::with_capacity(count);
        for _ in 0..count {
            let (start, r) = rest.split_first_chunk::<4>()?;
            let (end, r) = r.split_first_chunk::<4>()?;
            let (scale, r) = r.split_first_chunk::<4>()?;
            let (codes, r) = r.split_at_checked(dimensions)?;
            rest = r;
            let start = usize::try_from(u32::from_be_bytes(*start)).ok()?;
            let end = usize::try_from(u32::from_be_bytes(*end)).ok()?;
            let scale = f32::from_be_bytes(*scale);
            if start > end || !scale.is_finite() {
                return None;
            }
            let vector = codes
                .iter()
                .map(|&c| f32::from(i8::from_be_bytes([c])) * scale)
                .collect();
            chunks.push(EmbeddedChunk {
                range: start..end,
                vector,
            });
        }
        Some(Embeddings { chunks })
    }
}

/// Encrypts `embeddings` of `item`'s current version under its data key, as a row to
/// store with `cv_db::embeddings::store`.
pub fn seal_embeddings(
    item: &StoredItem,
    vault: &UnlockedVault,
    model: &str,
    embeddings: &Embeddings,
) -> Result<StoredEmbeddings, Unreadable> {
    let key = data_key(item, vault)?;
    Ok(seal_with(item, &key, model, embeddings))
}

fn seal_with(
    item: &StoredItem,
    key: &DataKey,
    model: &str,
    embeddings: &Embeddings,
) -> StoredEmbeddings {
    let plaintext = embeddings.encode();
    StoredEmbeddings {
        item: item.id,
        version: item.version,
        model: model.to_owned(),
        ciphertext: encrypt_embeddings(
            key,
            &binding(item.id, item.version, item.owner),
            model,
            &plaintext,
        ),
    }
}

/// Decrypts `row` with `item`'s data key, if it was computed from the item's current
/// version by `model`.
pub(crate) fn open_with_key(
    item: &StoredItem,
    key: &DataKey,
    model: &str,
    row: &StoredEmbeddings,
) -> Result<Embeddings, NotUsable> {
    if row.item != item.id || row.version != item.version || row.model != model {
        return Err(NotUsable::Stale);
    }
    let opened = decrypt_embeddings(
        key,
        &binding(item.id, item.version, item.owner),
        model,
        &row.ciphertext,
    )
    .ok()
    .and_then(|plaintext| Embeddings::decode(&plaintext));
    opened.ok_or_else(|| {
        tracing::warn!(item = %item.id.0, "an item's embeddings failed their integrity check");
        NotUsable::Unreadable
    })
}

/// Decrypts `row` for `item` (see [`crate::open_for_index`] for the pass at unlock).
pub fn open_embeddings(
    item: &StoredItem,
    vault: &UnlockedVault,
    model: &str,
    row: &StoredEmbeddings,
) -> Result<Embeddings, NotUsable> {
    let key = data_key(item, vault).map_err(|_| NotUsable::Unreadable)?;
    open_with_key(item, &key, model, row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cv_db::UserId;
    use cv_db::items::{ItemId, StoredKey};

    const MODEL: &str = "all-MiniLM-L6-v2";

    fn vault() -> UnlockedVault {
        static BUNDLE: std::sync::OnceLock<(cv_crypto::vault::KeyBundle, cv_crypto::Passphrase)> =
            std::sync::OnceLock::new();
        let (bundle, pass) = BUNDLE.get_or_init(|| {
            let pass = cv_crypto::Passphrase::new("embeddings test passphrase".into()).unwrap();
            let (bundle, _, _) = cv_crypto::vault::create_vault(&pass).unwrap();
            (bundle, pass)
        });
        bundle.unlock(pass).unwrap()
    }

    fn item(vault: &UnlockedVault, id: u128, version: i32) -> StoredItem {
        let id = ItemId(uuid::Uuid::from_u128(id));
        let owner = UserId(uuid::Uuid::from_u128(7));
        let key = DataKey::generate();
        let wrapped = vault.wrap_data_key(&key, &binding(id, 1, owner).data_key_binding());
        StoredItem {
            id,
            owner,
            key: StoredKey::Wrapped(wrapped),
            version,
            content: Vec::new(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
            pinned: false,
            archived: false,
        }
    }

    fn sample() -> Embeddings {
        let vector = |seed: f32| (0..384).map(|i| ((i as f32) * seed).sin()).collect();
        Embeddings {
            chunks: vec![
                EmbeddedChunk {
                    range: 0..10,
                    vector: vector(0.37),
                },
                EmbeddedChunk {
                    range: 8..42,
                    vector: vector(1.91),
                },
            ],
        }
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (na * nb)
    }

    #[test]
    fn embeddings_round_trip_quantised() {
        let vault = vault();
        let item = item(&vault, 1, 2);
        let row = seal_embeddings(&item, &vault, MODEL, &sample()).unwrap();
        assert_eq!(
            (row.item, row.version, row.model.as_str()),
            (item.id, 2, MODEL)
        );
        // 2 chunks of 12 + 384 bytes, the 7-byte head, and AES-GCM's 30.
        assert_eq!(row.ciphertext.len(), 7 + 2 * 396 + 30);
        let opened = open_embeddings(&item, &vault, MODEL, &row).unwrap();
        let original = sample();
        assert_eq!(opened.chunks.len(), 2);
        for (a, b) in opened.chunks.iter().zip(&original.chunks) {
            assert_eq!(a.range, b.range);
            assert!(cosine(&a.vector, &b.vector) > 0.999);
        }
        assert_eq!(format!("{opened:?}"), "Embeddings(2 chunks)");
    }

    #[test]
    fn a_row_moved_to_another_item_or_version_does_not_open() {
        let vault = vault();
        let first = item(&vault, 1, 2);
        let row = seal_embeddings(&first, &vault, MODEL, &sample()).unwrap();
        // Another item (its own key): even with the row relabelled as its own, refused.
        let other = item(&vault, 2, 2);
        let moved = StoredEmbeddings {
            item: other.id,
            ..row.clone()
        };
        assert_eq!(
            open_embeddings(&other, &vault, MODEL, &moved).unwrap_err(),
            NotUsable::Unreadable
        );
        // The same item at another version: stale as labelled, and refused by the AAD
        // when relabelled.
        let edited = StoredItem {
            version: 3,
            ..first.clone()
        };
        assert_eq!(
            open_embeddings(&edited, &vault, MODEL, &row).unwrap_err(),
            NotUsable::Stale
        );
        let relabelled = StoredEmbeddings {
            version: 3,
            ..row.clone()
        };
        assert_eq!(
            open_embeddings(&edited, &vault, MODEL, &relabelled).unwrap_err(),
            NotUsable::Unreadable
        );
        // Another model's name: stale; relabelled: refused.
        assert_eq!(
            open_embeddings(&first, &vault, "other", &row).unwrap_err(),
            NotUsable::Stale
        );
        let renamed = StoredEmbeddings {
            model: "other".into(),
            ..row.clone()
        };
        assert_eq!(
            open_embeddings(&first, &vault, "other", &renamed).unwrap_err(),
            NotUsable::Unreadable
        );
        // The row itself still opens where it belongs.
        assert!(open_embeddings(&first, &vault, MODEL, &row).is_ok());
    }

    #[test]
    fn malformed_plaintexts_are_refused() {
        assert!(Embeddings::decode(&[]).is_none());
        assert!(Embeddings::decode(&[2, 0, 1, 0, 0, 0, 0]).is_none());
        // One chunk announced, none present.
        assert!(Embeddings::decode(&[1, 0, 4, 0, 0, 0, 1]).is_none());
        let good = sample().encode();
        assert!(Embeddings::decode(&good).is_some());
        assert!(Embeddings::decode(&good[..good.len() - 1]).is_none());
        let empty = Embeddings::default().encode();
        assert_eq!(Embeddings::decode(&empty).unwrap().chunks.len(), 0);
    }
}
