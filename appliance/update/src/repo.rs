//! The TUF check: which RAUC bundle is current for this board.
//!
//! tough refreshes the metadata (the root chain, root-key rotation included, then
//! timestamp, snapshot and targets, each with its expiry enforced) against the root baked
//! into the image and the last trusted metadata in the datastore (rollback protection).
//! Each target is one RAUC bundle whose TUF `custom` metadata says
//! `{"version": "<semver>", "compatible": "<board>"}`; [`check`] returns the bundles for
//! this board, newest first.
//!
//! Metadata travels over [`ReqwestTransport`], tough's `Transport` over the workspace's
//! reqwest (tough's own `http` feature would pull a second reqwest).

use std::error::Error as _;
use std::path::PathBuf;

use futures_util::TryStreamExt as _;
use tough::error::Error as ToughError;
use tough::{
    FilesystemTransport, RepositoryLoader, Transport, TransportError, TransportErrorKind,
    TransportStream,
};
use url::Url;

/// Where the update repository is and what this appliance trusts.
#[derive(Debug, Clone)]
pub struct RepoSettings {
    /// The trusted root.json baked into the image.
    pub root: PathBuf,
    /// tough's datastore: the last trusted metadata (rollback protection).
    pub datastore: PathBuf,
    /// Base URL of the metadata (`…/metadata/`).
    pub metadata_url: Url,
    /// Base URL of the targets, the bundles (`…/targets/`).
    pub targets_url: Url,
    /// This board's RAUC `compatible` string, e.g. `contextvault-x86_64`.
    pub compatible: String,
}

/// One bundle for this board, as the signed targets metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The target name (the bundle's file name in the repository).
    pub target: String,
    /// The bundle's version (custom `version`).
    pub version: semver::Version,
    /// The board it is for (custom `compatible`).
    pub compatible: String,
    /// Its exact length in bytes.
    pub length: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// `targets_url` joined with the target name.
    pub url: Url,
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Bundles for this board, newest version first.
    pub offers: Vec<Offer>,
    /// Targets for other boards, left out: (target name, their `compatible`).
    pub other_boards: Vec<(String, String)>,
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The repository could not be reached or answered with an error.
    #[error("The update repository could not be reached: {0}")]
    Unreachable(String),
    /// Metadata is not signed by the keys the trusted root names.
    #[error("The update metadata is not signed by the trusted keys: {0}")]
    BadSignature(String),
    /// Metadata has expired (a freeze attack, or a repository nobody re-signed).
    #[error("The update metadata has expired: {0}")]
    Expired(String),
    /// Metadata is older than what this appliance trusted before.
    #[error(
        "The update metadata is older than metadata trusted before (possible rollback attack): {0}"
    )]
    Rollback(String),
    /// Anything else: unreadable metadata, mismatched hashes, local datastore trouble.
    #[error("The update metadata is invalid: {0}")]
    Invalid(String),
}

impl RepoError {
    /// Sorts one of tough's errors into the five kinds above.
    fn from_tough(e: &ToughError) -> RepoError {
        let text = e.to_string();
        match e {
            ToughError::ExpiredMetadata { .. } => RepoError::Expired(text),
            ToughError::VerifyMetadata { .. }
            | ToughError::VerifyRoleMetadata { .. }
            | ToughError::VerifyTrustedMetadata { .. } => RepoError::BadSignature(text),
            ToughError::OlderMetadata { .. }
            | ToughError::OlderSnapshotInTimestamp { .. }
            | ToughError::SnapshotRoleRollback { .. }
            | ToughError::SnapshotRoleMissing { .. } => RepoError::Rollback(text),
            ToughError::Transport { source, .. } => {
                // tough reports hash and size mismatches found while streaming as transport
                // errors that carry its own error as their cause.
                match source.source().and_then(|s| s.downcast_ref::<ToughError>()) {
                    Some(inner) => RepoError::from_tough(inner),
                    None => RepoError::Unreachable(text),
                }
            }
            _ => RepoError::Invalid(text),
        }
    }
}

/// tough's [`Transport`] over reqwest: `http(s)://` through the client, `file://` from
/// disk. A 404 is reported as `FileNotFound`, which tough needs to tell "no newer root"
/// (`N.root.json` absent) from a failure.
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    /// A transport that fetches with `client`.
    pub fn new(client: reqwest::Client) -> ReqwestTransport {
        ReqwestTransport { client }
    }
}

#[tough::async_trait]
impl Transport for ReqwestTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        match url.scheme() {
            "http" | "https" => {}
            "file" => return FilesystemTransport.fetch(url).await,
            _ => {
                return Err(TransportError::new(
                    TransportErrorKind::UnsupportedUrlScheme,
                    url,
                ));
            }
        }
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| TransportError::new_with_cause(TransportErrorKind::Other, &url, e))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(TransportError::new(TransportErrorKind::FileNotFound, url));
        }
        if !status.is_success() {
            return Err(TransportError::new_with_cause(
                TransportErrorKind::Other,
                &url,
                format!("the server answered {status}"),
            ));
        }
        let stream = futures_util::stream::try_unfold(response, |mut response| async move {
            Ok(response.chunk().await?.map(|bytes| (bytes, response)))
        })
        .map_err(move |e: reqwest::Error| {
            TransportError::new_with_cause(TransportErrorKind::Other, &url, e)
        });
        Ok(Box::pin(stream))
    }
}

/// A base URL that ends in `/`, so that joining a name appends to it.
fn as_base(url: &Url) -> Url {
    let mut url = url.clone();
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// Whether a target name can be a file name in the download directory as it is.
pub(crate) fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

/// Refresh the metadata (tough: root chain incl. root-key rotation, timestamp, snapshot,
/// targets; expiry enforced) and return every target whose custom `compatible` equals
/// settings.compatible, newest version first. Targets for other boards are left out but
/// returned in `other_boards`. Targets without a readable `version` and `compatible`, or
/// whose name is not a plain file name, are left out with a warning.
pub async fn check(settings: &RepoSettings, client: reqwest::Client) -> Result<Check, RepoError> {
    let root = tokio::fs::read(&settings.root).await.map_err(|e| {
        RepoError::Invalid(format!(
            "the trusted root {} cannot be read: {e}",
            settings.root.display()
        ))
    })?;
    tokio::fs::create_dir_all(&settings.datastore)
        .await
        .map_err(|e| {
            RepoError::Invalid(format!(
                "the datastore {} cannot be created: {e}",
                settings.datastore.display()
            ))
        })?;
    let targets_url = as_base(&settings.targets_url);
    let repo = RepositoryLoader::new(&root, as_base(&settings.metadata_url), targets_url.clone())
        .transport(ReqwestTransport::new(client))
        .datastore(&settings.datastore)
        .load()
        .await
        .map_err(|e| RepoError::from_tough(&e))?;

    let mut offers = Vec::new();
    let mut other_boards = Vec::new();
    for (name, target) in repo.all_targets() {
        let name = name.raw();
        let field = |key: &str| target.custom.get(key).and_then(|v| v.as_str());
        let (Some(version), Some(compatible)) = (field("version"), field("compatible")) else {
            tracing::warn!(
                target = name,
                "update target without version or compatible left out"
            );
            continue;
        };
        if compatible != settings.compatible {
            other_boards.push((name.to_owned(), compatible.to_owned()));
            continue;
        }
        let Ok(version) = semver::Version::parse(version) else {
            tracing::warn!(
                target = name,
                version,
                "update target with an invalid version left out"
            );
            continue;
        };
        let Ok(sha256) = <[u8; 32]>::try_from(&target.hashes.sha256[..]) else {
            tracing::warn!(
                target = name,
                "update target with a malformed sha256 left out"
            );
            continue;
        };
        if !is_plain_file_name(name) {
            tracing::warn!(
                target = name,
                "update target whose name is not a file name left out"
            );
            continue;
        }
        let url = targets_url.join(name).map_err(|e| {
            RepoError::Invalid(format!("the target name {name:?} makes no URL: {e}"))
        })?;
        offers.push(Offer {
            target: name.to_owned(),
            version,
            compatible: compatible.to_owned(),
            length: target.length,
            sha256,
            url,
        });
    }
    offers.sort_by(|a, b| {
        b.version
            .cmp(&a.version)
            .then_with(|| a.target.cmp(&b.target))
    });
    other_boards.sort();
    Ok(Check {
        offers,
        other_boards,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::tests::{Mode, serve};
    use crate::download::{self, DownloadError};
    use crate::publish::{self, Keys, Publication};
    use std::path::Path;

    const BOARD: &str = "contextvault-x86_64";

    fn days(n: i64) -> jiff::Timestamp {
        jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(24 * n))
            .unwrap()
    }

    /// Keys in `dir/<name>` and their root.json.
    async fn owner(dir: &Path, name: &str) -> (Keys, PathBuf) {
        let keys = publish::generate_keys(&dir.join(name)).unwrap();
        let root = dir.join(format!("{name}-root.json"));
        publish::create_root(&keys, &root, days(365)).await.unwrap();
        (keys, root)
    }

    async fn add(
        repo: &Path,
        root: &Path,
        keys: &Keys,
        file: &str,
        version: &str,
        compatible: &str,
        timestamp_days: i64,
    ) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join(file);
        let content = format!("bundle {file} {version} {compatible}")
            .repeat(100)
            .into_bytes();
        std::fs::write(&bundle, &content).unwrap();
        let version = semver::Version::parse(version).unwrap();
        publish::publish(
            repo,
            root,
            keys,
            &Publication {
                bundle: &bundle,
                version: &version,
                compatible,
                targets_expires: days(30),
                snapshot_expires: days(30),
                timestamp_expires: days(timestamp_days),
            },
        )
        .await
        .unwrap();
        content
    }

    fn file_settings(repo: &Path, root: &Path, datastore: &Path) -> RepoSettings {
        RepoSettings {
            root: root.to_owned(),
            datastore: datastore.to_owned(),
            metadata_url: Url::from_directory_path(repo.join("metadata")).unwrap(),
            targets_url: Url::from_directory_path(repo.join("targets")).unwrap(),
            compatible: BOARD.into(),
        }
    }

    async fn http_settings(repo: &Path, root: &Path, datastore: &Path) -> RepoSettings {
        let (base, _) = serve(repo.to_owned(), Mode::Honest).await;
        RepoSettings {
            root: root.to_owned(),
            datastore: datastore.to_owned(),
            metadata_url: base.join("metadata").unwrap(),
            targets_url: base.join("targets").unwrap(),
            compatible: BOARD.into(),
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    #[tokio::test]
    async fn newest_compatible_offer_over_http_then_download() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, root) = owner(dir.path(), "keys").await;
        let repo = dir.path().join("repo");
        add(&repo, &root, &keys, "cv-1.0.0.raucb", "1.0.0", BOARD, 7).await;
        let newest = add(&repo, &root, &keys, "cv-1.10.0.raucb", "1.10.0", BOARD, 7).await;
        add(&repo, &root, &keys, "cv-1.2.0.raucb", "1.2.0", BOARD, 7).await;
        add(
            &repo,
            &root,
            &keys,
            "arm-9.0.0.raucb",
            "9.0.0",
            "contextvault-aarch64",
            7,
        )
        .await;

        let settings = http_settings(&repo, &root, &dir.path().join("datastore")).await;
        let check = check(&settings, client()).await.unwrap();
        let names: Vec<_> = check.offers.iter().map(|o| o.target.as_str()).collect();
        assert_eq!(
            names,
            ["cv-1.10.0.raucb", "cv-1.2.0.raucb", "cv-1.0.0.raucb"]
        );
        assert_eq!(
            check.other_boards,
            [(
                "arm-9.0.0.raucb".to_owned(),
                "contextvault-aarch64".to_owned()
            )]
        );
        let offer = &check.offers[0];
        assert_eq!(offer.version, semver::Version::new(1, 10, 0));
        assert_eq!(offer.compatible, BOARD);
        assert_eq!(offer.length, newest.len() as u64);
        assert_eq!(
            offer.url.as_str(),
            format!(
                "{}cv-1.10.0.raucb",
                settings
                    .targets_url
                    .as_str()
                    .trim_end_matches('/')
                    .to_owned()
                    + "/"
            )
        );

        let out = tempfile::tempdir().unwrap();
        let path = download::fetch(&client(), offer, out.path(), |_, _| {})
            .await
            .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), newest);

        // The same bundle changed on the server: the signed hash catches it.
        let mut tampered = newest.clone();
        tampered[0] ^= 1;
        std::fs::write(repo.join("targets/cv-1.10.0.raucb"), &tampered).unwrap();
        let out = tempfile::tempdir().unwrap();
        let err = download::fetch(&client(), offer, out.path(), |_, _| {})
            .await
            .unwrap_err();
        assert!(matches!(err, DownloadError::Hash { .. }), "{err:?}");
        // And a longer one, its length.
        tampered.push(0);
        std::fs::write(repo.join("targets/cv-1.10.0.raucb"), &tampered).unwrap();
        let err = download::fetch(&client(), offer, out.path(), |_, _| {})
            .await
            .unwrap_err();
        assert!(matches!(err, DownloadError::TooLong { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn targets_signed_by_the_wrong_key_is_bad_signature() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, root) = owner(dir.path(), "keys").await;
        // The same root, snapshot and timestamp keys, but another targets key: a root.json
        // the appliance does not trust signs a repository it will read.
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        let mut rogue = Keys::in_dir(&other);
        for (from, to) in [
            (&keys.root, &rogue.root),
            (&keys.snapshot, &rogue.snapshot),
            (&keys.timestamp, &rogue.timestamp),
        ] {
            std::fs::copy(from, to).unwrap();
        }
        publish::generate_key(&rogue.targets).unwrap();
        let rogue_root = dir.path().join("rogue-root.json");
        publish::create_root(&rogue, &rogue_root, days(365))
            .await
            .unwrap();
        rogue.root = keys.root.clone();
        let repo = dir.path().join("repo");
        add(
            &repo,
            &rogue_root,
            &rogue,
            "cv-1.0.0.raucb",
            "1.0.0",
            BOARD,
            7,
        )
        .await;

        let settings = http_settings(&repo, &root, &dir.path().join("datastore")).await;
        let err = check(&settings, client()).await.unwrap_err();
        assert!(matches!(err, RepoError::BadSignature(_)), "{err:?}");
        assert!(err.to_string().contains("targets"), "{err}");
    }

    #[tokio::test]
    async fn expired_timestamp_is_expired() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, root) = owner(dir.path(), "keys").await;
        let repo = dir.path().join("repo");
        add(&repo, &root, &keys, "cv-1.0.0.raucb", "1.0.0", BOARD, -1).await;
        let settings = file_settings(&repo, &root, &dir.path().join("datastore"));
        let err = check(&settings, client()).await.unwrap_err();
        assert!(matches!(err, RepoError::Expired(_)), "{err:?}");
        assert!(err.to_string().contains("timestamp"), "{err}");
        // Re-signing (what the owner does when the timestamp runs out) repairs it.
        add(&repo, &root, &keys, "cv-1.0.0.raucb", "1.0.0", BOARD, 1).await;
        assert_eq!(check(&settings, client()).await.unwrap().offers.len(), 1);
    }

    #[tokio::test]
    async fn metadata_going_backwards_is_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, root) = owner(dir.path(), "keys").await;
        let repo = dir.path().join("repo");
        add(&repo, &root, &keys, "cv-1.0.0.raucb", "1.0.0", BOARD, 7).await;
        let old = dir.path().join("old");
        copy_dir(&repo, &old);
        add(&repo, &root, &keys, "cv-1.1.0.raucb", "1.1.0", BOARD, 7).await;

        let datastore = dir.path().join("datastore");
        let check_new = check(&file_settings(&repo, &root, &datastore), client())
            .await
            .unwrap();
        assert_eq!(check_new.offers[0].version, semver::Version::new(1, 1, 0));
        // A mirror (or an attacker) now serves the older, still validly signed metadata.
        let err = check(&file_settings(&old, &root, &datastore), client())
            .await
            .unwrap_err();
        assert!(matches!(err, RepoError::Rollback(_)), "{err:?}");
        // A fresh appliance without that history takes it.
        let fresh = dir.path().join("fresh");
        assert!(
            check(&file_settings(&old, &root, &fresh), client())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn root_rotation_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, root) = owner(dir.path(), "keys").await;
        let repo = dir.path().join("repo");
        add(&repo, &root, &keys, "cv-1.0.0.raucb", "1.0.0", BOARD, 7).await;
        let datastore = dir.path().join("datastore");
        let settings = http_settings(&repo, &root, &datastore).await;
        check(&settings, client()).await.unwrap();

        let new_root_key = dir.path().join("new-root.pem");
        publish::generate_key(&new_root_key).unwrap();
        publish::rotate_root(&repo, &keys, &new_root_key, days(365))
            .await
            .unwrap();
        assert!(repo.join("metadata/2.root.json").exists());
        // Publishing goes on after the rotation, from the original trusted root.
        add(&repo, &root, &keys, "cv-1.1.0.raucb", "1.1.0", BOARD, 7).await;

        let check_after = check(&settings, client()).await.unwrap();
        assert_eq!(check_after.offers[0].version, semver::Version::new(1, 1, 0));
        let trusted: tough::schema::Signed<tough::schema::Root> =
            serde_json::from_slice(&std::fs::read(datastore.join("root.json")).unwrap()).unwrap();
        assert_eq!(trusted.signed.version.get(), 2);

        // A second rotation, signed with the new key as the old one.
        let newer = dir.path().join("newer-root.pem");
        publish::generate_key(&newer).unwrap();
        let mut rotated_keys = keys.clone();
        rotated_keys.root = new_root_key.clone();
        publish::rotate_root(&repo, &rotated_keys, &newer, days(365))
            .await
            .unwrap();
        // A fresh appliance walks 1 → 2 → 3.
        let fresh = dir.path().join("fresh");
        let settings = http_settings(&repo, &root, &fresh).await;
        check(&settings, client()).await.unwrap();
        let trusted: tough::schema::Signed<tough::schema::Root> =
            serde_json::from_slice(&std::fs::read(fresh.join("root.json")).unwrap()).unwrap();
        assert_eq!(trusted.signed.version.get(), 3);

        // A rotation the old root key did not sign is refused.
        let bad = dir.path().join("bad-root.pem");
        publish::generate_key(&bad).unwrap();
        let mut wrong = keys.clone();
        wrong.root = bad.clone();
        let err = publish::rotate_root(&repo, &wrong, &bad, days(365))
            .await
            .unwrap_err();
        assert!(matches!(err, publish::PublishError::Tuf { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn unreachable_repository() {
        let dir = tempfile::tempdir().unwrap();
        let (_, root) = owner(dir.path(), "keys").await;
        // Bind and drop: nothing listens on that port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let settings = RepoSettings {
            root,
            datastore: dir.path().join("datastore"),
            metadata_url: base.join("metadata/").unwrap(),
            targets_url: base.join("targets/").unwrap(),
            compatible: BOARD.into(),
        };
        let err = check(&settings, client()).await.unwrap_err();
        assert!(matches!(err, RepoError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn transport_reports_404_as_file_not_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("there.json"), b"{}").unwrap();
        let (base, _) = serve(dir.path().to_owned(), Mode::Honest).await;
        let transport = ReqwestTransport::new(client());
        let err = transport
            .fetch(base.join("2.root.json").unwrap())
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), TransportErrorKind::FileNotFound);
        let stream = transport
            .fetch(base.join("there.json").unwrap())
            .await
            .unwrap();
        let body: Vec<u8> = stream
            .try_fold(Vec::new(), |mut acc, b| async move {
                acc.extend_from_slice(&b);
                Ok(acc)
            })
            .await
            .unwrap();
        assert_eq!(body, b"{}");
        let err = transport
            .fetch(Url::parse("ftp://example.invalid/x").unwrap())
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), TransportErrorKind::UnsupportedUrlScheme);
    }

    #[test]
    fn generate_keys_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        publish::generate_keys(dir.path()).unwrap();
        let err = publish::generate_keys(dir.path()).unwrap_err();
        assert!(
            matches!(err, publish::PublishError::KeyExists(_)),
            "{err:?}"
        );
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
}
