//! DNS-01 through RFC 2136 dynamic updates signed with TSIG (RFC 8945).
//!
//! For boxes with no port open to the internet: the supervisor adds the
//! `_acme-challenge.<name>` TXT record on the home's (or the DNS provider's)
//! authoritative server, waits until that server answers it, lets the CA look, and
//! removes the record again. Updates and queries go over TCP (RFC 7766), so a signed
//! update is never truncated; every answer to an update must carry a valid TSIG of
//! the same key.

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use hickory_proto::op::{Message, Query, ResponseCode, update_message};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm as HickoryAlgorithm;
use hickory_proto::rr::{Name, RData, Record, RecordSet, RecordType, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use super::{AcmeError, AcmeName};

/// How long one DNS exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// TSIG's allowed clock difference between us and the server, in seconds: 300, what
/// RFC 8945 §10 recommends.
const TSIG_FUDGE: u16 = 300;

/// TTL of the challenge record: short, so a resolver does not keep an old token when a
/// retry publishes a new one (Let's Encrypt queries the authoritative servers, but
/// other CAs may go through a cache).
const CHALLENGE_TTL: u32 = 60;

/// The label under which DNS-01 looks for the TXT record (RFC 8555 §8.4).
pub const CHALLENGE_LABEL: &str = "_acme-challenge";

/// A TSIG algorithm the appliance signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    /// `hmac-sha256`, what `tsig-keygen` makes by default.
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgorithm {
    /// The name as BIND and `tsig-keygen` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }

    fn hickory(self) -> HickoryAlgorithm {
        match self {
            TsigAlgorithm::HmacSha256 => HickoryAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384 => HickoryAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512 => HickoryAlgorithm::HmacSha512,
        }
    }
}

impl FromStr for TsigAlgorithm {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
            "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
            "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
            _ => Err(format!(
                "{text:?} is not a supported TSIG algorithm; use \"hmac-sha256\", \
                 \"hmac-sha384\" or \"hmac-sha512\""
            )),
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A TSIG shared secret. Zeroed when dropped; `Debug` shows nothing of it.
#[derive(Clone)]
pub struct TsigSecret(Zeroizing<Vec<u8>>);

impl fmt::Debug for TsigSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TsigSecret(..)")
    }
}

impl TsigSecret {
    /// Decodes the base64 text `tsig-keygen` prints as `secret "…";`. Surrounding
    /// white space is ignored. The error never quotes the text.
    pub fn from_base64(text: &str) -> Result<TsigSecret, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| "is not base64 text (as tsig-keygen prints it)".to_owned())?;
        // RFC 8945 §6: keys shorter than half the hash output weaken the MAC.
        if bytes.len() < 16 {
            return Err(format!(
                "holds a {}-byte secret; use at least 16 bytes (tsig-keygen makes 32)",
                bytes.len()
            ));
        }
        Ok(TsigSecret(Zeroizing::new(bytes)))
    }

    /// Reads the secret from `path`, which must be a regular file that only its owner
    /// may read (mode 0600 or stricter).
    pub fn read_file(path: &Path) -> Result<TsigSecret, AcmeError> {
        let bad = |reason: String| AcmeError::TsigSecret {
            path: path.to_owned(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        if !meta.is_file() {
            return Err(bad("is not a regular file".into()));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(bad(format!(
                "is mode {:o}; a secret must be readable by its owner only (chmod 600)",
                meta.mode() & 0o7777
            )));
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
        TsigSecret::from_base64(&text).map_err(bad)
    }
}

/// A TSIG key: its name (as the server knows it), algorithm and secret.
#[derive(Debug, Clone)]
pub struct TsigKey {
    name: Name,
    algorithm: TsigAlgorithm,
    secret: TsigSecret,
}

/// A TSIG key name, lower case and without a trailing dot: dot-separated labels of
/// letters, digits, `-` and `_` (key names are names, not host names, and `tsig-keygen`
/// accepts underscores); `None` when `text` is not one.
pub fn tsig_key_name(text: &str) -> Option<String> {
    let trimmed = text.strip_suffix('.').unwrap_or(text);
    let ok = !trimmed.is_empty()
        && trimmed.len() <= 253
        && trimmed.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then(|| trimmed.to_ascii_lowercase())
}

impl TsigKey {
    /// Checks the key name: a DNS name of letters, digits, `-` and `_` labels (key names
    /// are names, not host names, and `tsig-keygen` accepts underscores).
    pub fn new(
        name: &str,
        algorithm: TsigAlgorithm,
        secret: TsigSecret,
    ) -> Result<TsigKey, String> {
        let Some(lower) = tsig_key_name(name) else {
            return Err(format!(
                "{name:?} is not a TSIG key name; use labels of letters, digits, `-` and `_` \
                 separated by dots, as in the server's `key \"…\"` statement"
            ));
        };
        let name = Name::from_ascii(format!("{lower}."))
            .map_err(|e| format!("{name:?} is not a TSIG key name: {e}"))?;
        Ok(TsigKey {
            name,
            algorithm,
            secret,
        })
    }

    fn signer(&self) -> Result<TSigner, AcmeError> {
        TSigner::new(
            self.secret.0.to_vec(),
            self.algorithm.hickory(),
            self.name.clone(),
            TSIG_FUDGE,
        )
        .map_err(|e| AcmeError::Dns(format!("cannot set up TSIG signing: {e}")))
    }
}

/// An authoritative DNS server that accepts RFC 2136 updates for `zone`.
#[derive(Debug, Clone)]
pub struct Rfc2136 {
    server: SocketAddr,
    zone: AcmeName,
    key: TsigKey,
    /// How long to wait for the server to answer the new record.
    pub propagation_timeout: Duration,
}

impl Rfc2136 {
    /// The server at `server`, updating `zone` with `key`.
    pub fn new(server: SocketAddr, zone: AcmeName, key: TsigKey) -> Rfc2136 {
        Rfc2136 {
            server,
            zone,
            key,
            propagation_timeout: Duration::from_secs(60),
        }
    }

    /// The zone updated.
    pub fn zone(&self) -> &AcmeName {
        &self.zone
    }

    /// The name of the TXT record for `name`: `_acme-challenge.<name>.`; an error when
    /// `name` is outside the zone (the server would refuse with NOTZONE).
    fn record_name(&self, name: &AcmeName) -> Result<(Name, Name), AcmeError> {
        if !name.is_in_zone(&self.zone) {
            return Err(AcmeError::Dns(format!(
                "{name} is not in the zone {}; DNS-01 can only answer for names in the \
                 zone the key may update",
                self.zone
            )));
        }
        let parse = |text: String| {
            Name::from_ascii(&text).map_err(|e| AcmeError::Dns(format!("bad DNS name {text}: {e}")))
        };
        Ok((
            parse(format!("{CHALLENGE_LABEL}.{name}."))?,
            parse(format!("{}.", self.zone))?,
        ))
    }

    fn txt_rrset(record: &Name, value: &str) -> RecordSet {
        RecordSet::from(Record::from_rdata(
            record.clone(),
            CHALLENGE_TTL,
            RData::TXT(TXT::new(vec![value.to_owned()])),
        ))
    }

    /// Adds the TXT record `value` for `name` (other values stay: with several names or
    /// a retry, more than one may be pending).
    pub async fn add_txt(&self, name: &AcmeName, value: &str) -> Result<(), AcmeError> {
        let (record, zone) = self.record_name(name)?;
        let message = update_message::append(Self::txt_rrset(&record, value), zone, false, true);
        self.update(message, "add").await
    }

    /// Removes the TXT record `value` for `name` (absent already: nothing happens).
    pub async fn delete_txt(&self, name: &AcmeName, value: &str) -> Result<(), AcmeError> {
        let (record, zone) = self.record_name(name)?;
        let message = update_message::delete_by_rdata(Self::txt_rrset(&record, value), zone, true);
        self.update(message, "delete").await
    }

    /// Waits until the server answers `value` among the TXT records for `name`.
    pub async fn wait_for_txt(&self, name: &AcmeName, value: &str) -> Result<(), AcmeError> {
        let (record, _) = self.record_name(name)?;
        let deadline = tokio::time::Instant::now() + self.propagation_timeout;
        loop {
            let last = match self.txt_values(&record).await {
                Ok(values) if values.iter().any(|v| v == value) => return Ok(()),
                Ok(values) => format!("{} other value(s)", values.len()),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(AcmeError::Dns(format!(
                    "{} did not answer the new TXT record for {record} within {:?} ({last})",
                    self.server, self.propagation_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn txt_values(&self, record: &Name) -> Result<Vec<String>, AcmeError> {
        let mut message = Message::query();
        message.add_query(Query::query(record.clone(), RecordType::TXT));
        message.metadata.recursion_desired = false;
        let bytes = message
            .to_vec()
            .map_err(|e| AcmeError::Dns(format!("cannot encode a query: {e}")))?;
        let answer = self.exchange(&bytes).await?;
        let answer = Message::from_vec(&answer)
            .map_err(|e| AcmeError::Dns(format!("{} sent a malformed answer: {e}", self.server)))?;
        if answer.metadata.id != message.metadata.id {
            return Err(AcmeError::Dns(format!(
                "{} answered another query",
                self.server
            )));
        }
        Ok(answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    async fn update(&self, mut message: Message, what: &str) -> Result<(), AcmeError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let now =
            u64::try_from(now).map_err(|_| AcmeError::Dns("the clock is before 1970".into()))?;
        let mut verifier = message
            .finalize(&self.key.signer()?, now)
            .map_err(|e| AcmeError::Dns(format!("cannot sign the update: {e}")))?
            .ok_or_else(|| AcmeError::Dns("the update was not signed".into()))?;
        let bytes = message
            .to_vec()
            .map_err(|e| AcmeError::Dns(format!("cannot encode the update: {e}")))?;
        let answer = self.exchange(&bytes).await?;
        // An unsigned or wrongly signed answer is refused: it may come from anyone on
        // the path, or say that the server does not know the key (BADKEY/BADSIG answers
        // are unsigned).
        let response = match verifier.verify(&answer) {
            Ok(response) => response,
            Err(e) => {
                let code = Message::from_vec(&answer)
                    .map(|m| m.metadata.response_code.to_string())
                    .unwrap_or_else(|_| "malformed".into());
                return Err(AcmeError::Dns(format!(
                    "{} refused to {what} the TXT record: its answer ({code}) has no valid \
                     signature of key {} ({e}); check the key name, algorithm and secret",
                    self.server, self.key.name
                )));
            }
        };
        let code = response.metadata.response_code;
        if code != ResponseCode::NoError {
            return Err(AcmeError::Dns(format!(
                "{} refused to {what} the TXT record: {code} (is zone {} served there, and may \
                 key {} update it?)",
                self.server, self.zone, self.key.name
            )));
        }
        Ok(())
    }

    /// One TCP exchange: a two-byte length, the message, and the same back (RFC 1035
    /// §4.2.2).
    async fn exchange(&self, message: &[u8]) -> Result<Vec<u8>, AcmeError> {
        let io = |e: std::io::Error| AcmeError::Dns(format!("DNS server {}: {e}", self.server));
        let exchange = async {
            let mut stream = TcpStream::connect(self.server).await.map_err(io)?;
            let len = u16::try_from(message.len())
                .map_err(|_| AcmeError::Dns("DNS message too large".into()))?;
            let mut framed = len.to_be_bytes().to_vec();
            framed.extend_from_slice(message);
            stream.write_all(&framed).await.map_err(io)?;
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.map_err(io)?;
            let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut answer).await.map_err(io)?;
            Ok(answer)
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(AcmeError::Dns(format!(
                    "DNS server {} did not answer within {EXCHANGE_TIMEOUT:?}",
                    self.server
                )))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_decode_and_never_print() {
        let secret = TsigSecret::from_base64(" c2VjcmV0LXNlY3JldC1zZWNyZXQ= \n").unwrap();
        assert_eq!(format!("{secret:?}"), "TsigSecret(..)");
        let err = TsigSecret::from_base64("not base64!").unwrap_err();
        assert!(!err.contains("not base64!"), "{err}");
        assert!(
            TsigSecret::from_base64("c2hvcnQ=")
                .unwrap_err()
                .contains("at least 16")
        );
    }

    #[test]
    fn secret_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tsig.secret");
        std::fs::write(&path, "c2VjcmV0LXNlY3JldC1zZWNyZXQ=\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = TsigSecret::read_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        TsigSecret::read_file(&path).unwrap();
        assert!(TsigSecret::read_file(dir.path()).is_err());
    }

    #[test]
    fn algorithms_and_key_names() {
        assert_eq!("HMAC-SHA256".parse(), Ok(TsigAlgorithm::HmacSha256));
        assert!("hmac-md5".parse::<TsigAlgorithm>().is_err());
        let secret = TsigSecret::from_base64("c2VjcmV0LXNlY3JldC1zZWNyZXQ=").unwrap();
        for good in ["acme-key", "acme_key.example.org.", "k1"] {
            TsigKey::new(good, TsigAlgorithm::HmacSha256, secret.clone()).unwrap();
        }
        for bad in ["", ".", "a..b", "key name", "kéy", "a/b"] {
            assert!(
                TsigKey::new(bad, TsigAlgorithm::HmacSha256, secret.clone()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_outside_the_zone_are_refused_before_sending() {
        let secret = TsigSecret::from_base64("c2VjcmV0LXNlY3JldC1zZWNyZXQ=").unwrap();
        let key = TsigKey::new("k", TsigAlgorithm::HmacSha256, secret).unwrap();
        let dns = Rfc2136::new(
            "127.0.0.1:9".parse().unwrap(),
            AcmeName::parse("example.org").unwrap(),
            key,
        );
        let err = dns
            .record_name(&AcmeName::parse("vault.example.com").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("not in the zone"), "{err}");
        let (record, zone) = dns
            .record_name(&AcmeName::parse("vault.example.org").unwrap())
            .unwrap();
        assert_eq!(record.to_string(), "_acme-challenge.vault.example.org.");
        assert_eq!(zone.to_string(), "example.org.");
    }
}
