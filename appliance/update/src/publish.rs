//! The owner's side: an update repository signed with offline keys.
//!
//! One Ed25519 key per TUF role (root, targets, snapshot, timestamp), each a PKCS#8 PEM
//! file (`openssl genpkey -algorithm ed25519` writes the same format). The repository
//! is laid out as the appliance reads it:
//!
//! ```text
//! repo/metadata/{1.root.json, …, N.root.json, root.json, targets.json, snapshot.json, timestamp.json}
//! repo/targets/<bundle file name>
//! ```
//!
//! Consistent snapshots are off: every metadata file but the root has one name, and the
//! bundles keep their names. Metadata is written beside the repository first and moved
//! in (targets, then snapshot, then timestamp), so that a reader never sees a timestamp
//! that names a snapshot not there yet.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use tough::editor::RepositoryEditor;
use tough::editor::signed::SignedRole;
use tough::key_source::KeySource;
use tough::schema::key::Key;
use tough::schema::{KeyHolder, RoleKeys, RoleType, Root, Signed};
use tough::sign::{Sign, parse_keypair};
use tough::{ExpirationEnforcement, RepositoryLoader};
use zeroize::Zeroizing;

use crate::repo::is_plain_file_name;

/// The TUF specification version written into new metadata (the one tough's editor
/// accepts).
const SPEC_VERSION: &str = "1.0.0";
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A key file is already there; keys are never overwritten.
    #[error("{} already exists; refusing to overwrite a key", .0.display())]
    KeyExists(PathBuf),
    /// A key file could not be read as a PKCS#8 PEM private key.
    #[error("the key {} is not usable: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// tough refused: the repository does not verify, a key is not in the root, …
    #[error("{what}: {source}")]
    Tuf {
        /// What was being done.
        what: String,
        /// tough's error.
        source: Box<tough::error::Error>,
    },
    /// Anything else that makes the request impossible.
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
    move |source| PublishError::Io {
        path: path.to_owned(),
        source,
    }
}

fn tuf(what: impl Into<String>) -> impl FnOnce(tough::error::Error) -> PublishError {
    let what = what.into();
    move |source| PublishError::Tuf {
        what,
        source: Box::new(source),
    }
}

/// The four role keys, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The root key (keep it offline).
    pub root: PathBuf,
    /// The targets key (signs which bundles exist).
    pub targets: PathBuf,
    /// The snapshot key.
    pub snapshot: PathBuf,
    /// The timestamp key (the one re-signed most often).
    pub timestamp: PathBuf,
}

impl Keys {
    /// `root.pem`, `targets.pem`, `snapshot.pem` and `timestamp.pem` in `dir`.
    pub fn in_dir(dir: &Path) -> Keys {
        Keys {
            root: dir.join("root.pem"),
            targets: dir.join("targets.pem"),
            snapshot: dir.join("snapshot.pem"),
            timestamp: dir.join("timestamp.pem"),
        }
    }

    fn roles(&self) -> [(RoleType, &Path); 4] {
        [
            (RoleType::Root, &self.root),
            (RoleType::Targets, &self.targets),
            (RoleType::Snapshot, &self.snapshot),
            (RoleType::Timestamp, &self.timestamp),
        ]
    }
}

/// A key file as tough's `KeySource`: PKCS#8 PEM (tough's own `LocalKeySource` reads
/// Ed25519 keys only as raw DER).
#[derive(Debug)]
struct PemKeySource {
    path: PathBuf,
}

impl PemKeySource {
    fn boxed(path: &Path) -> Box<dyn KeySource> {
        Box::new(PemKeySource {
            path: path.to_owned(),
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[tough::async_trait]
impl KeySource for PemKeySource {
    async fn as_sign(&self) -> Result<Box<dyn Sign>, BoxError> {
        let der = read_pem_key(&self.path).await?;
        Ok(Box::new(parse_keypair(&der)?))
    }

    async fn write(&self, _value: &str, _key_id_hex: &str) -> Result<(), BoxError> {
        Err(format!("{} is read-only here", self.path.display()).into())
    }
}

/// Reads a `PRIVATE KEY` PEM file and returns the DER inside.
async fn read_pem_key(path: &Path) -> Result<Zeroizing<Vec<u8>>, PublishError> {
    let text = Zeroizing::new(tokio::fs::read_to_string(path).await.map_err(io(path))?);
    let bad = |reason: &str| PublishError::Key {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let start = text
        .find(PEM_BEGIN)
        .ok_or_else(|| bad("no \"BEGIN PRIVATE KEY\" line (PKCS#8 PEM expected)"))?;
    let body = &text[start + PEM_BEGIN.len()..];
    let end = body
        .find(PEM_END)
        .ok_or_else(|| bad("no \"END PRIVATE KEY\" line"))?;
    let b64: Zeroizing<String> = Zeroizing::new(
        body[..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect(),
    );
    BASE64
        .decode(b64.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| bad("the PEM body is not base64"))
}

/// The public half of a key file, as TUF lists it, and its key id.
async fn public_key(
    path: &Path,
) -> Result<
    (
        Key,
        tough::schema::decoded::Decoded<tough::schema::decoded::Hex>,
    ),
    PublishError,
> {
    let der = read_pem_key(path).await?;
    let pair = parse_keypair(&der).map_err(|e| PublishError::Key {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let key = pair.tuf_key();
    let id = key.key_id().map_err(|e| PublishError::Key {
        path: path.to_owned(),
        reason: format!("no key id: {e}"),
    })?;
    Ok((key, id))
}

/// Writes a new Ed25519 key (PKCS#8 v1 PEM, mode 0600); refuses to overwrite a file.
pub fn generate_key(path: &Path) -> Result<(), PublishError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
        .map_err(|_| PublishError::Invalid("the system could not generate a key".into()))?;
    let b64 = Zeroizing::new(BASE64.encode(doc.as_ref()));
    let mut pem = Zeroizing::new(format!("{PEM_BEGIN}\n"));
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(PEM_END);
    pem.push('\n');
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PublishError::KeyExists(path.to_owned())
            } else {
                io(path)(e)
            }
        })?;
    file.write_all(pem.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Generates the four role keys in `dir`; refuses if any of them exists already.
pub fn generate_keys(dir: &Path) -> Result<Keys, PublishError> {
    let keys = Keys::in_dir(dir);
    for (_, path) in keys.roles() {
        if path.exists() {
            return Err(PublishError::KeyExists(path.to_owned()));
        }
    }
    for (_, path) in keys.roles() {
        generate_key(path)?;
    }
    Ok(keys)
}

/// TUF expiry times are whole seconds.
fn whole_seconds(t: jiff::Timestamp) -> Result<jiff::Timestamp, PublishError> {
    jiff::Timestamp::from_second(t.as_second())
        .map_err(|e| PublishError::Invalid(format!("expiry {t} is out of range: {e}")))
}

/// Writes `bytes` beside `path` and renames it over `path`.
async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    tokio::fs::write(&tmp, bytes).await.map_err(io(&tmp))?;
    tokio::fs::rename(&tmp, path).await.map_err(io(path))
}

/// Signs a root with the given root keys (each must be listed for the root role of
/// `signer`).
async fn sign_root(
    root: &Root,
    signer: &Root,
    key: &Path,
) -> Result<SignedRole<Root>, PublishError> {
    SignedRole::new(
        root.clone(),
        &KeyHolder::Root(signer.clone()),
        &[PemKeySource::boxed(key)],
        &SystemRandom::new(),
    )
    .await
    .map_err(tuf(format!("signing root.json with {}", key.display())))
}

/// Writes version 1 of root.json to `out`: one key per role (threshold 1), signed with
/// the root key.
pub async fn create_root(
    keys: &Keys,
    out: &Path,
    expires: jiff::Timestamp,
) -> Result<(), PublishError> {
    let mut root = Root {
        spec_version: SPEC_VERSION.into(),
        consistent_snapshot: false,
        version: NonZeroU64::MIN,
        expires: whole_seconds(expires)?,
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    for (role, path) in keys.roles() {
        let (key, id) = public_key(path).await?;
        root.keys.insert(id.clone(), key);
        root.roles.insert(
            role,
            RoleKeys {
                keyids: vec![id],
                threshold: NonZeroU64::MIN,
                _extra: HashMap::new(),
            },
        );
    }
    let signed = sign_root(&root, &root, &keys.root).await?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io(parent))?;
    }
    write_atomically(out, signed.buffer()).await
}

/// One bundle to publish.
#[derive(Debug, Clone, Copy)]
pub struct Publication<'a> {
    /// The RAUC bundle; its file name becomes the target name.
    pub bundle: &'a Path,
    /// Its version (custom `version`).
    pub version: &'a semver::Version,
    /// The board it is for (custom `compatible`, RAUC's `compatible`).
    pub compatible: &'a str,
    /// When targets.json expires (may be in the past).
    pub targets_expires: jiff::Timestamp,
    /// When snapshot.json expires (may be in the past).
    pub snapshot_expires: jiff::Timestamp,
    /// When timestamp.json expires (may be in the past).
    pub timestamp_expires: jiff::Timestamp,
}

fn file_url(dir: &Path) -> Result<url::Url, PublishError> {
    url::Url::from_directory_path(dir)
        .map_err(|()| PublishError::Invalid(format!("{} makes no file URL", dir.display())))
}

fn bump(v: NonZeroU64) -> Result<NonZeroU64, PublishError> {
    v.checked_add(1)
        .ok_or_else(|| PublishError::Invalid("a metadata version is at its maximum".into()))
}

/// Add (or replace) the bundle as a target in the repository at `repo` (layout:
/// `repo/metadata/{1.root.json, root.json, targets.json, snapshot.json, timestamp.json}`,
/// `repo/targets/<bundle file name>`), bump every metadata version, sign with `keys`.
/// Creates the repository from `root.json` when `repo` is empty.
///
/// An existing repository is first loaded with tough from `root` (expiry not enforced:
/// re-signing expired metadata is what this is for), so that it must verify, root
/// rotations included; the newest root then signs the new metadata's key list. The root
/// key itself is not needed.
pub async fn publish(
    repo: &Path,
    root: &Path,
    keys: &Keys,
    what: &Publication<'_>,
) -> Result<(), PublishError> {
    let name = what
        .bundle
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| is_plain_file_name(n))
        .ok_or_else(|| {
            PublishError::Invalid(format!(
                "{} has no plain UTF-8 file name to publish it under",
                what.bundle.display()
            ))
        })?
        .to_owned();
    let bundle_meta = tokio::fs::metadata(what.bundle)
        .await
        .map_err(io(what.bundle))?;
    if !bundle_meta.is_file() {
        return Err(PublishError::Invalid(format!(
            "{} is not a file",
            what.bundle.display()
        )));
    }
    let metadata = repo.join("metadata");
    let targets = repo.join("targets");
    tokio::fs::create_dir_all(&metadata)
        .await
        .map_err(io(&metadata))?;
    tokio::fs::create_dir_all(&targets)
        .await
        .map_err(io(&targets))?;
    let metadata = tokio::fs::canonicalize(&metadata)
        .await
        .map_err(io(&metadata))?;
    let targets = tokio::fs::canonicalize(&targets)
        .await
        .map_err(io(&targets))?;

    let exists = tokio::fs::try_exists(metadata.join("timestamp.json"))
        .await
        .map_err(io(&metadata))?;
    let (mut editor, versions, root_file) = if exists {
        let trusted = tokio::fs::read(root).await.map_err(io(root))?;
        let loaded = RepositoryLoader::new(&trusted, file_url(&metadata)?, file_url(&targets)?)
            .expiration_enforcement(ExpirationEnforcement::Unsafe)
            .load()
            .await
            .map_err(tuf(format!(
                "the repository {} does not verify",
                repo.display()
            )))?;
        let versions = (
            bump(loaded.targets().signed.version)?,
            bump(loaded.snapshot().signed.version)?,
            bump(loaded.timestamp().signed.version)?,
        );
        let latest = metadata.join(format!("{}.root.json", loaded.root().signed.version));
        let editor = RepositoryEditor::from_repo(&latest, loaded)
            .await
            .map_err(tuf(format!("reading {}", latest.display())))?;
        (editor, versions, latest)
    } else {
        let editor = RepositoryEditor::new(root)
            .await
            .map_err(tuf(format!("reading {}", root.display())))?;
        (
            editor,
            (NonZeroU64::MIN, NonZeroU64::MIN, NonZeroU64::MIN),
            root.to_owned(),
        )
    };

    let (_, mut target) = RepositoryEditor::build_target(what.bundle)
        .await
        .map_err(tuf(format!("reading {}", what.bundle.display())))?;
    target.custom = HashMap::from([
        (
            "version".to_owned(),
            Value::String(what.version.to_string()),
        ),
        (
            "compatible".to_owned(),
            Value::String(what.compatible.to_owned()),
        ),
    ]);
    editor
        .add_target(name.as_str(), target)
        .map_err(tuf("adding the target"))?
        .targets_version(versions.0)
        .map_err(tuf("setting the targets version"))?
        .targets_expires(whole_seconds(what.targets_expires)?)
        .map_err(tuf("setting the targets expiry"))?
        .snapshot_version(versions.1)
        .snapshot_expires(whole_seconds(what.snapshot_expires)?)
        .timestamp_version(versions.2)
        .timestamp_expires(whole_seconds(what.timestamp_expires)?);
    let signed = editor
        .sign(&[
            PemKeySource::boxed(&keys.targets),
            PemKeySource::boxed(&keys.snapshot),
            PemKeySource::boxed(&keys.timestamp),
        ])
        .await
        .map_err(tuf("signing the repository"))?;

    // The bundle first, then the metadata that names it.
    let bundle_tmp = targets.join(format!(".{name}.tmp"));
    tokio::fs::copy(what.bundle, &bundle_tmp)
        .await
        .map_err(io(what.bundle))?;
    tokio::fs::rename(&bundle_tmp, targets.join(&name))
        .await
        .map_err(io(&targets))?;

    let staging = tempfile::Builder::new()
        .prefix(".staging")
        .tempdir_in(repo)
        .map_err(io(repo))?;
    signed
        .write(staging.path())
        .await
        .map_err(tuf("writing the metadata"))?;
    let root_bytes = tokio::fs::read(&root_file).await.map_err(io(&root_file))?;
    let root_version = serde_json::from_slice::<Signed<Root>>(&root_bytes)
        .map_err(|e| PublishError::Invalid(format!("{}: {e}", root_file.display())))?
        .signed
        .version;
    let versioned_root = format!("{root_version}.root.json");
    if !tokio::fs::try_exists(metadata.join(&versioned_root))
        .await
        .map_err(io(&metadata))?
    {
        write_atomically(&metadata.join(&versioned_root), &root_bytes).await?;
    }
    write_atomically(&metadata.join("root.json"), &root_bytes).await?;
    for file in ["targets.json", "snapshot.json", "timestamp.json"] {
        let from = staging.path().join(file);
        tokio::fs::rename(&from, metadata.join(file))
            .await
            .map_err(io(&from))?;
    }
    Ok(())
}

/// Root-key rotation: a new root (version N+1) with `new_root_key`, signed by the old and
/// the new root key, written as `repo/metadata/<N+1>.root.json` (and root.json).
/// `keys.root` is the current (old) root key. The other roles keep their keys, so the
/// rest of the metadata stays valid.
pub async fn rotate_root(
    repo: &Path,
    keys: &Keys,
    new_root_key: &Path,
    expires: jiff::Timestamp,
) -> Result<(), PublishError> {
    let metadata = repo.join("metadata");
    let current_path = metadata.join("root.json");
    let bytes = tokio::fs::read(&current_path)
        .await
        .map_err(io(&current_path))?;
    let current: Signed<Root> = serde_json::from_slice(&bytes)
        .map_err(|e| PublishError::Invalid(format!("{}: {e}", current_path.display())))?;
    current.signed.verify_role(&current).map_err(|e| {
        PublishError::Invalid(format!("{} does not verify: {e}", current_path.display()))
    })?;

    let (new_key, new_id) = public_key(new_root_key).await?;
    let old = current.signed;
    let mut new = old.clone();
    new.version = bump(old.version)?;
    new.expires = whole_seconds(expires)?;
    let old_ids = old
        .roles
        .get(&RoleType::Root)
        .map(|r| r.keyids.clone())
        .unwrap_or_default();
    new.roles.insert(
        RoleType::Root,
        RoleKeys {
            keyids: vec![new_id.clone()],
            threshold: NonZeroU64::MIN,
            _extra: HashMap::new(),
        },
    );
    // Old root keys no other role uses leave the key list.
    for id in old_ids {
        if !new.roles.values().any(|r| r.keyids.contains(&id)) {
            new.keys.remove(&id);
        }
    }
    new.keys.insert(new_id, new_key);

    let by_new = sign_root(&new, &new, new_root_key).await?;
    let by_old = sign_root(&new, &old, &keys.root).await?;
    let both = by_new
        .add_old_signatures(by_old.signed().signatures.clone())
        .map_err(tuf("combining the root signatures"))?;
    let file = metadata.join(format!("{}.root.json", new.version));
    write_atomically(&file, both.buffer()).await?;
    write_atomically(&current_path, both.buffer()).await
}
