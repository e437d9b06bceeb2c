//! Update hints: a signed webhook that only says "check for an update now".
//!
//! Hints follow Standard Webhooks (<https://www.standardwebhooks.com/>): the headers
//! `webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature`, a
//! space-separated list of `v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`;
//! the shared secret is written `whsec_<base64 key>`.
//!
//! A hint carries no update itself (the TUF check decides what is current), so the gate
//! below only has to keep strangers from making the appliance poll: it limits the rate
//! first, then checks the key, the headers, the clock, the signature and replays.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// The prefix Standard Webhooks puts before the base64 of a secret.
const SECRET_PREFIX: &str = "whsec_";
/// The shortest key accepted: Standard Webhooks' own secrets are 24 bytes or more, and
/// anything under 128 bits is guessable.
const MIN_KEY_LEN: usize = 16;
/// The length of a generated key (the HMAC-SHA256 block is 64 bytes; 32 is plenty).
const GENERATED_KEY_LEN: usize = 32;
/// Tolerance between the hint's timestamp and our clock: Standard Webhooks recommends
/// five minutes.
pub const TOLERANCE_SECS: i64 = 5 * 60;
/// How many hints a minute are looked at at all (counted before verification, so that
/// a flood of forged hints costs us no more than ten HMACs a minute).
pub const RATE_LIMIT_PER_MINUTE: usize = 10;
/// The rate limiter's window.
const RATE_WINDOW_SECS: i64 = 60;
/// Ids are kept twice the tolerance: a hint older than the tolerance is refused as stale
/// anyway, so an id can never be accepted again once it has been pruned.
const SEEN_KEEP_SECS: i64 = 2 * TOLERANCE_SECS;
/// Longest id accepted (keeps the seen-ids file small whatever a sender does).
const MAX_ID_LEN: usize = 256;

/// Errors reading a secret or the seen-ids file.
#[derive(Debug, thiserror::Error)]
pub enum HintError {
    /// The secret is not `whsec_` followed by the base64 of a long enough key.
    #[error("invalid hint secret: {0}")]
    InvalidSecret(String),
    /// The seen-ids file could not be read or written.
    #[error("hint replay store {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The seen-ids file is not the JSON this module writes.
    #[error("hint replay store {} is not valid: {source}", path.display())]
    Store {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: serde_json::Error,
    },
}

/// The shared HMAC key. Its `Debug` prints nothing of it; it is wiped on drop.
#[derive(Clone)]
pub struct HintSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for HintSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HintSecret(..)")
    }
}

impl HintSecret {
    /// Parses `whsec_<base64 key>`; the key must be at least 16 bytes.
    pub fn parse(s: &str) -> Result<HintSecret, HintError> {
        let b64 = s.trim().strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            HintError::InvalidSecret(format!("it must start with \"{SECRET_PREFIX}\""))
        })?;
        let key = Zeroizing::new(BASE64.decode(b64).map_err(|_| {
            HintError::InvalidSecret(format!("the text after \"{SECRET_PREFIX}\" is not base64"))
        })?);
        if key.len() < MIN_KEY_LEN {
            return Err(HintError::InvalidSecret(format!(
                "the key is {} bytes, at least {MIN_KEY_LEN} are needed",
                key.len()
            )));
        }
        Ok(HintSecret(key))
    }

    /// A new random 32-byte secret, and its `whsec_` text for the sender's side.
    pub fn generate() -> (HintSecret, String) {
        let mut key = Zeroizing::new(vec![0u8; GENERATED_KEY_LEN]);
        rand::rng().fill_bytes(&mut key);
        let text = format!("{SECRET_PREFIX}{}", BASE64.encode(&*key));
        (HintSecret(key), text)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length: new_from_slice cannot fail for it.
        HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of every length")
    }
}

impl std::str::FromStr for HintSecret {
    type Err = HintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HintSecret::parse(s)
    }
}

fn signed_mac(secret: &HintSecret, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = secret.mac();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value for a hint: `v1,<base64 of HMAC-SHA256>`.
pub fn sign(secret: &HintSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = signed_mac(secret, id, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("v1,{}", BASE64.encode(tag))
}

/// The three headers of a hint to send, signed with `secret`: `webhook-id`,
/// `webhook-timestamp` and `webhook-signature`, as (name, value) pairs.
pub fn headers(
    secret: &HintSecret,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sign(secret, id, timestamp, body)),
    ]
}

/// One received hint: the three headers as sent and the raw body.
#[derive(Debug, Clone, Copy)]
pub struct Hint<'a> {
    /// `webhook-id`.
    pub id: &'a str,
    /// `webhook-timestamp` (unix seconds, as text).
    pub timestamp: &'a str,
    /// `webhook-signature`.
    pub signature: &'a str,
    /// The request body, byte for byte.
    pub body: &'a [u8],
}

/// Why a hint was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No hint secret is configured: hints are switched off.
    NoKey,
    /// A header is missing or unreadable.
    Malformed(String),
    /// No listed signature matches.
    BadSignature,
    /// The timestamp is more than five minutes from our clock (positive: in the future).
    Stale {
        /// The hint's timestamp minus our clock, in seconds.
        skew_secs: i64,
    },
    /// This id was accepted before.
    Replayed,
    /// More than ten hints arrived in the last minute.
    RateLimited {
        /// Seconds until the next hint will be looked at.
        retry_after_secs: u64,
    },
}

impl Refusal {
    /// The HTTP status for the sender.
    pub fn http_status(&self) -> u16 {
        match self {
            Refusal::NoKey => 403,
            Refusal::Malformed(_) => 400,
            Refusal::BadSignature | Refusal::Stale { .. } => 401,
            Refusal::Replayed => 409,
            Refusal::RateLimited { .. } => 429,
        }
    }

    /// One sentence for the sender and the audit log.
    pub fn message(&self) -> String {
        match self {
            Refusal::NoKey => {
                "Update hints are switched off on this appliance (no hint secret is set).".into()
            }
            Refusal::Malformed(why) => format!("The update hint is malformed: {why}."),
            Refusal::BadSignature => {
                "The update hint's signature does not match the appliance's hint secret.".into()
            }
            Refusal::Stale { skew_secs } => format!(
                "The update hint's timestamp is {} seconds {} the appliance's clock, more than the {TOLERANCE_SECS} seconds allowed.",
                skew_secs.unsigned_abs(),
                if *skew_secs > 0 { "ahead of" } else { "behind" }
            ),
            Refusal::Replayed => "This update hint (its webhook-id) was already received.".into(),
            Refusal::RateLimited { retry_after_secs } => format!(
                "Too many update hints (at most {RATE_LIMIT_PER_MINUTE} a minute); try again in {retry_after_secs} seconds."
            ),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

/// The seen-ids file: id → unix second it was accepted.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SeenFile {
    ids: BTreeMap<String, i64>,
}

/// Checks hints: rate limit, key, headers, clock, signature, replay.
#[derive(Debug)]
pub struct HintGate {
    secret: Option<HintSecret>,
    seen_path: PathBuf,
    seen: BTreeMap<String, i64>,
    /// Unix seconds of the hints looked at within the last minute, oldest first.
    recent: VecDeque<i64>,
}

impl HintGate {
    /// `seen_path`: a JSON file where ids seen within the window are kept across restarts
    /// (written atomically: temp file + rename; pruned of ids older than 2 × window).
    /// A missing file is an empty store.
    pub fn open(secret: Option<HintSecret>, seen_path: PathBuf) -> Result<HintGate, HintError> {
        let seen = match std::fs::read(&seen_path) {
            Ok(bytes) => {
                serde_json::from_slice::<SeenFile>(&bytes)
                    .map_err(|source| HintError::Store {
                        path: seen_path.clone(),
                        source,
                    })?
                    .ids
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(HintError::Io {
                    path: seen_path,
                    source,
                });
            }
        };
        Ok(HintGate {
            secret,
            seen_path,
            seen,
            recent: VecDeque::new(),
        })
    }

    /// Order: rate limit (at most 10 hints a minute, counted before verification), no key
    /// → NoKey, malformed headers, timestamp outside ±5 min → Stale, signature (constant
    /// time, any of the listed v1 signatures may match) → BadSignature, id already seen →
    /// Replayed; then the id is recorded (and persisted) and Ok(()).
    ///
    /// If the seen-ids file cannot be written the hint is still accepted (the id is kept
    /// in memory) and a warning is logged: a hint only triggers a check.
    pub fn check(&mut self, hint: &Hint<'_>, now: OffsetDateTime) -> Result<(), Refusal> {
        let now = now.unix_timestamp();
        self.rate_limit(now)?;
        let secret = self.secret.as_ref().ok_or(Refusal::NoKey)?;

        if hint.id.is_empty() {
            return Err(Refusal::Malformed("the webhook-id header is empty".into()));
        }
        if hint.id.len() > MAX_ID_LEN || hint.id.chars().any(char::is_control) {
            return Err(Refusal::Malformed(format!(
                "the webhook-id header is longer than {MAX_ID_LEN} bytes or holds control characters"
            )));
        }
        let timestamp: i64 = hint.timestamp.trim().parse().map_err(|_| {
            Refusal::Malformed("the webhook-timestamp header is not a number of seconds".into())
        })?;
        let signatures: Vec<&str> = hint
            .signature
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .collect();
        if signatures.is_empty() {
            return Err(Refusal::Malformed(
                "the webhook-signature header lists no v1 signature".into(),
            ));
        }

        let skew_secs = timestamp.saturating_sub(now);
        if skew_secs.abs() > TOLERANCE_SECS {
            return Err(Refusal::Stale { skew_secs });
        }

        // The MAC is over the timestamp exactly as sent.
        let mac = signed_mac(secret, hint.id, hint.timestamp, hint.body);
        let matches = signatures.iter().any(|b64| match BASE64.decode(b64) {
            // verify_slice compares in constant time.
            Ok(tag) => mac.clone().verify_slice(&tag).is_ok(),
            Err(_) => false,
        });
        if !matches {
            return Err(Refusal::BadSignature);
        }

        self.seen.retain(|_, at| now - *at <= SEEN_KEEP_SECS);
        if self.seen.contains_key(hint.id) {
            return Err(Refusal::Replayed);
        }
        self.seen.insert(hint.id.to_owned(), now);
        if let Err(e) = self.persist() {
            tracing::warn!(error = %e, "update hint accepted but its id could not be saved");
        }
        Ok(())
    }

    fn rate_limit(&mut self, now: i64) -> Result<(), Refusal> {
        while self
            .recent
            .front()
            .is_some_and(|at| now - *at >= RATE_WINDOW_SECS)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= RATE_LIMIT_PER_MINUTE {
            let oldest = self.recent.front().copied().unwrap_or(now);
            let retry_after_secs = u64::try_from(RATE_WINDOW_SECS - (now - oldest))
                .unwrap_or(1)
                .max(1);
            return Err(Refusal::RateLimited { retry_after_secs });
        }
        self.recent.push_back(now);
        Ok(())
    }

    fn persist(&self) -> Result<(), HintError> {
        let io = |source| HintError::Io {
            path: self.seen_path.clone(),
            source,
        };
        let file = SeenFile {
            ids: self.seen.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|source| HintError::Store {
            path: self.seen_path.clone(),
            source,
        })?;
        write_atomically(&self.seen_path, &bytes).map_err(io)
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Key: the 24 bytes of "contextvault-hint-test-k" (base64 below).
    const SECRET: &str = "whsec_Y29udGV4dHZhdWx0LWhpbnQtdGVzdC1r";
    // Made once with OpenSSL, independently of this code:
    //   printf '%s' 'msg_2Xg.1798675200.{"check":true}' \
    //     | openssl dgst -sha256 -hmac 'contextvault-hint-test-k' -binary | base64
    const VECTOR_SIG: &str = "v1,6UuQo0HLZk7+bbfqjGoDVtsGM4Gq98U0XDvMlNCGx74=";
    const VECTOR_ID: &str = "msg_2Xg";
    const VECTOR_TS: i64 = 1_798_675_200;
    const VECTOR_BODY: &[u8] = br#"{"check":true}"#;

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    fn gate(dir: &tempfile::TempDir) -> HintGate {
        HintGate::open(
            Some(HintSecret::parse(SECRET).unwrap()),
            dir.path().join("seen.json"),
        )
        .unwrap()
    }

    fn signed(id: &str, ts: i64, body: &'static [u8]) -> (String, String) {
        let secret = HintSecret::parse(SECRET).unwrap();
        (ts.to_string(), sign(&secret, id, ts, body))
    }

    #[test]
    fn signature_matches_an_openssl_vector() {
        let secret = HintSecret::parse(SECRET).unwrap();
        assert_eq!(sign(&secret, VECTOR_ID, VECTOR_TS, VECTOR_BODY), VECTOR_SIG);
    }

    #[test]
    fn secret_parsing() {
        assert!(HintSecret::parse("Y29udGV4dHZhdWx0LWhpbnQtdGVzdC1r").is_err());
        assert!(HintSecret::parse("whsec_!!!").is_err());
        // 8 bytes: too short.
        assert!(HintSecret::parse("whsec_MTIzNDU2Nzg=").is_err());
        let s: HintSecret = SECRET.parse().unwrap();
        assert_eq!(format!("{s:?}"), "HintSecret(..)");
        let (generated, text) = HintSecret::generate();
        assert!(text.starts_with("whsec_"));
        let again = HintSecret::parse(&text).unwrap();
        assert_eq!(sign(&generated, "a", 1, b"x"), sign(&again, "a", 1, b"x"));
    }

    #[test]
    fn good_hint_then_replay_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (ts, sig) = signed("msg_1", 1_000_000, b"{}");
        let hint = Hint {
            id: "msg_1",
            timestamp: &ts,
            signature: &sig,
            body: b"{}",
        };
        let mut g = gate(&dir);
        assert_eq!(g.check(&hint, at(1_000_010)), Ok(()));
        assert_eq!(g.check(&hint, at(1_000_011)), Err(Refusal::Replayed));
        drop(g);
        let mut g = gate(&dir);
        assert_eq!(g.check(&hint, at(1_000_012)), Err(Refusal::Replayed));
        assert_eq!(Refusal::Replayed.http_status(), 409);
    }

    #[test]
    fn any_listed_v1_signature_may_match() {
        let dir = tempfile::tempdir().unwrap();
        let (ts, sig) = signed("msg_2", 1_000_000, b"{}");
        let list = format!("v1a,ignored v1,AAAA {sig}");
        let hint = Hint {
            id: "msg_2",
            timestamp: &ts,
            signature: &list,
            body: b"{}",
        };
        assert_eq!(gate(&dir).check(&hint, at(1_000_000)), Ok(()));
    }

    #[test]
    fn refusals() {
        let dir = tempfile::tempdir().unwrap();
        let now = at(1_000_000);
        let (ts, sig) = signed("msg_3", 1_000_000, b"{}");
        let good = Hint {
            id: "msg_3",
            timestamp: &ts,
            signature: &sig,
            body: b"{}",
        };

        let mut off = HintGate::open(None, dir.path().join("off.json")).unwrap();
        let r = off.check(&good, now).unwrap_err();
        assert_eq!((r.clone(), r.http_status()), (Refusal::NoKey, 403));

        let mut g = gate(&dir);
        let r = g.check(&Hint { id: "", ..good }, now).unwrap_err();
        assert!(
            matches!(r, Refusal::Malformed(_)) && r.http_status() == 400,
            "{r:?}"
        );
        let r = g
            .check(
                &Hint {
                    timestamp: "soon",
                    ..good
                },
                now,
            )
            .unwrap_err();
        assert!(matches!(r, Refusal::Malformed(_)), "{r:?}");
        let r = g
            .check(
                &Hint {
                    signature: "v2,abc",
                    ..good
                },
                now,
            )
            .unwrap_err();
        assert!(matches!(r, Refusal::Malformed(_)), "{r:?}");

        let r = g.check(&good, at(1_000_000 + 301)).unwrap_err();
        assert_eq!(
            (r.clone(), r.http_status()),
            (Refusal::Stale { skew_secs: -301 }, 401)
        );
        assert!(
            r.message().contains("301 seconds behind"),
            "{}",
            r.message()
        );
        let r = g.check(&good, at(1_000_000 - 400)).unwrap_err();
        assert_eq!(r, Refusal::Stale { skew_secs: 400 });

        let r = g
            .check(
                &Hint {
                    body: b"{\"x\":1}",
                    ..good
                },
                now,
            )
            .unwrap_err();
        assert_eq!((r.clone(), r.http_status()), (Refusal::BadSignature, 401));

        // A stale or forged hint never records its id: the good one still passes.
        assert_eq!(g.check(&good, now), Ok(()));
    }

    #[test]
    fn rate_limit_counts_before_verification() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = gate(&dir);
        let forged = Hint {
            id: "x",
            timestamp: "1000000",
            signature: "v1,AAAA",
            body: b"",
        };
        for i in 0..10 {
            assert_eq!(
                g.check(&forged, at(1_000_000 + i)),
                Err(Refusal::BadSignature)
            );
        }
        let (ts, sig) = signed("msg_4", 1_000_020, b"{}");
        let good = Hint {
            id: "msg_4",
            timestamp: &ts,
            signature: &sig,
            body: b"{}",
        };
        let r = g.check(&good, at(1_000_020)).unwrap_err();
        assert_eq!(
            r,
            Refusal::RateLimited {
                retry_after_secs: 40
            }
        );
        assert_eq!(r.http_status(), 429);
        // A minute after the first, one slot is free again.
        assert_eq!(g.check(&good, at(1_000_060)), Ok(()));
    }

    #[test]
    fn seen_ids_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = gate(&dir);
        let (ts, sig) = signed("old", 1_000_000, b"{}");
        let old = Hint {
            id: "old",
            timestamp: &ts,
            signature: &sig,
            body: b"{}",
        };
        assert_eq!(g.check(&old, at(1_000_000)), Ok(()));
        let (ts2, sig2) = signed("new", 1_000_700, b"{}");
        let new = Hint {
            id: "new",
            timestamp: &ts2,
            signature: &sig2,
            body: b"{}",
        };
        assert_eq!(g.check(&new, at(1_000_700)), Ok(()));
        let stored: SeenFile =
            serde_json::from_slice(&std::fs::read(dir.path().join("seen.json")).unwrap()).unwrap();
        assert_eq!(stored.ids.keys().collect::<Vec<_>>(), ["new"]);
    }
}
