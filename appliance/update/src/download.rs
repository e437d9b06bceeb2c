//! Downloading a bundle: resumable, and checked against the signed length and SHA-256
//! while it streams.
//!
//! The bundle goes to `<dir>/<target>.part` and is renamed to `<dir>/<target>` only once
//! its length and hash match the [`Offer`]. A partial file left by an interrupted
//! download is hashed and resumed with an HTTP `Range` request.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::repo::{Offer, is_plain_file_name};

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The request failed or the server answered with an error; a partial file is kept
    /// to resume from.
    #[error("The bundle could not be downloaded: {0}")]
    Http(String),
    /// The server sent more bytes than the signed length; the partial file was deleted.
    #[error(
        "The server sent more than the {expected} bytes the update metadata lists for the bundle"
    )]
    TooLong {
        /// The signed length.
        expected: u64,
    },
    /// The download ended short of the signed length; the partial file was deleted.
    #[error("The bundle is {got} bytes, the update metadata lists {expected}")]
    Length {
        /// The signed length.
        expected: u64,
        /// What arrived.
        got: u64,
    },
    /// The bundle's SHA-256 is not the signed one; the partial file was deleted.
    #[error("The bundle's SHA-256 is {got}, the update metadata lists {expected}")]
    Hash {
        /// The signed hash (hex).
        expected: String,
        /// The hash of what arrived (hex).
        got: String,
    },
    /// Reading or writing the download directory failed.
    #[error("The bundle could not be written: {0}")]
    Io(#[from] std::io::Error),
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Calls `progress` at most every 1 % of the total or every second, and at the end.
struct Progress<F> {
    callback: F,
    total: u64,
    last_done: u64,
    last_at: Instant,
}

impl<F: FnMut(u64, u64)> Progress<F> {
    fn update(&mut self, done: u64) {
        let step = (self.total / 100).max(1);
        if done.saturating_sub(self.last_done) >= step
            || self.last_at.elapsed() >= Duration::from_secs(1)
        {
            self.report(done);
        }
    }

    fn report(&mut self, done: u64) {
        self.last_done = done;
        self.last_at = Instant::now();
        (self.callback)(done, self.total);
    }
}

/// Hashes what a partial file holds; `None` when there is none.
async fn hash_existing(part: &Path) -> std::io::Result<Option<(Sha256, u64)>> {
    let mut file = match tokio::fs::File::open(part).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok(Some((hasher, len)))
}

async fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Download `offer.url` to `dir/<target>.part`, resuming from an existing partial file
/// with an HTTP Range request (hash the bytes already there first; a server answering
/// 200 instead of 206 restarts from zero). Stops as soon as more than `offer.length`
/// bytes arrive. On success renames to `dir/<target>` and returns that path; on a hash
/// or length mismatch deletes the partial file. `progress(done, total)` is called at
/// most every 1 % or 1 s.
pub async fn fetch(
    client: &reqwest::Client,
    offer: &Offer,
    dir: &Path,
    progress: impl FnMut(u64, u64),
) -> Result<PathBuf, DownloadError> {
    if !is_plain_file_name(&offer.target) {
        return Err(DownloadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "the target name {:?} is not a plain file name",
                offer.target
            ),
        )));
    }
    let done_path = dir.join(&offer.target);
    let part = dir.join(format!("{}.part", offer.target));
    let expected = offer.length;
    let mut progress = Progress {
        callback: progress,
        total: expected,
        last_done: 0,
        last_at: Instant::now(),
    };

    let (mut hasher, mut done) = match hash_existing(&part).await? {
        // More than the signed length: that file is not our bundle.
        Some((_, len)) if len > expected => {
            remove_if_exists(&part).await?;
            (Sha256::new(), 0)
        }
        Some(found) => found,
        None => (Sha256::new(), 0),
    };

    if done < expected {
        let mut request = client.get(offer.url.clone());
        if done > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={done}-"));
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| DownloadError::Http(e.to_string()))?;
        let status = response.status();
        let resumed = done > 0
            && status == reqwest::StatusCode::PARTIAL_CONTENT
            && range_starts_at(&response, done);
        if !status.is_success() {
            if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
                // Our partial file is no prefix the server agrees with: start over next time.
                remove_if_exists(&part).await?;
            }
            return Err(DownloadError::Http(format!(
                "the server answered {status} for {}",
                offer.url
            )));
        }
        if status == reqwest::StatusCode::PARTIAL_CONTENT && !resumed {
            // A range we did not ask for: what we hold cannot be trusted to line up.
            remove_if_exists(&part).await?;
            return Err(DownloadError::Http(format!(
                "the server answered a range other than the one asked for, for {}",
                offer.url
            )));
        }
        let mut file = if resumed {
            tokio::fs::OpenOptions::new()
                .append(true)
                .open(&part)
                .await?
        } else {
            // A plain 200: a fresh download, or the server ignored Range.
            hasher = Sha256::new();
            done = 0;
            tokio::fs::File::create(&part).await?
        };
        progress.report(done);
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    file.flush().await?;
                    return Err(DownloadError::Http(e.to_string()));
                }
            };
            let len = chunk.len() as u64;
            if done + len > expected {
                drop(file);
                remove_if_exists(&part).await?;
                return Err(DownloadError::TooLong { expected });
            }
            file.write_all(&chunk).await?;
            hasher.update(&chunk);
            done += len;
            progress.update(done);
        }
        file.flush().await?;
        file.sync_all().await?;
    }

    if done != expected {
        remove_if_exists(&part).await?;
        return Err(DownloadError::Length {
            expected,
            got: done,
        });
    }
    let got: [u8; 32] = hasher.finalize().into();
    if got != offer.sha256 {
        remove_if_exists(&part).await?;
        return Err(DownloadError::Hash {
            expected: hex(&offer.sha256),
            got: hex(&got),
        });
    }
    tokio::fs::rename(&part, &done_path).await?;
    progress.report(done);
    Ok(done_path)
}

/// Whether a 206 answer's `Content-Range: bytes START-END/…` starts where we asked.
fn range_starts_at(response: &reqwest::Response, start: u64) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.trim().parse::<u64>().ok())
        == Some(start)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncBufReadExt as _, BufReader};
    use tokio::net::TcpListener;

    /// How the test server answers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Mode {
        /// 206 for a Range request, 200 otherwise.
        Honest,
        /// Always 200 with the whole file.
        IgnoreRange,
    }

    /// A tiny HTTP/1.1 server: every GET answers with the file under `root` named by the
    /// path (404 if none), honouring `Range: bytes=N-` unless told not to. Returns the
    /// base URL and a counter of Range requests seen.
    pub(crate) async fn serve(root: PathBuf, mode: Mode) -> (url::Url, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ranges = Arc::new(AtomicUsize::new(0));
        let seen = ranges.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let root = root.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read);
                    let mut first = String::new();
                    lines.read_line(&mut first).await.unwrap();
                    let path = first.split(' ').nth(1).unwrap_or("/").to_owned();
                    let mut range: Option<u64> = None;
                    loop {
                        let mut line = String::new();
                        lines.read_line(&mut line).await.unwrap();
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                            range = v.trim_end_matches('-').parse().ok();
                        }
                    }
                    let file = root.join(path.trim_start_matches('/'));
                    let head = match std::fs::read(&file) {
                        Err(_) => {
                            let h = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                            write.write_all(h.as_bytes()).await.unwrap();
                            return;
                        }
                        Ok(body) => body,
                    };
                    let body = head;
                    let (status, extra, bytes) = match range {
                        Some(start) if mode == Mode::Honest => {
                            seen.fetch_add(1, Ordering::SeqCst);
                            let start = usize::try_from(start).unwrap().min(body.len());
                            (
                                "206 Partial Content",
                                format!(
                                    "content-range: bytes {start}-{}/{}\r\n",
                                    body.len().saturating_sub(1),
                                    body.len()
                                ),
                                body[start..].to_vec(),
                            )
                        }
                        _ => ("200 OK", String::new(), body),
                    };
                    let h = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
                        bytes.len()
                    );
                    write.write_all(h.as_bytes()).await.unwrap();
                    let _ = write.write_all(&bytes).await;
                });
            }
        });
        (url::Url::parse(&format!("http://{addr}/")).unwrap(), ranges)
    }

    fn offer(url: &url::Url, content: &[u8]) -> Offer {
        Offer {
            target: "bundle.raucb".into(),
            version: semver::Version::new(1, 0, 0),
            compatible: "board".into(),
            length: content.len() as u64,
            sha256: Sha256::digest(content).into(),
            url: url.join("bundle.raucb").unwrap(),
        }
    }

    fn content() -> Vec<u8> {
        (0..300_000u32).map(|i| (i % 251) as u8).collect()
    }

    struct Setup {
        _server: tempfile::TempDir,
        out: tempfile::TempDir,
        url: url::Url,
        ranges: Arc<AtomicUsize>,
    }

    async fn setup(served: &[u8], mode: Mode) -> Setup {
        let server = tempfile::tempdir().unwrap();
        std::fs::write(server.path().join("bundle.raucb"), served).unwrap();
        let (url, ranges) = serve(server.path().to_owned(), mode).await;
        Setup {
            _server: server,
            out: tempfile::tempdir().unwrap(),
            url,
            ranges,
        }
    }

    #[tokio::test]
    async fn whole_download_with_progress() {
        let data = content();
        let s = setup(&data, Mode::Honest).await;
        let mut calls = Vec::new();
        let path = fetch(
            &reqwest::Client::new(),
            &offer(&s.url, &data),
            s.out.path(),
            |d, t| calls.push((d, t)),
        )
        .await
        .unwrap();
        assert_eq!(path, s.out.path().join("bundle.raucb"));
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert!(!s.out.path().join("bundle.raucb.part").exists());
        assert_eq!(calls.last(), Some(&(data.len() as u64, data.len() as u64)));
        // At most every 1 % (plus the first and the last call).
        assert!(calls.len() <= 102, "{} progress calls", calls.len());
    }

    #[tokio::test]
    async fn resumes_from_a_half_file() {
        let data = content();
        let s = setup(&data, Mode::Honest).await;
        let half = data.len() / 2;
        std::fs::write(s.out.path().join("bundle.raucb.part"), &data[..half]).unwrap();
        let mut first = None;
        let path = fetch(
            &reqwest::Client::new(),
            &offer(&s.url, &data),
            s.out.path(),
            |d, _| {
                first.get_or_insert(d);
            },
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
        assert_eq!(s.ranges.load(Ordering::SeqCst), 1);
        assert_eq!(first, Some(half as u64));
    }

    #[tokio::test]
    async fn server_ignoring_range_restarts_from_zero() {
        let data = content();
        let s = setup(&data, Mode::IgnoreRange).await;
        // A partial file whose bytes are wrong: a restart must not keep them.
        std::fs::write(s.out.path().join("bundle.raucb.part"), vec![0xee; 1000]).unwrap();
        let path = fetch(
            &reqwest::Client::new(),
            &offer(&s.url, &data),
            s.out.path(),
            |_, _| {},
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
    }

    #[tokio::test]
    async fn too_long_stops_and_deletes() {
        let data = content();
        let mut longer = data.clone();
        longer.extend_from_slice(b"trailing");
        let s = setup(&longer, Mode::Honest).await;
        let err = fetch(
            &reqwest::Client::new(),
            &offer(&s.url, &data),
            s.out.path(),
            |_, _| {},
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, DownloadError::TooLong { expected } if expected == data.len() as u64),
            "{err:?}"
        );
        assert!(!s.out.path().join("bundle.raucb.part").exists());
        assert!(!s.out.path().join("bundle.raucb").exists());
    }

    #[tokio::test]
    async fn wrong_hash_and_short_length_delete_the_part() {
        let data = content();
        let mut tampered = data.clone();
        tampered[1000] ^= 1;
        let s = setup(&tampered, Mode::Honest).await;
        let err = fetch(
            &reqwest::Client::new(),
            &offer(&s.url, &data),
            s.out.path(),
            |_, _| {},
        )
        .await
        .unwrap_err();
        assert!(matches!(err, DownloadError::Hash { .. }), "{err:?}");
        assert!(!s.out.path().join("bundle.raucb.part").exists());

        let short = setup(&data[..1000], Mode::Honest).await;
        let err = fetch(
            &reqwest::Client::new(),
            &offer(&short.url, &data),
            short.out.path(),
            |_, _| {},
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, DownloadError::Length { got: 1000, .. }),
            "{err:?}"
        );
        assert!(!short.out.path().join("bundle.raucb.part").exists());
    }

    #[tokio::test]
    async fn missing_bundle_is_an_http_error() {
        let data = content();
        let s = setup(&data, Mode::Honest).await;
        let mut o = offer(&s.url, &data);
        o.url = s.url.join("nothing.raucb").unwrap();
        let err = fetch(&reqwest::Client::new(), &o, s.out.path(), |_, _| {})
            .await
            .unwrap_err();
        assert!(matches!(err, DownloadError::Http(_)), "{err:?}");
    }
}
