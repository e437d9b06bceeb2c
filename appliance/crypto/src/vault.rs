//! The vault key hierarchy: what makes a stolen box or a database dump reveal nothing.
//!
//! ```text
//!  passphrase ──Argon2id(salt, m, t, p)──▶ KEK ─────────┐
//!                                                       ├─unwraps─▶ VAULT KEY (random, 256 bits)
//!  recovery key ──HKDF-SHA256──▶ recovery wrapping key ─┘                 │ wraps (AES-256-GCM)
//!  (shown once; kept by the person, never by the box)      ┌──────────────┴─────────────┐
//!                                                          ▼                            ▼
//!                                          capture secret key (X25519)   DATA KEY (random, one per item)
//!                                                          │ opens             ▲        │ encrypts (AES-256-GCM)
//!                                                          ▼                   │        ▼
//!  capture public key ──X25519 + HKDF──▶ data key sealed while locked ─────────┘   item content, every version
//!  (stored in clear)                     (re-wrapped by the vault key at unlock)
//! ```
//!
//! Changing the passphrase re-wraps the vault key and nothing else; the recovery key
//! unwraps the same vault key, after which a new passphrase can be set. Deleting an item
//! deletes its (wrapped) data key, which makes every version of it unreadable
//! (crypto-shredding) wherever copies of the ciphertext survive.
//!
//! # What is stored where
//!
//! | stored                     | where                            | opened with                 |
//! |----------------------------|----------------------------------|-----------------------------|
//! | [`KeyBundle`]              | the person's account record      | passphrase or recovery key  |
//! | wrapped or sealed data key | the item's record                | vault key or capture secret |
//! | content blob               | each version of the item         | the item's data key         |
//! | suggestion feedback        | one row per answer               | vault key                   |
//! | recovery key               | with the person only (on paper)  | —                           |
//!
//! Never stored: the KEK, the vault key, the capture secret key and plaintext data keys
//! live only in the vault service's memory, in types that print nothing and are zeroized
//! when dropped; decrypted content is returned as `Zeroizing<Vec<u8>>`.
//!
//! # Algorithms and their sources
//!
//! - **Argon2id** (RFC 9106) turns the passphrase into the 256-bit KEK, with the
//!   parameters of [`crate::password`] (RFC 9106 §4, second recommended option) and a
//!   random 16-byte salt per bundle (RFC 9106 §3.1 recommends 128-bit salts). The
//!   parameters are stored in the bundle so they can be raised later; a new passphrase
//!   always gets the current ones.
//! - **HKDF-SHA256** (RFC 5869) turns the recovery key into its wrapping key. The
//!   recovery key is 256 uniformly random bits, so no slow KDF is needed: brute force is
//!   2^256 work whatever the hash costs. HKDF also derives each sealing key from an X25519
//!   shared secret, which is not uniformly random and must be hashed (RFC 7748 §6.1); its
//!   `info` binds a label and both public keys.
//! - **AES-256-GCM** (NIST SP 800-38D) for every encryption and key wrap, with 96-bit
//!   nonces (§5.2.1.1) drawn at random (§8.2.2) and full 128-bit tags. Random nonces keep
//!   the collision risk acceptable only below 2^32 messages per key (§8.3); no key here
//!   comes close: a data key encrypts one message per version of one item, the vault key
//!   wraps one data key per item plus the capture secret and encrypts one record per
//!   answer to a suggestion, and every KEK and sealing key
//!   encrypts exactly one message.
//! - **X25519** (RFC 7748) for sealing data keys to the person while the vault is locked,
//!   in the shape of HPKE's base mode (RFC 9180) with DHKEM(X25519, HKDF-SHA256) and
//!   AES-256-GCM (not wire-compatible with HPKE). All-zero shared secrets (low-order
//!   points) are refused, as RFC 7748 §6.1 allows. A [`CaptureSealer`] makes one
//!   ephemeral key and exchange per chain of up to [`SEAL_CHAIN_MAX`] seals and derives
//!   each seal's key from a hash ratchet (the symmetric ratchet of the Signal protocol):
//!   `chain₀ = HKDF(shared, root label, ephemeral, recipient)`, `keyᵢ = HKDF(chainᵢ, key
//!   label)`, `chainᵢ₊₁ = HKDF(chainᵢ, next label)`, and `chainᵢ` is overwritten by
//!   `chainᵢ₊₁` as soon as `keyᵢ` is used. The sealer holds only the current chain key,
//!   so reading the service's memory while it is locked opens none of the keys sealed
//!   before (the ephemeral secret is dropped at once), as with one exchange per seal;
//!   opening them all at unlock costs one X25519 exchange per chain instead of one per
//!   capture. Every chain key encrypts exactly one data key.
//! - **Randomness**: every key, salt and nonce comes from `rand::rng()`, a CSPRNG
//!   (ChaCha12) seeded and periodically reseeded from the operating system.
//!
//! # Bindings (AAD)
//!
//! Every AES-GCM call authenticates, as associated data, the blob header, a label naming
//! its purpose (so no ciphertext can be replayed in another role) and the context it
//! belongs to. Labels are distinct and every field has a fixed length, so the
//! concatenations are unambiguous.
//!
//! - Content: item id, version, owner. A ciphertext copied to another item, version or
//!   person fails to decrypt.
//! - Embeddings (the vectors of an item's chunks, under the item's data key): item id,
//!   version, owner and the model's name (length-prefixed), with their own label, so
//!   a row moved to another item or version, or passed off as content, fails.
//! - Suggestion feedback (what the person accepted or dismissed, under the vault key):
//!   owner and the record's id, with its own label, so a row moved to another person or
//!   duplicated under a new id fails.
//! - Data keys (wrapped or sealed): item id and owner, **not the version**: a data key
//!   belongs to the item, every version of which is encrypted under it, so that deleting
//!   the item's single data key shreds all of its versions. Binding a version here would
//!   force one data key per version, and deleting an item would then mean finding and
//!   destroying every one of them.
//! - Bundle wraps: the capture public key (all three) and, for the passphrase wrap, the
//!   Argon2 parameters and salt. The recovery wrap deliberately excludes the passphrase
//!   fields so that a passphrase change, which cannot re-wrap for the recovery key (the
//!   box never keeps it), leaves it valid.
//!
//! # Blob formats (all integers big-endian)
//!
//! Every blob starts with [`FORMAT_VERSION`] (1) and a type tag; parsers check both and
//! every length before any cryptography, and report problems as
//! [`VaultCryptoError::Malformed`]; failed authentication is
//! [`VaultCryptoError::Tampered`]. Nothing here panics on arbitrary bytes.
//!
//! ```text
//! key bundle (274 bytes)   01 01 | m u32 | t u32 | p u32 | salt 16 | passphrase wrap 60
//!                          | recovery wrap 60 | capture public key 32 | capture secret wrap 60
//!                          | SHA-256 of everything before 32
//! content (30 + n)         01 02 | nonce 12 | ciphertext n | tag 16
//! embeddings (30 + n)      01 06 | nonce 12 | ciphertext n | tag 16
//! feedback (30 + n)        01 07 | nonce 12 | ciphertext n | tag 16
//! wrapped data key (62)    01 03 | nonce 12 | ciphertext 32 | tag 16
//! sealed data key (94)     01 04 | ephemeral public key 32 | nonce 12 | ciphertext 32 | tag 16
//!                          (one exchange per seal; still opened, no longer written)
//! chain-sealed key (98)    01 05 | ephemeral public key 32 | chain index u32
//!                          | nonce 12 | ciphertext 32 | tag 16
//! (each "wrap 60" is nonce 12 | ciphertext 32 | tag 16)
//! ```
//!
//! The bundle's trailing SHA-256 is a checksum, not an authenticator: it tells storage
//! damage apart from a wrong passphrase (which otherwise look alike, since a damaged salt
//! simply derives another KEK) before Argon2 runs. Deliberate changes are caught by the
//! AES-GCM tags, which authenticate every clear field.

use std::fmt;

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use argon2::{Algorithm, Argon2, Params, Version};
use hkdf::Hkdf;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::{ConditionallySelectable as _, ConstantTimeEq as _};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::password::{ARGON2_ITERATIONS, ARGON2_MEMORY_KIB, ARGON2_PARALLELISM, Passphrase};
use crate::token::{CROCKFORD_ALPHABET, constant_time_eq, normalize_human_code, sha256};

/// The first byte of every blob written here. A later format gets a new number, and
/// readers keep accepting the old one until nothing stored uses it.
pub const FORMAT_VERSION: u8 = 1;

/// AES-256 keys, the vault key, data keys, the recovery key and X25519 keys: 256 bits.
const KEY_LEN: usize = 32;
/// 96-bit GCM nonce, the length NIST SP 800-38D §5.2.1.1 recommends.
const NONCE_LEN: usize = 12;
/// Full 128-bit GCM tag (SP 800-38D §5.2.1.2).
const TAG_LEN: usize = 16;
/// 128-bit Argon2 salt (RFC 9106 §3.1).
const SALT_LEN: usize = 16;
const HEADER_LEN: usize = 2;
/// A 256-bit key wrapped with AES-256-GCM: nonce, ciphertext, tag.
const WRAPPED_KEY_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;
const KDF_PARAMS_LEN: usize = 3 * 4 + SALT_LEN;
const CHECKSUM_LEN: usize = 32;
const KEY_BUNDLE_LEN: usize =
    HEADER_LEN + KDF_PARAMS_LEN + 3 * WRAPPED_KEY_LEN + KEY_LEN + CHECKSUM_LEN;
const WRAPPED_DATA_KEY_LEN: usize = HEADER_LEN + WRAPPED_KEY_LEN;
const SEALED_DATA_KEY_LEN: usize = HEADER_LEN + KEY_LEN + WRAPPED_KEY_LEN;
const CHAIN_SEALED_DATA_KEY_LEN: usize = HEADER_LEN + KEY_LEN + 4 + WRAPPED_KEY_LEN;

/// The most Argon2 memory a stored bundle may ask for: 16 times today's 64 MiB leaves
/// room to raise the parameters, while a damaged or hostile bundle cannot make an unlock
/// allocate more than a small box has.
const MAX_ARGON2_MEMORY_KIB: u32 = 1024 * 1024;
/// The most Argon2 passes a stored bundle may ask for (today's is 3); bounds unlock time.
const MAX_ARGON2_ITERATIONS: u32 = 64;
/// The most Argon2 lanes a stored bundle may ask for (today's is 4).
const MAX_ARGON2_PARALLELISM: u32 = 64;

/// Bytes of the recovery key's checksum: a mistyped key passes it with probability 2^-24.
const RECOVERY_CHECK_LEN: usize = 3;
/// (256 key bits + 24 checksum bits) / 5 bits per base32 character: exactly 56, no padding.
const RECOVERY_CHARS: usize = (KEY_LEN + RECOVERY_CHECK_LEN) * 8 / 5;

// Purpose labels (domain separation): one per use of a key, never reused.
const LABEL_PASSPHRASE_WRAP: &[u8] = b"contextvault/v1/vault-key/passphrase-wrap";
const LABEL_RECOVERY_WRAP: &[u8] = b"contextvault/v1/vault-key/recovery-wrap";
const LABEL_RECOVERY_KDF: &[u8] = b"contextvault/v1/recovery-key/wrapping-key";
const LABEL_RECOVERY_CHECK: &[u8] = b"contextvault/v1/recovery-key/checksum";
const LABEL_CAPTURE_WRAP: &[u8] = b"contextvault/v1/capture-secret/wrap";
const LABEL_CONTENT: &[u8] = b"contextvault/v1/item/content";
const LABEL_EMBEDDINGS: &[u8] = b"contextvault/v1/item/embeddings";
const LABEL_FEEDBACK: &[u8] = b"contextvault/v1/suggestion-feedback";
const LABEL_DATA_KEY_WRAP: &[u8] = b"contextvault/v1/data-key/wrap";
const LABEL_DATA_KEY_SEAL: &[u8] = b"contextvault/v1/data-key/seal";
const LABEL_DATA_KEY_CHAIN_SEAL: &[u8] = b"contextvault/v1/data-key/chain-seal";
const LABEL_SEAL_CHAIN_ROOT: &[u8] = b"contextvault/v1/seal-chain/root";
const LABEL_SEAL_CHAIN_NEXT: &[u8] = b"contextvault/v1/seal-chain/next";
const LABEL_SEAL_CHAIN_KEY: &[u8] = b"contextvault/v1/seal-chain/key";

/// Everything that can go wrong here. Callers map these to what the person sees: the
/// first three are their doing (ask again), `Tampered` and `Malformed` mean stored data
/// is damaged or was altered (report it, never show its contents), `Kdf` is a bug.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultCryptoError {
    #[error("wrong passphrase")]
    WrongPassphrase,
    #[error("wrong recovery key: it is well formed but does not open this vault")]
    WrongRecoveryKey,
    #[error("not a valid recovery key: check it for typos")]
    InvalidRecoveryKey,
    #[error("the unlocked vault does not belong to this key bundle")]
    VaultMismatch,
    #[error("the {what} failed authentication: it was altered, damaged or belongs elsewhere")]
    Tampered { what: &'static str },
    #[error("the {what} is malformed: {reason}")]
    Malformed {
        what: &'static str,
        reason: &'static str,
    },
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

/// The kinds of blob, each with its type tag (the second byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blob {
    KeyBundle = 1,
    Content = 2,
    WrappedDataKey = 3,
    SealedDataKey = 4,
    ChainSealedDataKey = 5,
    Embeddings = 6,
    Feedback = 7,
}

impl Blob {
    fn header(self) -> [u8; HEADER_LEN] {
        [FORMAT_VERSION, self as u8]
    }

    fn what(self) -> &'static str {
        match self {
            Blob::KeyBundle => "key bundle",
            Blob::Content => "item content",
            Blob::WrappedDataKey => "wrapped data key",
            Blob::SealedDataKey | Blob::ChainSealedDataKey => "sealed data key",
            Blob::Embeddings => "item embeddings",
            Blob::Feedback => "suggestion feedback",
        }
    }

    fn malformed(self, reason: &'static str) -> VaultCryptoError {
        VaultCryptoError::Malformed {
            what: self.what(),
            reason,
        }
    }

    fn tampered(self) -> VaultCryptoError {
        VaultCryptoError::Tampered { what: self.what() }
    }

    /// Checks the header of `blob` (and its exact length where it has one) and returns
    /// what follows the header.
    fn parse(self, blob: &[u8], exact_len: Option<usize>) -> Result<Reader<'_>, VaultCryptoError> {
        let rest = match blob {
            [] | [_] => return Err(self.malformed("too short to hold a header")),
            [version, ..] if *version != FORMAT_VERSION => {
                return Err(self.malformed("unknown format version"));
            }
            [_, tag, ..] if *tag != self as u8 => {
                return Err(self.malformed("it is another kind of blob"));
            }
            [_, _, rest @ ..] => rest,
        };
        if exact_len.is_some_and(|len| blob.len() != len) {
            return Err(self.malformed("wrong length"));
        }
        Ok(Reader { rest, blob: self })
    }

    /// The associated data of one AES-GCM call: header, purpose label, context fields.
    fn aad(self, label: &[u8], fields: &[&[u8]]) -> Vec<u8> {
        let mut aad = self.header().to_vec();
        aad.extend_from_slice(label);
        for field in fields {
            aad.extend_from_slice(field);
        }
        aad
    }
}

/// Reads fixed-size fields off the front of a blob; running short is `Malformed`.
struct Reader<'a> {
    rest: &'a [u8],
    blob: Blob,
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<&'a [u8; N], VaultCryptoError> {
        let (field, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or_else(|| self.blob.malformed("truncated"))?;
        self.rest = rest;
        Ok(field)
    }

    fn u32(&mut self) -> Result<u32, VaultCryptoError> {
        self.take::<4>().map(|b| u32::from_be_bytes(*b))
    }

    fn rest(self) -> &'a [u8] {
        self.rest
    }
}

fn random_bytes<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut bytes = Zeroizing::new([0u8; N]);
    rand::rng().fill_bytes(bytes.as_mut_slice());
    bytes
}

/// Wraps a 256-bit secret under `wrapping` (AES-256-GCM, random nonce).
fn wrap_key(wrapping: &[u8; KEY_LEN], aad: &[u8], secret: &[u8; KEY_LEN]) -> [u8; WRAPPED_KEY_LEN] {
    let mut out = [0u8; WRAPPED_KEY_LEN];
    let (nonce, rest) = out.split_at_mut(NONCE_LEN);
    rand::rng().fill_bytes(nonce);
    let (body, tag_out) = rest.split_at_mut(KEY_LEN);
    body.copy_from_slice(secret);
    let tag = Aes256Gcm::new(wrapping.into())
        .encrypt_in_place_detached(Nonce::from_slice(nonce), aad, body)
        .expect("32 bytes are far within AES-GCM's plaintext limit");
    tag_out.copy_from_slice(&tag);
    out
}

/// Unwraps what [`wrap_key`] made; `None` when authentication fails, in which case
/// nothing was decrypted (GCM checks the tag first).
fn unwrap_key(
    wrapping: &[u8; KEY_LEN],
    aad: &[u8],
    wrapped: &[u8; WRAPPED_KEY_LEN],
) -> Option<Zeroizing<[u8; KEY_LEN]>> {
    let (nonce, rest) = wrapped.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(KEY_LEN);
    let mut secret = Zeroizing::new([0u8; KEY_LEN]);
    secret.copy_from_slice(body);
    Aes256Gcm::new(wrapping.into())
        .decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            aad,
            secret.as_mut_slice(),
            Tag::from_slice(tag),
        )
        .ok()?;
    Some(secret)
}

/// HKDF-SHA256 (RFC 5869) to one 256-bit key, no salt (§3.1: optional).
fn hkdf_key(ikm: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut okm = Zeroizing::new([0u8; KEY_LEN]);
    Hkdf::<Sha256>::new(None, ikm)
        .expand_multi_info(info, okm.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA256 output length (at most 255 * 32)");
    okm
}

macro_rules! redacted_debug {
    ($($name:ident),*) => {$(
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    )*};
}

redacted_debug!(
    VaultKey,
    Kek,
    CaptureSecret,
    DataKey,
    RecoveryKey,
    UnlockedVault
);

/// The person's random 256-bit master key. Exists only inside an [`UnlockedVault`].
#[derive(Zeroize, ZeroizeOnDrop)]
struct VaultKey([u8; KEY_LEN]);

/// Key-encryption key derived from the passphrase; lives for the length of one call.
#[derive(Zeroize, ZeroizeOnDrop)]
struct Kek([u8; KEY_LEN]);

/// The X25519 secret that opens sealed captures. (x25519-dalek wipes its own on drop
/// but does not say so with the `ZeroizeOnDrop` marker; deriving it here makes it checkable.)
#[derive(Zeroize, ZeroizeOnDrop)]
struct CaptureSecret(StaticSecret);

/// One item's content key. Stored only wrapped by the vault key or sealed to the capture
/// public key; destroying those copies destroys the item.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; KEY_LEN]);

impl DataKey {
    pub fn generate() -> DataKey {
        DataKey(*random_bytes())
    }
}

/// 256 random bits that unwrap the vault key when the passphrase is lost. Shown to the
/// person once ([`RecoveryKey::to_display`]) and never stored on the box.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct RecoveryKey([u8; KEY_LEN]);

impl RecoveryKey {
    fn generate() -> RecoveryKey {
        RecoveryKey(*random_bytes())
    }

    fn wrapping_key(&self) -> Zeroizing<[u8; KEY_LEN]> {
        hkdf_key(&self.0, &[LABEL_RECOVERY_KDF])
    }

    fn checksum(key: &[u8; KEY_LEN]) -> [u8; RECOVERY_CHECK_LEN] {
        let digest = Sha256::new()
            .chain_update(LABEL_RECOVERY_CHECK)
            .chain_update(key)
            .finalize();
        let mut check = [0u8; RECOVERY_CHECK_LEN];
        check.copy_from_slice(&digest[..RECOVERY_CHECK_LEN]);
        check
    }

    /// The key for a person to write down: 256 key bits and a 24-bit checksum in
    /// Crockford base32, 14 groups of 4 (`XXXX-XXXX-…`, 69 characters).
    pub fn to_display(&self) -> Zeroizing<String> {
        let mut payload = Zeroizing::new([0u8; KEY_LEN + RECOVERY_CHECK_LEN]);
        payload[..KEY_LEN].copy_from_slice(&self.0);
        payload[KEY_LEN..].copy_from_slice(&RecoveryKey::checksum(&self.0));
        let mut out = Zeroizing::new(String::with_capacity(RECOVERY_CHARS + RECOVERY_CHARS / 4));
        let (mut acc, mut bits, mut written) = (0u32, 0u32, 0usize);
        for &byte in payload.iter() {
            acc = (acc << 8) | u32::from(byte);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                if written > 0 && written % 4 == 0 {
                    out.push('-');
                }
                out.push(char::from(
                    CROCKFORD_ALPHABET[((acc >> bits) & 31) as usize],
                ));
                written += 1;
            }
            acc &= (1 << bits) - 1;
        }
        acc.zeroize();
        out
    }

    /// Reads a typed recovery key: case, spaces and dashes do not matter, and O, I, L
    /// read as 0, 1, 1. A wrong length, a foreign character or a failed checksum is
    /// [`VaultCryptoError::InvalidRecoveryKey`] (a typo), distinct from a well-formed key
    /// that opens nothing ([`VaultCryptoError::WrongRecoveryKey`]).
    pub fn parse(typed: &str) -> Result<RecoveryKey, VaultCryptoError> {
        let normalized = Zeroizing::new(normalize_human_code(typed));
        if normalized.len() != RECOVERY_CHARS {
            return Err(VaultCryptoError::InvalidRecoveryKey);
        }
        let mut payload = Zeroizing::new([0u8; KEY_LEN + RECOVERY_CHECK_LEN]);
        let (mut acc, mut bits, mut filled) = (0u32, 0u32, 0usize);
        for c in normalized.bytes() {
            // Constant-time lookup: which characters the key holds must not show in timing.
            let mut value = 0u8;
            let mut found = subtle::Choice::from(0);
            for (index, &symbol) in (0u8..).zip(CROCKFORD_ALPHABET.iter()) {
                let hit = symbol.ct_eq(&c);
                value.conditional_assign(&index, hit);
                found |= hit;
            }
            if !bool::from(found) {
                return Err(VaultCryptoError::InvalidRecoveryKey);
            }
            acc = (acc << 5) | u32::from(value);
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                let slot = payload
                    .get_mut(filled)
                    .ok_or(VaultCryptoError::InvalidRecoveryKey)?;
                *slot = (acc >> bits) as u8;
                filled += 1;
                acc &= (1 << bits) - 1;
            }
            value.zeroize();
        }
        acc.zeroize();
        let mut key = RecoveryKey([0u8; KEY_LEN]);
        key.0.copy_from_slice(&payload[..KEY_LEN]);
        if !constant_time_eq(&payload[KEY_LEN..], &RecoveryKey::checksum(&key.0)) {
            return Err(VaultCryptoError::InvalidRecoveryKey);
        }
        Ok(key)
    }
}

/// The public half of the capture key pair: stored in clear so that captures can be
/// sealed while the vault is locked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CapturePublicKey(PublicKey);

impl fmt::Debug for CapturePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CapturePublicKey(")?;
        for byte in self.0.as_bytes() {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

impl CapturePublicKey {
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0.to_bytes()
    }

    /// Accepts any X25519 public key except the low-order points, which would make every
    /// sealing key all zeros and so public (RFC 7748 §6.1).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Result<CapturePublicKey, VaultCryptoError> {
        // Any scalar is a multiple of the cofactor after clamping, so it maps exactly the
        // low-order points to zero.
        if x25519_dalek::x25519([1; KEY_LEN], bytes) == [0; KEY_LEN] {
            return Err(VaultCryptoError::Malformed {
                what: "capture public key",
                reason: "it is a low-order point",
            });
        }
        Ok(CapturePublicKey(PublicKey::from(bytes)))
    }
}

/// What an item's content is bound to: moved to another item, version or person, the
/// ciphertext no longer decrypts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ItemBinding {
    /// The item's UUID, as its 16 bytes.
    pub item: [u8; 16],
    pub version: u64,
    /// The owning person's UUID, as its 16 bytes.
    pub owner: [u8; 16],
}

impl ItemBinding {
    /// What the item's data key is bound to (every version shares it).
    pub fn data_key_binding(&self) -> DataKeyBinding {
        DataKeyBinding {
            item: self.item,
            owner: self.owner,
        }
    }
}

/// What a wrapped or sealed data key is bound to: its item and owner, not a version
/// (one data key per item; see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DataKeyBinding {
    pub item: [u8; 16],
    pub owner: [u8; 16],
}

impl DataKeyBinding {
    fn aad(&self, blob: Blob, label: &[u8]) -> Vec<u8> {
        blob.aad(label, &[&self.item, &self.owner])
    }
}

/// Encrypts one version of an item's content under its data key (AES-256-GCM, random
/// nonce, AAD binding item, version and owner).
///
/// # Panics
///
/// Only for content over 64 GiB (AES-GCM's limit, SP 800-38D §5.2.1.1), which is never
/// held in memory: large files are encrypted in streamed segments.
pub fn encrypt_content(key: &DataKey, binding: &ItemBinding, plaintext: &[u8]) -> Vec<u8> {
    encrypt_item_blob(Blob::Content, key, &content_aad(binding), plaintext)
}

/// AES-256-GCM with a random nonce: `header | nonce | ciphertext | tag`.
fn encrypt_item_blob(blob: Blob, key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    encrypt_blob(blob, &key.0, aad, plaintext)
}

/// AES-256-GCM under any 256-bit key: `header | nonce | ciphertext | tag`.
fn encrypt_blob(blob: Blob, key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce = random_bytes::<NONCE_LEN>();
    let ciphertext = Aes256Gcm::new(key.into())
        .encrypt(
            Nonce::from_slice(nonce.as_slice()),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("content over 64 GiB is never encrypted in one piece");
    let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&blob.header());
    out.extend_from_slice(nonce.as_slice());
    out.extend_from_slice(&ciphertext);
    out
}

/// Decrypts what [`encrypt_content`] made for the same binding.
pub fn decrypt_content(
    key: &DataKey,
    binding: &ItemBinding,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultCryptoError> {
    decrypt_item_blob(Blob::Content, key, &content_aad(binding), blob)
}

fn decrypt_item_blob(
    kind: Blob,
    key: &DataKey,
    aad: &[u8],
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultCryptoError> {
    decrypt_blob(kind, &key.0, aad, blob)
}

fn decrypt_blob(
    kind: Blob,
    key: &[u8; KEY_LEN],
    aad: &[u8],
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultCryptoError> {
    let mut reader = kind.parse(blob, None)?;
    let nonce = reader.take::<NONCE_LEN>()?;
    let ciphertext = reader.rest();
    if ciphertext.len() < TAG_LEN {
        return Err(kind.malformed("truncated"));
    }
    Aes256Gcm::new(key.into())
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| kind.tampered())
}

/// Encrypts the embeddings of one version of an item (its chunks' vectors, which can be
/// inverted back to text) under the item's data key: AES-256-GCM, random nonce, AAD
/// binding item, version, owner and the model's name, with a label of its own so that
/// content and embeddings can never stand in for each other.
///
/// # Panics
///
/// Only for a plaintext over 64 GiB, which embeddings never approach.
pub fn encrypt_embeddings(
    key: &DataKey,
    binding: &ItemBinding,
    model: &str,
    plaintext: &[u8],
) -> Vec<u8> {
    encrypt_item_blob(
        Blob::Embeddings,
        key,
        &embeddings_aad(binding, model),
        plaintext,
    )
}

/// Decrypts what [`encrypt_embeddings`] made for the same binding and model.
pub fn decrypt_embeddings(
    key: &DataKey,
    binding: &ItemBinding,
    model: &str,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultCryptoError> {
    decrypt_item_blob(Blob::Embeddings, key, &embeddings_aad(binding, model), blob)
}

fn embeddings_aad(binding: &ItemBinding, model: &str) -> Vec<u8> {
    // The model name is the only variable-length field: last, after its length.
    let model_len = u32::try_from(model.len()).unwrap_or(u32::MAX);
    Blob::Embeddings.aad(
        LABEL_EMBEDDINGS,
        &[
            &binding.item,
            &binding.version.to_be_bytes(),
            &binding.owner,
            &model_len.to_be_bytes(),
            model.as_bytes(),
        ],
    )
}

fn feedback_aad(owner: [u8; 16], record: [u8; 16]) -> Vec<u8> {
    Blob::Feedback.aad(LABEL_FEEDBACK, &[&owner, &record])
}

fn content_aad(binding: &ItemBinding) -> Vec<u8> {
    Blob::Content.aad(
        LABEL_CONTENT,
        &[
            &binding.item,
            &binding.version.to_be_bytes(),
            &binding.owner,
        ],
    )
}

/// Seals one data key to the person's capture public key with its own X25519 exchange
/// (the `01 04` form). Captures use a [`CaptureSealer`]; this form is still opened.
/// Ephemeral X25519 → HKDF-SHA256 (info: label, ephemeral and recipient public keys) →
/// AES-256-GCM.
pub fn seal_data_key(
    recipient: &CapturePublicKey,
    key: &DataKey,
    binding: &DataKeyBinding,
) -> Vec<u8> {
    let ephemeral = StaticSecret::from(*random_bytes::<KEY_LEN>());
    let ephemeral_public = PublicKey::from(&ephemeral);
    // Contributory: `CapturePublicKey` refuses low-order points when it is built.
    let shared = ephemeral.diffie_hellman(&recipient.0);
    let sealing_key = sealing_key(shared.as_bytes(), &ephemeral_public, &recipient.0);
    let wrapped = wrap_key(
        &sealing_key,
        &binding.aad(Blob::SealedDataKey, LABEL_DATA_KEY_SEAL),
        &key.0,
    );
    let mut out = Vec::with_capacity(SEALED_DATA_KEY_LEN);
    out.extend_from_slice(&Blob::SealedDataKey.header());
    out.extend_from_slice(ephemeral_public.as_bytes());
    out.extend_from_slice(&wrapped);
    out
}

fn sealing_key(
    shared: &[u8; KEY_LEN],
    ephemeral: &PublicKey,
    recipient: &PublicKey,
) -> Zeroizing<[u8; KEY_LEN]> {
    hkdf_key(
        shared,
        &[
            LABEL_DATA_KEY_SEAL,
            ephemeral.as_bytes(),
            recipient.as_bytes(),
        ],
    )
}

/// The most data keys one chain seals; a [`CaptureSealer`] starts a new chain (a new
/// ephemeral key) after this many. Also the longest chain an opener will walk, so a
/// hostile blob cannot ask for billions of hash steps.
pub const SEAL_CHAIN_MAX: u32 = 10_000;

/// Seals data keys to the person's capture public key while the vault is locked, so a
/// capture can be stored that the box can write but not read back: one X25519 exchange
/// per chain of seals, each seal under its own key from a hash ratchet (see the module
/// documentation). Holds the current chain key, which prints nothing and is zeroized
/// when it is replaced or dropped.
pub struct CaptureSealer {
    recipient: PublicKey,
    ephemeral: PublicKey,
    chain: Zeroizing<[u8; KEY_LEN]>,
    next: u32,
}

impl fmt::Debug for CaptureSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureSealer")
            .field("sealed", &self.next)
            .finish_non_exhaustive()
    }
}

impl CaptureSealer {
    pub fn new(recipient: &CapturePublicKey) -> CaptureSealer {
        let ephemeral_secret = StaticSecret::from(*random_bytes::<KEY_LEN>());
        let ephemeral = PublicKey::from(&ephemeral_secret);
        // Contributory: `CapturePublicKey` refuses low-order points when it is built.
        let shared = ephemeral_secret.diffie_hellman(&recipient.0);
        CaptureSealer {
            recipient: recipient.0,
            ephemeral,
            chain: chain_root(shared.as_bytes(), &ephemeral, &recipient.0),
            next: 0,
        }
    }

    /// The public key this sealer seals to.
    pub fn recipient(&self) -> CapturePublicKey {
        CapturePublicKey(self.recipient)
    }

    /// Seals `key`, starting a new chain first when this one is full.
    pub fn seal(&mut self, key: &DataKey, binding: &DataKeyBinding) -> Vec<u8> {
        if self.next >= SEAL_CHAIN_MAX {
            *self = CaptureSealer::new(&CapturePublicKey(self.recipient));
        }
        let index = self.next;
        let sealing_key = chain_key(&self.chain);
        *self.chain = *chain_next(&self.chain);
        self.next += 1;
        let wrapped = wrap_key(
            &sealing_key,
            &chain_seal_aad(binding, &self.ephemeral, index),
            &key.0,
        );
        let mut out = Vec::with_capacity(CHAIN_SEALED_DATA_KEY_LEN);
        out.extend_from_slice(&Blob::ChainSealedDataKey.header());
        out.extend_from_slice(self.ephemeral.as_bytes());
        out.extend_from_slice(&index.to_be_bytes());
        out.extend_from_slice(&wrapped);
        out
    }
}

fn chain_root(
    shared: &[u8; KEY_LEN],
    ephemeral: &PublicKey,
    recipient: &PublicKey,
) -> Zeroizing<[u8; KEY_LEN]> {
    hkdf_key(
        shared,
        &[
            LABEL_SEAL_CHAIN_ROOT,
            ephemeral.as_bytes(),
            recipient.as_bytes(),
        ],
    )
}

fn chain_key(chain: &[u8; KEY_LEN]) -> Zeroizing<[u8; KEY_LEN]> {
    hkdf_key(chain, &[LABEL_SEAL_CHAIN_KEY])
}

fn chain_next(chain: &[u8; KEY_LEN]) -> Zeroizing<[u8; KEY_LEN]> {
    hkdf_key(chain, &[LABEL_SEAL_CHAIN_NEXT])
}

fn chain_seal_aad(binding: &DataKeyBinding, ephemeral: &PublicKey, index: u32) -> Vec<u8> {
    let mut aad = binding.aad(Blob::ChainSealedDataKey, LABEL_DATA_KEY_CHAIN_SEAL);
    aad.extend_from_slice(ephemeral.as_bytes());
    aad.extend_from_slice(&index.to_be_bytes());
    aad
}

/// The chains met while opening many sealed keys with one vault (the index build at
/// unlock): each chain's X25519 exchange is done once and its keys derived once, in
/// order, instead of once per sealed key. Every key in it is zeroized when it is dropped.
#[derive(Default)]
pub struct SealedKeyCache {
    chains: std::sync::Mutex<std::collections::HashMap<[u8; KEY_LEN], OpenedChain>>,
}

impl fmt::Debug for SealedKeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedKeyCache(<redacted>)")
    }
}

/// One chain's keys derived so far (`keys[i]` seals index `i`) and the chain key after
/// the last of them.
struct OpenedChain {
    next: Zeroizing<[u8; KEY_LEN]>,
    keys: Zeroizing<Vec<[u8; KEY_LEN]>>,
}

impl OpenedChain {
    fn key(&mut self, index: u32) -> Zeroizing<[u8; KEY_LEN]> {
        let index = index as usize;
        while self.keys.len() <= index {
            if self.keys.len() == self.keys.capacity() {
                // Grown by hand so that the old buffer is zeroized, not just freed.
                let mut bigger = Zeroizing::new(Vec::with_capacity((self.keys.len() * 2).max(16)));
                bigger.extend_from_slice(&self.keys);
                self.keys = bigger;
            }
            self.keys.push(*chain_key(&self.next));
            *self.next = *chain_next(&self.next);
        }
        Zeroizing::new(self.keys[index])
    }
}

/// The keys of an unlocked vault. Lives only in the vault service's memory; everything
/// in it is zeroized when it is dropped (locking is dropping it).
pub struct UnlockedVault {
    vault_key: VaultKey,
    capture: CaptureSecret,
    /// Derived from `capture` once (a scalar multiplication), not per sealed key.
    capture_public: PublicKey,
}

impl UnlockedVault {
    /// `capture_public` must be `capture`'s public half (the callers have it already).
    fn new(
        vault_key: VaultKey,
        capture: CaptureSecret,
        capture_public: PublicKey,
    ) -> UnlockedVault {
        UnlockedVault {
            vault_key,
            capture,
            capture_public,
        }
    }

    pub fn capture_public(&self) -> CapturePublicKey {
        CapturePublicKey(self.capture_public)
    }

    /// Wraps an item's data key under the vault key, for storing beside the item.
    pub fn wrap_data_key(&self, key: &DataKey, binding: &DataKeyBinding) -> Vec<u8> {
        let wrapped = wrap_key(
            &self.vault_key.0,
            &binding.aad(Blob::WrappedDataKey, LABEL_DATA_KEY_WRAP),
            &key.0,
        );
        let mut out = Vec::with_capacity(WRAPPED_DATA_KEY_LEN);
        out.extend_from_slice(&Blob::WrappedDataKey.header());
        out.extend_from_slice(&wrapped);
        out
    }

    /// Encrypts one record of the person's answers to suggestions (which tag or task
    /// was accepted or dismissed: as private as the tags themselves) under the vault
    /// key: AES-256-GCM, random nonce, AAD binding the owner and the record's own id with
    /// a label of its own, so a row moved to another person, copied under another id or
    /// passed off as any other blob fails to decrypt.
    ///
    /// # Panics
    ///
    /// Only for a plaintext over 64 GiB; a record is a few hundred bytes.
    pub fn encrypt_feedback(&self, owner: [u8; 16], record: [u8; 16], plaintext: &[u8]) -> Vec<u8> {
        encrypt_blob(
            Blob::Feedback,
            &self.vault_key.0,
            &feedback_aad(owner, record),
            plaintext,
        )
    }

    /// Decrypts what [`UnlockedVault::encrypt_feedback`] made for the same owner and record.
    pub fn decrypt_feedback(
        &self,
        owner: [u8; 16],
        record: [u8; 16],
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultCryptoError> {
        decrypt_blob(
            Blob::Feedback,
            &self.vault_key.0,
            &feedback_aad(owner, record),
            blob,
        )
    }

    pub fn unwrap_data_key(
        &self,
        blob: &[u8],
        binding: &DataKeyBinding,
    ) -> Result<DataKey, VaultCryptoError> {
        let blob_type = Blob::WrappedDataKey;
        let mut reader = blob_type.parse(blob, Some(WRAPPED_DATA_KEY_LEN))?;
        let wrapped = reader.take::<WRAPPED_KEY_LEN>()?;
        unwrap_key(
            &self.vault_key.0,
            &binding.aad(blob_type, LABEL_DATA_KEY_WRAP),
            wrapped,
        )
        .map(|key| DataKey(*key))
        .ok_or_else(|| blob_type.tampered())
    }

    /// Opens a data key sealed while the vault was locked (by a [`CaptureSealer`] or
    /// [`seal_data_key`]). A chain-sealed key costs an X25519 exchange and a walk down
    /// its chain; [`UnlockedVault::open_sealed_data_key_cached`] shares both between the
    /// keys of one chain.
    pub fn open_sealed_data_key(
        &self,
        blob: &[u8],
        binding: &DataKeyBinding,
    ) -> Result<DataKey, VaultCryptoError> {
        self.open_sealed_data_key_cached(blob, binding, &SealedKeyCache::default())
    }

    /// [`UnlockedVault::open_sealed_data_key`] for many keys, with their chains kept in
    /// `cache` (which must only ever be used with this vault).
    pub fn open_sealed_data_key_cached(
        &self,
        blob: &[u8],
        binding: &DataKeyBinding,
        cache: &SealedKeyCache,
    ) -> Result<DataKey, VaultCryptoError> {
        if blob.get(1) == Some(&(Blob::SealedDataKey as u8)) {
            return self.open_single_sealed(blob, binding);
        }
        let blob_type = Blob::ChainSealedDataKey;
        let mut reader = blob_type.parse(blob, Some(CHAIN_SEALED_DATA_KEY_LEN))?;
        let ephemeral = PublicKey::from(*reader.take::<KEY_LEN>()?);
        let index = reader.u32()?;
        let wrapped = reader.take::<WRAPPED_KEY_LEN>()?;
        if index >= SEAL_CHAIN_MAX {
            return Err(blob_type.malformed("its chain index is out of range"));
        }
        let sealing_key = {
            let mut chains = cache
                .chains
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let chain = match chains.entry(*ephemeral.as_bytes()) {
                std::collections::hash_map::Entry::Occupied(chain) => chain.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => slot.insert(OpenedChain {
                    next: self.chain_root(&ephemeral)?,
                    keys: Zeroizing::new(Vec::new()),
                }),
            };
            chain.key(index)
        };
        unwrap_key(
            &sealing_key,
            &chain_seal_aad(binding, &ephemeral, index),
            wrapped,
        )
        .map(|key| DataKey(*key))
        .ok_or_else(|| blob_type.tampered())
    }

    /// The first key of the chain that `ephemeral` started.
    fn chain_root(
        &self,
        ephemeral: &PublicKey,
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, VaultCryptoError> {
        let shared = self.capture.0.diffie_hellman(ephemeral);
        if !shared.was_contributory() {
            return Err(
                Blob::ChainSealedDataKey.malformed("its ephemeral key is a low-order point")
            );
        }
        Ok(chain_root(
            shared.as_bytes(),
            ephemeral,
            &self.capture_public,
        ))
    }

    /// Opens the `01 04` form: one exchange per key.
    fn open_single_sealed(
        &self,
        blob: &[u8],
        binding: &DataKeyBinding,
    ) -> Result<DataKey, VaultCryptoError> {
        let blob_type = Blob::SealedDataKey;
        let mut reader = blob_type.parse(blob, Some(SEALED_DATA_KEY_LEN))?;
        let ephemeral = PublicKey::from(*reader.take::<KEY_LEN>()?);
        let wrapped = reader.take::<WRAPPED_KEY_LEN>()?;
        let shared = self.capture.0.diffie_hellman(&ephemeral);
        if !shared.was_contributory() {
            return Err(blob_type.malformed("its ephemeral key is a low-order point"));
        }
        let sealing_key = sealing_key(shared.as_bytes(), &ephemeral, &self.capture_public);
        unwrap_key(
            &sealing_key,
            &binding.aad(blob_type, LABEL_DATA_KEY_SEAL),
            wrapped,
        )
        .map(|key| DataKey(*key))
        .ok_or_else(|| blob_type.tampered())
    }

    /// Turns a sealed data key into a wrapped one (done for every capture at unlock),
    /// returning the key too.
    pub fn rewrap_sealed_data_key(
        &self,
        sealed: &[u8],
        binding: &DataKeyBinding,
        cache: &SealedKeyCache,
    ) -> Result<(DataKey, Vec<u8>), VaultCryptoError> {
        let key = self.open_sealed_data_key_cached(sealed, binding, cache)?;
        let wrapped = self.wrap_data_key(&key, binding);
        Ok((key, wrapped))
    }
}

/// Argon2id parameters and salt of a bundle's passphrase wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KdfParams {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: [u8; SALT_LEN],
}

impl KdfParams {
    /// Today's parameters with a new salt.
    fn fresh() -> KdfParams {
        KdfParams {
            memory_kib: ARGON2_MEMORY_KIB,
            iterations: ARGON2_ITERATIONS,
            parallelism: ARGON2_PARALLELISM,
            salt: *random_bytes(),
        }
    }

    fn to_bytes(self) -> [u8; KDF_PARAMS_LEN] {
        let mut out = [0u8; KDF_PARAMS_LEN];
        out[0..4].copy_from_slice(&self.memory_kib.to_be_bytes());
        out[4..8].copy_from_slice(&self.iterations.to_be_bytes());
        out[8..12].copy_from_slice(&self.parallelism.to_be_bytes());
        out[12..].copy_from_slice(&self.salt);
        out
    }

    /// The Argon2 parameters, refusing any that Argon2 rejects or that exceed our bounds.
    fn argon2_params(&self) -> Result<Params, VaultCryptoError> {
        if self.memory_kib > MAX_ARGON2_MEMORY_KIB
            || self.iterations > MAX_ARGON2_ITERATIONS
            || self.parallelism > MAX_ARGON2_PARALLELISM
        {
            return Err(Blob::KeyBundle.malformed("its Argon2 parameters are out of bounds"));
        }
        Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(KEY_LEN),
        )
        .map_err(|_| Blob::KeyBundle.malformed("its Argon2 parameters are invalid"))
    }

    fn derive_kek(&self, pass: &Passphrase) -> Result<Kek, VaultCryptoError> {
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.argon2_params()?);
        let mut kek = Kek([0u8; KEY_LEN]);
        argon2
            .hash_password_into(pass.expose().as_bytes(), &self.salt, &mut kek.0)
            .map_err(|e| VaultCryptoError::Kdf(e.to_string()))?;
        Ok(kek)
    }
}

/// What is stored per person: nothing in it is usable without the passphrase or the
/// recovery key (see the module documentation for its layout).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyBundle {
    kdf: KdfParams,
    passphrase_wrap: [u8; WRAPPED_KEY_LEN],
    recovery_wrap: [u8; WRAPPED_KEY_LEN],
    capture_public: CapturePublicKey,
    capture_wrap: [u8; WRAPPED_KEY_LEN],
}

impl fmt::Debug for KeyBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyBundle")
            .field("argon2_memory_kib", &self.kdf.memory_kib)
            .field("argon2_iterations", &self.kdf.iterations)
            .field("argon2_parallelism", &self.kdf.parallelism)
            .field("capture_public", &self.capture_public)
            .finish_non_exhaustive()
    }
}

/// Sets up a new person's keys: a random vault key wrapped by the passphrase and by a
/// new recovery key (returned once, to be shown to the person), and a capture key pair.
pub fn create_vault(
    pass: &Passphrase,
) -> Result<(KeyBundle, UnlockedVault, RecoveryKey), VaultCryptoError> {
    let vault_key = VaultKey(*random_bytes());
    let capture = CaptureSecret(StaticSecret::from(*random_bytes::<KEY_LEN>()));
    let recovery = RecoveryKey::generate();
    let capture_public = CapturePublicKey(PublicKey::from(&capture.0));
    let kdf = KdfParams::fresh();
    let kek = kdf.derive_kek(pass)?;
    let bundle = KeyBundle {
        kdf,
        passphrase_wrap: wrap_key(
            &kek.0,
            &KeyBundle::passphrase_aad(&kdf, &capture_public),
            &vault_key.0,
        ),
        recovery_wrap: wrap_key(
            &recovery.wrapping_key(),
            &KeyBundle::recovery_aad(&capture_public),
            &vault_key.0,
        ),
        capture_public,
        capture_wrap: wrap_key(
            &vault_key.0,
            &KeyBundle::capture_aad(&capture_public),
            capture.0.as_bytes(),
        ),
    };
    let unlocked = UnlockedVault::new(vault_key, capture, capture_public.0);
    Ok((bundle, unlocked, recovery))
}

impl KeyBundle {
    fn passphrase_aad(kdf: &KdfParams, capture_public: &CapturePublicKey) -> Vec<u8> {
        Blob::KeyBundle.aad(
            LABEL_PASSPHRASE_WRAP,
            &[&kdf.to_bytes(), capture_public.0.as_bytes()],
        )
    }

    fn recovery_aad(capture_public: &CapturePublicKey) -> Vec<u8> {
        Blob::KeyBundle.aad(LABEL_RECOVERY_WRAP, &[capture_public.0.as_bytes()])
    }

    fn capture_aad(capture_public: &CapturePublicKey) -> Vec<u8> {
        Blob::KeyBundle.aad(LABEL_CAPTURE_WRAP, &[capture_public.0.as_bytes()])
    }

    /// The key that seals captures while the vault is locked.
    pub fn capture_public(&self) -> CapturePublicKey {
        self.capture_public
    }

    /// Derives the KEK (Argon2id, slow on purpose) and unwraps the vault key.
    pub fn unlock(&self, pass: &Passphrase) -> Result<UnlockedVault, VaultCryptoError> {
        let kek = self.kdf.derive_kek(pass)?;
        let aad = KeyBundle::passphrase_aad(&self.kdf, &self.capture_public);
        // A wrong passphrase and an altered wrap are indistinguishable here; the
        // checksum in `from_bytes` has already ruled out storage damage.
        let vault_key = unwrap_key(&kek.0, &aad, &self.passphrase_wrap)
            .ok_or(VaultCryptoError::WrongPassphrase)?;
        self.finish_unlock(VaultKey(*vault_key))
    }

    pub fn unlock_with_recovery(
        &self,
        key: &RecoveryKey,
    ) -> Result<UnlockedVault, VaultCryptoError> {
        let aad = KeyBundle::recovery_aad(&self.capture_public);
        let vault_key = unwrap_key(&key.wrapping_key(), &aad, &self.recovery_wrap)
            .ok_or(VaultCryptoError::WrongRecoveryKey)?;
        self.finish_unlock(VaultKey(*vault_key))
    }

    fn finish_unlock(&self, vault_key: VaultKey) -> Result<UnlockedVault, VaultCryptoError> {
        let tampered = || VaultCryptoError::Tampered {
            what: "capture secret key",
        };
        let secret = unwrap_key(
            &vault_key.0,
            &KeyBundle::capture_aad(&self.capture_public),
            &self.capture_wrap,
        )
        .ok_or_else(tampered)?;
        let capture = CaptureSecret(StaticSecret::from(*secret));
        // Belt and braces: the AAD already binds the public key to the wrap.
        if PublicKey::from(&capture.0) != self.capture_public.0 {
            return Err(tampered());
        }
        Ok(UnlockedVault::new(
            vault_key,
            capture,
            self.capture_public.0,
        ))
    }

    /// A copy of this bundle whose vault key is wrapped by a new passphrase (with a new
    /// salt and today's Argon2 parameters); everything else stays as it was, so the
    /// recovery key and every stored item keep working. `unlocked` may come from the
    /// old passphrase or from the recovery key.
    pub fn rewrap_passphrase(
        &self,
        unlocked: &UnlockedVault,
        new: &Passphrase,
    ) -> Result<KeyBundle, VaultCryptoError> {
        // Refuse another bundle's vault key: this bundle's capture wrap opens only under ours.
        unwrap_key(
            &unlocked.vault_key.0,
            &KeyBundle::capture_aad(&self.capture_public),
            &self.capture_wrap,
        )
        .ok_or(VaultCryptoError::VaultMismatch)?;
        let kdf = KdfParams::fresh();
        let kek = kdf.derive_kek(new)?;
        Ok(KeyBundle {
            kdf,
            passphrase_wrap: wrap_key(
                &kek.0,
                &KeyBundle::passphrase_aad(&kdf, &self.capture_public),
                &unlocked.vault_key.0,
            ),
            ..self.clone()
        })
    }

    /// A copy of this bundle whose vault key is wrapped by a new recovery key, which is
    /// returned (to be shown once); the old recovery wrap is not in the copy, so once the
    /// copy is stored the old recovery key opens nothing. The passphrase keeps working.
    pub fn rewrap_recovery(
        &self,
        unlocked: &UnlockedVault,
    ) -> Result<(KeyBundle, RecoveryKey), VaultCryptoError> {
        unwrap_key(
            &unlocked.vault_key.0,
            &KeyBundle::capture_aad(&self.capture_public),
            &self.capture_wrap,
        )
        .ok_or(VaultCryptoError::VaultMismatch)?;
        let recovery = RecoveryKey::generate();
        let bundle = KeyBundle {
            recovery_wrap: wrap_key(
                &recovery.wrapping_key(),
                &KeyBundle::recovery_aad(&self.capture_public),
                &unlocked.vault_key.0,
            ),
            ..self.clone()
        };
        Ok((bundle, recovery))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(KEY_BUNDLE_LEN);
        out.extend_from_slice(&Blob::KeyBundle.header());
        out.extend_from_slice(&self.kdf.to_bytes());
        out.extend_from_slice(&self.passphrase_wrap);
        out.extend_from_slice(&self.recovery_wrap);
        out.extend_from_slice(self.capture_public.0.as_bytes());
        out.extend_from_slice(&self.capture_wrap);
        let checksum = sha256(&out);
        out.extend_from_slice(&checksum);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<KeyBundle, VaultCryptoError> {
        let blob = Blob::KeyBundle;
        let mut reader = blob.parse(bytes, Some(KEY_BUNDLE_LEN))?;
        let (body, checksum) = bytes.split_at(KEY_BUNDLE_LEN - CHECKSUM_LEN);
        if !constant_time_eq(&sha256(body), checksum) {
            return Err(blob.malformed("checksum mismatch: the stored bundle is damaged"));
        }
        let kdf = KdfParams {
            memory_kib: reader.u32()?,
            iterations: reader.u32()?,
            parallelism: reader.u32()?,
            salt: *reader.take::<SALT_LEN>()?,
        };
        kdf.argon2_params()?;
        Ok(KeyBundle {
            kdf,
            passphrase_wrap: *reader.take()?,
            recovery_wrap: *reader.take()?,
            capture_public: CapturePublicKey::from_bytes(*reader.take()?)?,
            capture_wrap: *reader.take()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};

    use super::*;

    const PASS: &str = "correct horse battery staple";

    fn pass(text: &str) -> Passphrase {
        Passphrase::for_login(text.to_owned()).unwrap()
    }

    /// One real vault (Argon2 is slow), shared by the tests that need a bundle.
    fn fixture() -> &'static (KeyBundle, RecoveryKey) {
        static VAULT: OnceLock<(KeyBundle, RecoveryKey)> = OnceLock::new();
        VAULT.get_or_init(|| {
            let (bundle, _unlocked, recovery) = create_vault(&pass(PASS)).unwrap();
            (bundle, recovery)
        })
    }

    /// Keys without a bundle, for tests of the item layer (no Argon2).
    fn random_vault() -> UnlockedVault {
        let capture = CaptureSecret(StaticSecret::from(*random_bytes::<KEY_LEN>()));
        let public = PublicKey::from(&capture.0);
        UnlockedVault::new(VaultKey(*random_bytes()), capture, public)
    }

    fn binding() -> ItemBinding {
        ItemBinding {
            item: [0x11; 16],
            version: 3,
            owner: [0x22; 16],
        }
    }

    /// The binding with each field changed in turn.
    fn other_bindings() -> [ItemBinding; 3] {
        let b = binding();
        [
            ItemBinding {
                item: [0x12; 16],
                ..b
            },
            ItemBinding { version: 4, ..b },
            ItemBinding {
                owner: [0x23; 16],
                ..b
            },
        ]
    }

    #[test]
    fn feedback_opens_only_for_its_owner_and_record_under_its_vault_key() {
        let vault = random_vault();
        let (owner, record) = ([0x31; 16], [0x32; 16]);
        let plain = br#"{"kind":"tag","tag":"garden","accepted":false}"#;
        let blob = vault.encrypt_feedback(owner, record, plain);
        assert_eq!(&blob[..2], &[FORMAT_VERSION, Blob::Feedback as u8]);
        assert!(!blob.windows(6).any(|w| w == b"garden"));
        assert_eq!(
            vault
                .decrypt_feedback(owner, record, &blob)
                .unwrap()
                .as_slice(),
            plain
        );
        // Another owner, another record id, another vault: refused.
        assert!(is_tampered_or_malformed(
            vault.decrypt_feedback([0x33; 16], record, &blob)
        ));
        assert!(is_tampered_or_malformed(
            vault.decrypt_feedback(owner, [0x34; 16], &blob)
        ));
        assert!(is_tampered_or_malformed(
            random_vault().decrypt_feedback(owner, record, &blob)
        ));
        // Not interchangeable with item blobs, and damage is detected.
        let mut flipped = blob.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(is_tampered_or_malformed(
            vault.decrypt_feedback(owner, record, &flipped)
        ));
        let key = DataKey::generate();
        let content = encrypt_content(&key, &binding(), plain);
        assert!(is_tampered_or_malformed(
            vault.decrypt_feedback(owner, record, &content)
        ));
        assert!(is_tampered_or_malformed(vault.decrypt_feedback(
            owner,
            record,
            &[]
        )));
    }

    fn same_key(a: &DataKey, b: &DataKey) -> bool {
        a.0 == b.0
    }

    fn is_tampered_or_malformed(result: Result<impl Sized, VaultCryptoError>) -> bool {
        matches!(
            result,
            Err(VaultCryptoError::Tampered { .. } | VaultCryptoError::Malformed { .. })
        )
    }

    fn flip(blob: &[u8], bit: usize) -> Vec<u8> {
        let mut flipped = blob.to_vec();
        flipped[bit / 8] ^= 1 << (bit % 8);
        flipped
    }

    #[test]
    fn layout_constants_match_the_documented_sizes() {
        assert_eq!(KEY_BUNDLE_LEN, 274);
        assert_eq!(WRAPPED_DATA_KEY_LEN, 62);
        assert_eq!(SEALED_DATA_KEY_LEN, 94);
        assert_eq!(RECOVERY_CHARS, 56);
        let (bundle, _) = fixture();
        assert_eq!(bundle.to_bytes().len(), KEY_BUNDLE_LEN);
        assert_eq!(&bundle.to_bytes()[..2], &[1, 1]);
    }

    #[test]
    fn passphrase_unlocks_and_a_wrong_one_is_reported_as_wrong() {
        let (bundle, _) = fixture();
        let parsed = KeyBundle::from_bytes(&bundle.to_bytes()).unwrap();
        assert_eq!(&parsed, bundle);
        let unlocked = parsed.unlock(&pass(PASS)).unwrap();
        assert_eq!(unlocked.capture_public(), bundle.capture_public());
        assert_eq!(
            parsed
                .unlock(&pass("correct horse battery stapler"))
                .unwrap_err(),
            VaultCryptoError::WrongPassphrase
        );
    }

    #[test]
    fn recovery_key_unlocks_and_sets_a_new_passphrase_without_touching_items() {
        let (bundle, recovery) = fixture();
        let before = bundle.unlock_with_recovery(recovery).unwrap();
        let item = binding();
        let data_key = DataKey::generate();
        let wrapped = before.wrap_data_key(&data_key, &item.data_key_binding());
        let content = encrypt_content(&data_key, &item, b"blood pressure 120/80");

        let displayed = recovery.to_display();
        let typed = RecoveryKey::parse(&displayed).unwrap();
        let unlocked = bundle.unlock_with_recovery(&typed).unwrap();
        let rewrapped = bundle
            .rewrap_passphrase(&unlocked, &pass("a brand new passphrase"))
            .unwrap();
        let stored = KeyBundle::from_bytes(&rewrapped.to_bytes()).unwrap();

        // Only the passphrase part changed: new salt, new wrap.
        let (old_bytes, new_bytes) = (bundle.to_bytes(), stored.to_bytes());
        let passphrase_part = HEADER_LEN..HEADER_LEN + KDF_PARAMS_LEN + WRAPPED_KEY_LEN;
        assert_ne!(
            old_bytes[passphrase_part.clone()],
            new_bytes[passphrase_part.clone()]
        );
        assert_eq!(
            old_bytes[passphrase_part.end..KEY_BUNDLE_LEN - CHECKSUM_LEN],
            new_bytes[passphrase_part.end..KEY_BUNDLE_LEN - CHECKSUM_LEN]
        );

        assert_eq!(
            stored.unlock(&pass(PASS)).unwrap_err(),
            VaultCryptoError::WrongPassphrase
        );
        for after in [
            stored.unlock(&pass("a brand new passphrase")).unwrap(),
            stored.unlock_with_recovery(recovery).unwrap(),
        ] {
            // Same vault key: items stored before the change still open.
            let key = after
                .unwrap_data_key(&wrapped, &item.data_key_binding())
                .unwrap();
            assert_eq!(
                &**decrypt_content(&key, &item, &content).unwrap(),
                b"blood pressure 120/80"
            );
            assert_eq!(after.vault_key.0, before.vault_key.0);
        }
    }

    #[test]
    fn a_wrong_but_well_formed_recovery_key_is_wrong_not_invalid() {
        let (bundle, _) = fixture();
        let other = RecoveryKey::parse(&RecoveryKey::generate().to_display()).unwrap();
        assert_eq!(
            bundle.unlock_with_recovery(&other).unwrap_err(),
            VaultCryptoError::WrongRecoveryKey
        );
    }

    #[test]
    fn a_new_recovery_key_replaces_the_old_one_and_the_passphrase_keeps_working() {
        let (bundle, old_recovery) = fixture();
        let unlocked = bundle.unlock(&pass(PASS)).unwrap();
        let item = binding();
        let data_key = DataKey::generate();
        let wrapped = unlocked.wrap_data_key(&data_key, &item.data_key_binding());

        let (rotated, new_recovery) = bundle.rewrap_recovery(&unlocked).unwrap();
        let stored = KeyBundle::from_bytes(&rotated.to_bytes()).unwrap();
        assert_eq!(
            stored.unlock_with_recovery(old_recovery).unwrap_err(),
            VaultCryptoError::WrongRecoveryKey
        );
        let typed = RecoveryKey::parse(&new_recovery.to_display()).unwrap();
        for after in [
            stored.unlock_with_recovery(&typed).unwrap(),
            stored.unlock(&pass(PASS)).unwrap(),
        ] {
            assert!(
                after
                    .unwrap_data_key(&wrapped, &item.data_key_binding())
                    .is_ok()
            );
        }
        assert_eq!(
            bundle.rewrap_recovery(&random_vault()).unwrap_err(),
            VaultCryptoError::VaultMismatch
        );
    }

    #[test]
    fn rewrap_refuses_another_bundles_vault() {
        let (bundle, _) = fixture();
        assert_eq!(
            bundle
                .rewrap_passphrase(&random_vault(), &pass("whatever it is"))
                .unwrap_err(),
            VaultCryptoError::VaultMismatch
        );
    }

    #[test]
    fn recovery_keys_display_in_groups_and_parse_through_sloppy_typing() {
        let key = RecoveryKey::generate();
        let shown = key.to_display();
        assert_eq!(shown.len(), 69);
        let groups: Vec<&str> = shown.split('-').collect();
        assert_eq!(groups.len(), 14);
        assert!(groups.iter().all(|g| g.len() == 4));
        assert!(
            shown
                .bytes()
                .all(|c| c == b'-' || CROCKFORD_ALPHABET.contains(&c))
        );
        for typed in [
            shown.to_string(),
            shown.to_lowercase(),
            shown.replace('-', " "),
            shown.replace('-', ""),
            format!("  {}\n", shown.replace('-', " - ").to_lowercase()),
            shown.replace('0', "o").replace('1', "l"),
        ] {
            assert_eq!(RecoveryKey::parse(&typed).unwrap().0, key.0, "{typed}");
        }
    }

    #[test]
    fn recovery_key_typos_are_invalid_not_wrong() {
        // A fixed key keeps this deterministic: each variant below either passes the
        // 24-bit checksum or not, the same on every run.
        let key = RecoveryKey([0xA5; KEY_LEN]);
        let chars: Vec<u8> = normalize_human_code(&key.to_display()).into_bytes();
        let parse = |bytes: &[u8]| RecoveryKey::parse(std::str::from_utf8(bytes).unwrap());
        assert_eq!(parse(&chars).unwrap().0, key.0);
        let mut variants = Vec::new();
        for i in 0..chars.len() {
            for &symbol in CROCKFORD_ALPHABET.iter().filter(|&&s| s != chars[i]) {
                let mut typo = chars.clone();
                typo[i] = symbol;
                variants.push(typo);
            }
            let mut dropped = chars.clone();
            dropped.remove(i);
            variants.push(dropped);
            let mut doubled = chars.clone();
            doubled.insert(i, chars[i]);
            variants.push(doubled);
            let mut foreign = chars.clone();
            foreign[i] = b'U';
            variants.push(foreign);
            if i + 1 < chars.len() && chars[i] != chars[i + 1] {
                let mut swapped = chars.clone();
                swapped.swap(i, i + 1);
                variants.push(swapped);
            }
        }
        for variant in &variants {
            assert_eq!(
                parse(variant).unwrap_err(),
                VaultCryptoError::InvalidRecoveryKey,
                "{}",
                String::from_utf8_lossy(variant)
            );
        }
        for typed in ["", "hello", "ÀÀÀÀ-ÀÀÀÀ", &"0".repeat(56), &"Z".repeat(56)] {
            assert_eq!(
                RecoveryKey::parse(typed).unwrap_err(),
                VaultCryptoError::InvalidRecoveryKey,
                "{typed}"
            );
        }
    }

    #[test]
    fn embeddings_are_bound_to_item_version_owner_and_model_and_are_not_content() {
        let key = DataKey::generate();
        let model = "all-MiniLM-L6-v2";
        let blob = encrypt_embeddings(&key, &binding(), model, b"vectors");
        assert_eq!(blob[..HEADER_LEN], [FORMAT_VERSION, 6]);
        assert_eq!(
            &**decrypt_embeddings(&key, &binding(), model, &blob).unwrap(),
            b"vectors"
        );
        let tampered = VaultCryptoError::Tampered {
            what: "item embeddings",
        };
        // Moved to another item, version or person: refused.
        for other in other_bindings() {
            assert_eq!(
                decrypt_embeddings(&key, &other, model, &blob).unwrap_err(),
                tampered
            );
        }
        // Relabelled as another model's vectors: refused.
        assert_eq!(
            decrypt_embeddings(&key, &binding(), "other-model", &blob).unwrap_err(),
            tampered
        );
        // Embeddings and content cannot stand in for each other, even re-tagged: the
        // labels differ.
        assert!(decrypt_content(&key, &binding(), &blob).is_err());
        let content = encrypt_content(&key, &binding(), b"vectors");
        assert!(decrypt_embeddings(&key, &binding(), model, &content).is_err());
        let mut retagged = content.clone();
        retagged[1] = 6;
        assert_eq!(
            decrypt_embeddings(&key, &binding(), model, &retagged).unwrap_err(),
            tampered
        );
        assert!(is_tampered_or_malformed(decrypt_embeddings(
            &DataKey::generate(),
            &binding(),
            model,
            &blob
        )));
    }

    #[test]
    fn content_round_trips_and_does_not_move_to_another_binding() {
        let key = DataKey::generate();
        for plaintext in [&b""[..], b"x", &[7u8; 100_000]] {
            let blob = encrypt_content(&key, &binding(), plaintext);
            assert_eq!(
                blob.len(),
                HEADER_LEN + NONCE_LEN + plaintext.len() + TAG_LEN
            );
            assert_eq!(
                &**decrypt_content(&key, &binding(), &blob).unwrap(),
                plaintext
            );
            for other in other_bindings() {
                assert_eq!(
                    decrypt_content(&key, &other, &blob).unwrap_err(),
                    VaultCryptoError::Tampered {
                        what: "item content"
                    }
                );
            }
            assert!(is_tampered_or_malformed(decrypt_content(
                &DataKey::generate(),
                &binding(),
                &blob
            )));
        }
        // Random nonces: the same plaintext never encrypts the same way twice.
        assert_ne!(
            encrypt_content(&key, &binding(), b"same"),
            encrypt_content(&key, &binding(), b"same")
        );
    }

    #[test]
    fn wrapped_data_keys_bind_item_and_owner_but_not_version() {
        let vault = random_vault();
        let key = DataKey::generate();
        let item = binding();
        let wrapped = vault.wrap_data_key(&key, &item.data_key_binding());
        assert_eq!(wrapped.len(), WRAPPED_DATA_KEY_LEN);
        let unwrapped = vault
            .unwrap_data_key(&wrapped, &item.data_key_binding())
            .unwrap();
        assert!(same_key(&unwrapped, &key));
        let next_version = ItemBinding {
            version: item.version + 1,
            ..item
        };
        assert_eq!(next_version.data_key_binding(), item.data_key_binding());
        for other in [other_bindings()[0], other_bindings()[2]] {
            assert_eq!(
                vault
                    .unwrap_data_key(&wrapped, &other.data_key_binding())
                    .unwrap_err(),
                VaultCryptoError::Tampered {
                    what: "wrapped data key"
                }
            );
        }
        assert!(is_tampered_or_malformed(
            random_vault().unwrap_data_key(&wrapped, &item.data_key_binding())
        ));
    }

    #[test]
    fn sealed_captures_open_after_unlock_and_are_rewrapped() {
        let (bundle, recovery) = fixture();
        let item = binding();
        let key_binding = item.data_key_binding();
        // While locked: only the public key (read from the stored bundle) is needed.
        let public = KeyBundle::from_bytes(&bundle.to_bytes())
            .unwrap()
            .capture_public();
        let data_key = DataKey::generate();
        let sealed = seal_data_key(&public, &data_key, &key_binding);
        let content = encrypt_content(&data_key, &item, b"remember the milk");
        drop(data_key);
        assert_eq!(sealed.len(), SEALED_DATA_KEY_LEN);

        let unlocked = bundle.unlock_with_recovery(recovery).unwrap();
        let opened = unlocked
            .open_sealed_data_key(&sealed, &key_binding)
            .unwrap();
        assert_eq!(
            &**decrypt_content(&opened, &item, &content).unwrap(),
            b"remember the milk"
        );
        let (rewrapped_key, wrapped) = unlocked
            .rewrap_sealed_data_key(&sealed, &key_binding, &SealedKeyCache::default())
            .unwrap();
        let unwrapped = unlocked.unwrap_data_key(&wrapped, &key_binding).unwrap();
        assert!(same_key(&unwrapped, &opened));
        assert!(same_key(&rewrapped_key, &opened));

        // Another person's keys, another binding, or the wrong kind of blob: refused.
        assert!(is_tampered_or_malformed(
            random_vault().open_sealed_data_key(&sealed, &key_binding)
        ));
        for other in [other_bindings()[0], other_bindings()[2]] {
            assert!(is_tampered_or_malformed(
                unlocked.open_sealed_data_key(&sealed, &other.data_key_binding())
            ));
        }
        assert!(matches!(
            unlocked.open_sealed_data_key(&wrapped, &key_binding),
            Err(VaultCryptoError::Malformed { .. })
        ));
        assert!(matches!(
            unlocked.unwrap_data_key(&sealed, &key_binding),
            Err(VaultCryptoError::Malformed { .. })
        ));
    }

    #[test]
    fn a_sealer_chain_seals_each_key_under_its_own_key() {
        let vault = random_vault();
        let mut sealer = CaptureSealer::new(&vault.capture_public());
        assert_eq!(sealer.recipient(), vault.capture_public());
        let items: Vec<DataKeyBinding> = (0..50u8)
            .map(|n| {
                ItemBinding {
                    item: [n; 16],
                    version: 1,
                    owner: [0x22; 16],
                }
                .data_key_binding()
            })
            .collect();
        let keys: Vec<DataKey> = items.iter().map(|_| DataKey::generate()).collect();
        let sealed: Vec<Vec<u8>> = keys
            .iter()
            .zip(&items)
            .map(|(key, item)| sealer.seal(key, item))
            .collect();
        // The debug form says how many, nothing secret.
        assert_eq!(format!("{sealer:?}"), "CaptureSealer { sealed: 50, .. }");
        for (n, blob) in sealed.iter().enumerate() {
            assert_eq!(blob.len(), CHAIN_SEALED_DATA_KEY_LEN);
            assert_eq!(&blob[..HEADER_LEN], &Blob::ChainSealedDataKey.header());
            // One ephemeral key for the chain, one index per seal.
            assert_eq!(
                blob[HEADER_LEN..HEADER_LEN + KEY_LEN],
                sealed[0][HEADER_LEN..HEADER_LEN + KEY_LEN]
            );
            let index = u32::from_be_bytes(
                blob[HEADER_LEN + KEY_LEN..HEADER_LEN + KEY_LEN + 4]
                    .try_into()
                    .unwrap(),
            );
            assert_eq!(index as usize, n);
        }

        // Opened one by one, and through a cache in any order (the cache is filled by
        // whichever index comes first).
        let cache = SealedKeyCache::default();
        for n in [37, 3, 49, 0, 12, 37] {
            let alone = vault.open_sealed_data_key(&sealed[n], &items[n]).unwrap();
            assert!(same_key(&alone, &keys[n]));
            let (cached, wrapped) = vault
                .rewrap_sealed_data_key(&sealed[n], &items[n], &cache)
                .unwrap();
            assert!(same_key(&cached, &keys[n]));
            assert!(same_key(
                &vault.unwrap_data_key(&wrapped, &items[n]).unwrap(),
                &keys[n]
            ));
        }

        // Bound to its item, its index and its chain; nobody else's vault opens it.
        assert!(is_tampered_or_malformed(
            vault.open_sealed_data_key(&sealed[4], &items[5])
        ));
        let mut moved = sealed[4].clone();
        moved[HEADER_LEN + KEY_LEN + 3] = 5;
        assert!(is_tampered_or_malformed(
            vault.open_sealed_data_key(&moved, &items[4])
        ));
        assert!(is_tampered_or_malformed(
            vault.open_sealed_data_key_cached(&moved, &items[4], &cache)
        ));
        assert!(is_tampered_or_malformed(
            random_vault().open_sealed_data_key(&sealed[4], &items[4])
        ));
        let mut far = sealed[4].clone();
        far[HEADER_LEN + KEY_LEN..HEADER_LEN + KEY_LEN + 4]
            .copy_from_slice(&SEAL_CHAIN_MAX.to_be_bytes());
        assert!(matches!(
            vault.open_sealed_data_key_cached(&far, &items[4], &cache),
            Err(VaultCryptoError::Malformed { .. })
        ));
    }

    #[test]
    fn a_full_chain_is_followed_by_a_new_one() {
        let vault = random_vault();
        let item = binding().data_key_binding();
        let mut sealer = CaptureSealer::new(&vault.capture_public());
        let key = DataKey::generate();
        let first = sealer.seal(&key, &item);
        let mut last = Vec::new();
        for _ in 1..SEAL_CHAIN_MAX {
            last = sealer.seal(&key, &item);
        }
        let next = sealer.seal(&key, &item);
        let ephemeral = |blob: &[u8]| blob[HEADER_LEN..HEADER_LEN + KEY_LEN].to_vec();
        let index = |blob: &[u8]| {
            u32::from_be_bytes(
                blob[HEADER_LEN + KEY_LEN..HEADER_LEN + KEY_LEN + 4]
                    .try_into()
                    .unwrap(),
            )
        };
        assert_eq!(ephemeral(&last), ephemeral(&first));
        assert_eq!(index(&last), SEAL_CHAIN_MAX - 1);
        assert_ne!(ephemeral(&next), ephemeral(&first));
        assert_eq!(index(&next), 0);
        let cache = SealedKeyCache::default();
        for blob in [&first, &last, &next] {
            assert!(same_key(
                &vault
                    .open_sealed_data_key_cached(blob, &item, &cache)
                    .unwrap(),
                &key
            ));
        }
        assert!(same_key(
            &vault.open_sealed_data_key(&last, &item).unwrap(),
            &key
        ));
    }

    #[test]
    fn low_order_capture_keys_are_refused() {
        // 0 and 1 are low-order u-coordinates on Curve25519 (RFC 7748 §6.1 discussion).
        for point in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            assert!(matches!(
                CapturePublicKey::from_bytes(point),
                Err(VaultCryptoError::Malformed { .. })
            ));
            let mut sealed = seal_data_key(
                &random_vault().capture_public(),
                &DataKey::generate(),
                &binding().data_key_binding(),
            );
            sealed[HEADER_LEN..HEADER_LEN + KEY_LEN].copy_from_slice(&point);
            assert!(matches!(
                random_vault().open_sealed_data_key(&sealed, &binding().data_key_binding()),
                Err(VaultCryptoError::Malformed { .. })
            ));
            let mut chain_sealed = CaptureSealer::new(&random_vault().capture_public())
                .seal(&DataKey::generate(), &binding().data_key_binding());
            chain_sealed[HEADER_LEN..HEADER_LEN + KEY_LEN].copy_from_slice(&point);
            assert!(matches!(
                random_vault().open_sealed_data_key_cached(
                    &chain_sealed,
                    &binding().data_key_binding(),
                    &SealedKeyCache::default()
                ),
                Err(VaultCryptoError::Malformed { .. })
            ));
        }
        let public = random_vault().capture_public();
        assert_eq!(
            CapturePublicKey::from_bytes(public.to_bytes()).unwrap(),
            public
        );
    }

    #[test]
    fn flipping_any_bit_of_any_blob_fails() {
        let vault = random_vault();
        let item = binding();
        let key_binding = item.data_key_binding();
        let key = DataKey::generate();
        let content = encrypt_content(&key, &item, b"some private note");
        let wrapped = vault.wrap_data_key(&key, &key_binding);
        let sealed = seal_data_key(&vault.capture_public(), &key, &key_binding);
        let mut sealer = CaptureSealer::new(&vault.capture_public());
        sealer.seal(&DataKey::generate(), &key_binding);
        let chain_sealed = sealer.seal(&key, &key_binding);
        let (bundle, _) = fixture();
        let bundle_bytes = bundle.to_bytes();
        for bit in 0..content.len() * 8 {
            assert!(is_tampered_or_malformed(decrypt_content(
                &key,
                &item,
                &flip(&content, bit)
            )));
        }
        for bit in 0..wrapped.len() * 8 {
            assert!(is_tampered_or_malformed(
                vault.unwrap_data_key(&flip(&wrapped, bit), &key_binding)
            ));
        }
        for bit in 0..sealed.len() * 8 {
            assert!(is_tampered_or_malformed(
                vault.open_sealed_data_key(&flip(&sealed, bit), &key_binding)
            ));
        }
        let cache = SealedKeyCache::default();
        assert!(
            vault
                .open_sealed_data_key_cached(&chain_sealed, &key_binding, &cache)
                .is_ok()
        );
        for bit in 0..chain_sealed.len() * 8 {
            let flipped = flip(&chain_sealed, bit);
            assert!(is_tampered_or_malformed(
                vault.open_sealed_data_key(&flipped, &key_binding)
            ));
            assert!(is_tampered_or_malformed(vault.open_sealed_data_key_cached(
                &flipped,
                &key_binding,
                &cache
            )));
        }
        for bit in 0..bundle_bytes.len() * 8 {
            assert!(is_tampered_or_malformed(KeyBundle::from_bytes(&flip(
                &bundle_bytes,
                bit
            ))));
        }
    }

    /// Re-seals a bundle's checksum after changing it, as a deliberate attacker would.
    fn with_fixed_checksum(mut bytes: Vec<u8>) -> Vec<u8> {
        let body_len = KEY_BUNDLE_LEN - CHECKSUM_LEN;
        let checksum = sha256(&bytes[..body_len]);
        bytes[body_len..].copy_from_slice(&checksum);
        bytes
    }

    #[test]
    fn deliberate_changes_to_a_bundle_are_caught_by_the_tags() {
        let (bundle, recovery) = fixture();
        let bytes = bundle.to_bytes();
        // Everything the recovery path reads: header, recovery wrap, capture public key,
        // capture wrap. (The passphrase part is checked below, with Argon2.)
        let recovery_start = HEADER_LEN + KDF_PARAMS_LEN + WRAPPED_KEY_LEN;
        let regions = [0..HEADER_LEN, recovery_start..KEY_BUNDLE_LEN - CHECKSUM_LEN];
        for bit in regions.into_iter().flatten().flat_map(|b| b * 8..b * 8 + 8) {
            let altered = with_fixed_checksum(flip(&bytes, bit));
            let result = KeyBundle::from_bytes(&altered)
                .and_then(|b| b.unlock_with_recovery(recovery).map(|_| ()));
            assert!(result.is_err(), "bit {bit} went unnoticed");
        }
        // Salt and passphrase wrap: indistinguishable from a wrong passphrase, never Ok.
        for byte in [HEADER_LEN + 12, HEADER_LEN + KDF_PARAMS_LEN + NONCE_LEN] {
            let altered = with_fixed_checksum(flip(&bytes, byte * 8));
            let parsed = KeyBundle::from_bytes(&altered).unwrap();
            assert_eq!(
                parsed.unlock(&pass(PASS)).unwrap_err(),
                VaultCryptoError::WrongPassphrase
            );
        }
    }

    #[test]
    fn bundles_asking_for_absurd_argon2_parameters_are_refused_before_hashing() {
        let (bundle, _) = fixture();
        for (offset, value) in [
            (HEADER_LEN, u32::MAX),
            (HEADER_LEN, MAX_ARGON2_MEMORY_KIB + 1),
            (HEADER_LEN + 4, 0),
            (HEADER_LEN + 4, MAX_ARGON2_ITERATIONS + 1),
            (HEADER_LEN + 8, 0),
            (HEADER_LEN + 8, MAX_ARGON2_PARALLELISM + 1),
        ] {
            let mut bytes = bundle.to_bytes();
            bytes[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
            assert!(matches!(
                KeyBundle::from_bytes(&with_fixed_checksum(bytes)),
                Err(VaultCryptoError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn parsers_never_panic_and_never_accept_arbitrary_bytes() {
        let vault = random_vault();
        let item = binding();
        let key_binding = item.data_key_binding();
        let key = DataKey::generate();
        let mut rng = StdRng::seed_from_u64(0x5EA1ED);
        let check = |bytes: &[u8]| {
            assert!(KeyBundle::from_bytes(bytes).is_err());
            assert!(decrypt_content(&key, &item, bytes).is_err());
            assert!(vault.unwrap_data_key(bytes, &key_binding).is_err());
            assert!(vault.open_sealed_data_key(bytes, &key_binding).is_err());
            assert!(RecoveryKey::parse(&String::from_utf8_lossy(bytes)).is_err());
        };
        for round in 0..3000 {
            let len = rng.random_range(0..400);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Most rounds get a valid header, so the parsers get past the first check.
            if len >= 2 && round % 4 != 0 {
                bytes[0] = FORMAT_VERSION;
                bytes[1] = rng.random_range(1..=4);
            }
            check(&bytes);
            // Strings of valid base32 characters of every length (checksum must fail).
            let text: String = (0..rng.random_range(0..80))
                .map(|_| char::from(CROCKFORD_ALPHABET[rng.random_range(0..32)]))
                .collect();
            assert!(RecoveryKey::parse(&text).is_err());
        }
        // Every truncation of every valid blob.
        let (bundle, _) = fixture();
        for blob in [
            bundle.to_bytes(),
            encrypt_content(&key, &item, b"hello"),
            vault.wrap_data_key(&key, &key_binding),
            seal_data_key(&vault.capture_public(), &key, &key_binding),
        ] {
            for len in 0..blob.len() {
                check(&blob[..len]);
            }
            let mut longer = blob.clone();
            longer.push(0);
            check(&longer);
        }
    }

    #[test]
    fn secrets_never_print_and_are_zeroized_on_drop() {
        fn zeroized_on_drop<T: ZeroizeOnDrop>() {}
        zeroized_on_drop::<VaultKey>();
        zeroized_on_drop::<Kek>();
        zeroized_on_drop::<DataKey>();
        zeroized_on_drop::<RecoveryKey>();
        zeroized_on_drop::<CaptureSecret>();

        let vault = random_vault();
        let recovery = RecoveryKey::generate();
        let data_key = DataKey::generate();
        let kek = Kek(*random_bytes());
        let printed = [
            (format!("{:?}", vault.vault_key), "VaultKey"),
            (format!("{:?}", vault.capture), "CaptureSecret"),
            (format!("{vault:?}"), "UnlockedVault"),
            (format!("{data_key:?}"), "DataKey"),
            (format!("{recovery:?}"), "RecoveryKey"),
            (format!("{kek:?}"), "Kek"),
        ];
        for (text, name) in printed {
            // Exactly the name and a placeholder: no byte of any key can be in there.
            assert_eq!(text, format!("{name}(<redacted>)"));
        }
        assert!(!format!("{recovery:?}").contains(&recovery.to_display()[..4]));
        let (bundle, _) = fixture();
        let shown = format!("{bundle:?}");
        assert!(
            shown.contains("capture_public") && !shown.contains("wrap"),
            "{shown}"
        );
    }
}
