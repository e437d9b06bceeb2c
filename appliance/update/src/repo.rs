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
    #[error("The update metadata is older than metadata trusted before (possible rollback attack): {0}")]
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
            _ => return Err(TransportError::new(TransportErrorKind::UnsupportedUrlScheme, url)),
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
            tracing::warn!(target = name, "update target without version or compatible left out");
            continue;
        };
        if compatible != settings.compatible {
            other_boards.push((name.to_owned(), compatible.to_owned()));
            continue;
        }
        let Ok(version) = semver::Version::parse(version) else {
            tracing::warn!(target = name, version, "update target with an invalid version left out");
            continue;
        };
        let Ok(sha256) = <[u8; 32]>::try_from(&target.hashes.sha256[..]) else {
            tracing::warn!(target = name, "update target with a malformed sha256 left out");
            continue;
        };
        if !is_plain_file_name(name) {
            tracing::warn!(target = name, "update target whose name is not a file name left out");
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
