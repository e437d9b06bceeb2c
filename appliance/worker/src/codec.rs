//! Encoding and decoding of single messages (see the crate documentation for the format).

use std::fmt;

/// The version every payload starts with.
pub const PROTOCOL_VERSION: u8 = 2;
/// The largest payload either side sends or accepts: a full embedding batch
/// ([`MAX_TEXTS`] vectors of 384 floats) is about 6 MiB.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// The most texts in one `embed` request.
pub const MAX_TEXTS: usize = 4096;
/// The longest text in an `embed` request (the model reads 256 tokens of it at most).
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// The widest vector in an `embedded` answer.
const MAX_DIMENSIONS: usize = 8192;
/// The longest provider name or error message.
const MAX_NOTE_BYTES: usize = 4096;

const KIND_HELLO: u8 = 1;
const KIND_EMBED: u8 = 2;
const KIND_HEALTH: u8 = 3;
const KIND_EMBEDDED: u8 = 4;
const KIND_HEALTHY: u8 = 5;
const KIND_FAILED: u8 = 6;

/// Why a worker could not answer a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// The request broke a limit of this protocol (too many texts, a text too long).
    BadRequest = 1,
    /// The model failed on it.
    Inference = 2,
    /// The frame could not be read; the worker closes the connection after saying so.
    Protocol = 3,
}

impl FailReason {
    fn from_byte(byte: u8) -> Option<FailReason> {
        match byte {
            1 => Some(FailReason::BadRequest),
            2 => Some(FailReason::Inference),
            3 => Some(FailReason::Protocol),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::BadRequest => "bad request",
            FailReason::Inference => "inference failed",
            FailReason::Protocol => "protocol error",
        }
    }
}

/// One message, either way.
#[derive(Clone, PartialEq)]
pub enum Message {
    /// The worker's first message: it loaded its model and is ready.
    Hello {
        /// The execution provider in use ("cpu", "cuda").
        provider: String,
        /// Why it is not the provider the worker prefers (the GPU it was built for);
        /// empty when it is.
        note: String,
        dimensions: u32,
        /// The worker's pid as it sees itself (1 in a new pid namespace).
        pid: u32,
    },
    Embed {
        id: u64,
        texts: Vec<String>,
    },
    Health {
        id: u64,
    },
    Embedded {
        id: u64,
        /// One vector per text, in the request's order, all of the same length.
        vectors: Vec<Vec<f32>>,
    },
    Healthy {
        id: u64,
        /// Requests this worker has answered.
        served: u64,
    },
    Failed {
        id: u64,
        reason: FailReason,
        /// What went wrong, never a text of the request.
        message: String,
    },
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Hello {
                provider,
                note,
                dimensions,
                pid,
            } => f
                .debug_struct("Hello")
                .field("provider", provider)
                .field("note", note)
                .field("dimensions", dimensions)
                .field("pid", pid)
                .finish(),
            Message::Embed { id, texts } => f
                .debug_struct("Embed")
                .field("id", id)
                .field("texts", &texts.len())
                .finish(),
            Message::Health { id } => f.debug_struct("Health").field("id", id).finish(),
            Message::Embedded { id, vectors } => f
                .debug_struct("Embedded")
                .field("id", id)
                .field("vectors", &vectors.len())
                .finish(),
            Message::Healthy { id, served } => f
                .debug_struct("Healthy")
                .field("id", id)
                .field("served", served)
                .finish(),
            Message::Failed {
                id,
                reason,
                message,
            } => f
                .debug_struct("Failed")
                .field("id", id)
                .field("reason", reason)
                .field("message", message)
                .finish(),
        }
    }
}

/// A frame that cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("reading or writing the worker socket failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the frame is too large ({0} bytes; the limit is {MAX_FRAME_BYTES})")]
    TooLarge(usize),
    #[error("protocol version {0} is not spoken here (this side speaks {PROTOCOL_VERSION})")]
    Version(u8),
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("malformed {kind} message: {reason}")]
    Malformed {
        kind: &'static str,
        reason: &'static str,
    },
    #[error("{what} exceeds the protocol's limit")]
    Limit { what: &'static str },
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        KIND_HELLO => "hello",
        KIND_EMBED => "embed",
        KIND_HEALTH => "health",
        KIND_EMBEDDED => "embedded",
        KIND_HEALTHY => "healthy",
        KIND_FAILED => "failed",
        _ => "unknown",
    }
}

/// The whole frame for `message`: length prefix, version, kind and body. Refuses what
/// the reading side would refuse (limits), so that an oversized request fails here, with
/// a clear error, rather than as a closed connection.
pub fn encode(message: &Message) -> Result<Vec<u8>, ProtocolError> {
    let mut out = vec![0, 0, 0, 0, PROTOCOL_VERSION];
    match message {
        Message::Hello {
            provider,
            note,
            dimensions,
            pid,
        } => {
            out.push(KIND_HELLO);
            put_str(&mut out, provider, MAX_NOTE_BYTES, "the provider name")?;
            put_str(&mut out, note, MAX_NOTE_BYTES, "the provider note")?;
            out.extend_from_slice(&dimensions.to_be_bytes());
            out.extend_from_slice(&pid.to_be_bytes());
        }
        Message::Embed { id, texts } => {
            out.push(KIND_EMBED);
            out.extend_from_slice(&id.to_be_bytes());
            if texts.len() > MAX_TEXTS {
                return Err(ProtocolError::Limit {
                    what: "the number of texts",
                });
            }
            put_len(&mut out, texts.len());
            for text in texts {
                put_str(&mut out, text, MAX_TEXT_BYTES, "a text")?;
            }
        }
        Message::Health { id } => {
            out.push(KIND_HEALTH);
            out.extend_from_slice(&id.to_be_bytes());
        }
        Message::Embedded { id, vectors } => {
            out.push(KIND_EMBEDDED);
            out.extend_from_slice(&id.to_be_bytes());
            let dimensions = vectors.first().map_or(0, Vec::len);
            if vectors.len() > MAX_TEXTS || dimensions > MAX_DIMENSIONS {
                return Err(ProtocolError::Limit {
                    what: "the number or width of vectors",
                });
            }
            if vectors.iter().any(|v| v.len() != dimensions) {
                return Err(ProtocolError::Malformed {
                    kind: "embedded",
                    reason: "vectors of different lengths",
                });
            }
            put_len(&mut out, vectors.len());
            put_len(&mut out, dimensions);
            out.reserve(vectors.len() * dimensions * 4);
            for value in vectors.iter().flatten() {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
        Message::Healthy { id, served } => {
            out.push(KIND_HEALTHY);
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&served.to_be_bytes());
        }
        Message::Failed {
            id,
            reason,
            message,
        } => {
            out.push(KIND_FAILED);
            out.extend_from_slice(&id.to_be_bytes());
            out.push(*reason as u8);
            put_str(&mut out, message, MAX_NOTE_BYTES, "the failure message")?;
        }
    }
    let payload = out.len() - 4;
    if payload > MAX_FRAME_BYTES {
        return Err(ProtocolError::TooLarge(payload));
    }
    let length = u32::try_from(payload).map_err(|_| ProtocolError::TooLarge(payload))?;
    out[..4].copy_from_slice(&length.to_be_bytes());
    Ok(out)
}

/// Lengths here are bounded by the limits above, far below `u32::MAX`.
fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_str(
    out: &mut Vec<u8>,
    s: &str,
    limit: usize,
    what: &'static str,
) -> Result<(), ProtocolError> {
    if s.len() > limit {
        return Err(ProtocolError::Limit { what });
    }
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Reads one payload (what follows the length prefix).
pub fn decode(payload: &[u8]) -> Result<Message, ProtocolError> {
    let (&version, rest) = payload.split_first().ok_or(ProtocolError::Malformed {
        kind: "unknown",
        reason: "empty frame",
    })?;
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::Version(version));
    }
    let (&kind, body) = rest.split_first().ok_or(ProtocolError::Malformed {
        kind: "unknown",
        reason: "no kind",
    })?;
    let mut r = Reader {
        rest: body,
        kind: kind_name(kind),
    };
    let message = match kind {
        KIND_HELLO => Message::Hello {
            provider: r.string(MAX_NOTE_BYTES)?,
            note: r.string(MAX_NOTE_BYTES)?,
            dimensions: r.u32()?,
            pid: r.u32()?,
        },
        KIND_EMBED => {
            let id = r.u64()?;
            let count = r.count(MAX_TEXTS, "too many texts")?;
            let mut texts = Vec::with_capacity(count);
            for _ in 0..count {
                texts.push(r.string(MAX_TEXT_BYTES)?);
            }
            Message::Embed { id, texts }
        }
        KIND_HEALTH => Message::Health { id: r.u64()? },
        KIND_EMBEDDED => {
            let id = r.u64()?;
            let count = r.count(MAX_TEXTS, "too many vectors")?;
            let dimensions = r.count(MAX_DIMENSIONS, "vectors too wide")?;
            // Checked before allocating: the floats must all be there.
            if r.rest.len() != count * dimensions * 4 {
                return Err(r.malformed("the vectors do not fill the frame exactly"));
            }
            let mut floats = r
                .rest
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap_or([0; 4])));
            let vectors = (0..count)
                .map(|_| floats.by_ref().take(dimensions).collect())
                .collect();
            r.rest = &[];
            Message::Embedded { id, vectors }
        }
        KIND_HEALTHY => Message::Healthy {
            id: r.u64()?,
            served: r.u64()?,
        },
        KIND_FAILED => {
            let id = r.u64()?;
            let reason = FailReason::from_byte(r.u8()?)
                .ok_or_else(|| r.malformed("unknown failure reason"))?;
            Message::Failed {
                id,
                reason,
                message: r.string(MAX_NOTE_BYTES)?,
            }
        }
        other => return Err(ProtocolError::UnknownKind(other)),
    };
    if !r.rest.is_empty() {
        return Err(r.malformed("bytes left over after the message"));
    }
    Ok(message)
}

struct Reader<'a> {
    rest: &'a [u8],
    kind: &'static str,
}

impl<'a> Reader<'a> {
    fn malformed(&self, reason: &'static str) -> ProtocolError {
        ProtocolError::Malformed {
            kind: self.kind,
            reason,
        }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let (field, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or_else(|| self.malformed("truncated"))?;
        self.rest = rest;
        Ok(*field)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    fn count(&mut self, limit: usize, reason: &'static str) -> Result<usize, ProtocolError> {
        let n = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        if n > limit {
            return Err(self.malformed(reason));
        }
        Ok(n)
    }

    fn string(&mut self, limit: usize) -> Result<String, ProtocolError> {
        let len = self.count(limit, "a string is too long")?;
        if self.rest.len() < len {
            return Err(self.malformed("truncated"));
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.malformed("a string is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Message> {
        vec![
            Message::Hello {
                provider: "cpu".into(),
                note: "CUDA: libcuda.so.1 is missing".into(),
                dimensions: 384,
                pid: 1,
            },
            Message::Embed {
                id: 7,
                texts: vec!["first note".into(), String::new(), "été ✓".into()],
            },
            Message::Embed {
                id: 8,
                texts: vec![],
            },
            Message::Health { id: u64::MAX },
            Message::Embedded {
                id: 7,
                vectors: vec![vec![0.5, -1.0, f32::MIN_POSITIVE], vec![0.0, 2.5, -0.25]],
            },
            Message::Embedded {
                id: 8,
                vectors: vec![],
            },
            Message::Healthy { id: 3, served: 42 },
            Message::Failed {
                id: 9,
                reason: FailReason::Inference,
                message: "the model failed".into(),
            },
        ]
    }

    #[test]
    fn every_kind_survives_a_round_trip() {
        for message in all_kinds() {
            let frame = encode(&message).unwrap();
            let length = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(length, frame.len() - 4);
            assert_eq!(frame[4], PROTOCOL_VERSION);
            assert_eq!(decode(&frame[4..]).unwrap(), message);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        for message in all_kinds() {
            let frame = encode(&message).unwrap();
            let payload = &frame[4..];
            for cut in 0..payload.len() {
                assert!(decode(&payload[..cut]).is_err(), "{message:?} cut at {cut}");
            }
            let mut longer = payload.to_vec();
            longer.push(0);
            assert!(matches!(
                decode(&longer),
                Err(ProtocolError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn other_versions_kinds_and_reasons_are_refused() {
        let frame = encode(&Message::Health { id: 1 }).unwrap();
        let mut payload = frame[4..].to_vec();
        for other in [1, PROTOCOL_VERSION + 1] {
            payload[0] = other;
            assert!(
                matches!(decode(&payload), Err(ProtocolError::Version(v)) if v == other),
                "version {other}"
            );
        }
        payload[0] = PROTOCOL_VERSION;
        payload[1] = 99;
        assert!(matches!(
            decode(&payload),
            Err(ProtocolError::UnknownKind(99))
        ));

        let failed = encode(&Message::Failed {
            id: 1,
            reason: FailReason::Protocol,
            message: "x".into(),
        })
        .unwrap();
        let mut payload = failed[4..].to_vec();
        payload[2 + 8] = 0;
        assert!(matches!(
            decode(&payload),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocating() {
        // An embed request that claims u32::MAX texts, then one that claims a 4 GiB text.
        let mut payload = vec![PROTOCOL_VERSION, KIND_EMBED];
        payload.extend_from_slice(&1u64.to_be_bytes());
        payload.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode(&payload),
            Err(ProtocolError::Malformed { .. })
        ));
        let mut payload = vec![PROTOCOL_VERSION, KIND_EMBED];
        payload.extend_from_slice(&1u64.to_be_bytes());
        payload.extend_from_slice(&1u32.to_be_bytes());
        payload.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode(&payload),
            Err(ProtocolError::Malformed { .. })
        ));
        // Vectors whose count × width overflows nothing but does not match the frame.
        let mut payload = vec![PROTOCOL_VERSION, KIND_EMBEDDED];
        payload.extend_from_slice(&1u64.to_be_bytes());
        payload.extend_from_slice(&(MAX_TEXTS as u32).to_be_bytes());
        payload.extend_from_slice(&(MAX_DIMENSIONS as u32).to_be_bytes());
        assert!(matches!(
            decode(&payload),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let frame = encode(&Message::Embed {
            id: 1,
            texts: vec!["ab".into()],
        })
        .unwrap();
        let mut payload = frame[4..].to_vec();
        let last = payload.len() - 1;
        payload[last] = 0xff;
        assert!(matches!(
            decode(&payload),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    #[test]
    fn limits_are_enforced_when_encoding() {
        let too_many = Message::Embed {
            id: 1,
            texts: vec![String::new(); MAX_TEXTS + 1],
        };
        assert!(matches!(
            encode(&too_many),
            Err(ProtocolError::Limit { .. })
        ));
        let too_long = Message::Embed {
            id: 1,
            texts: vec!["x".repeat(MAX_TEXT_BYTES + 1)],
        };
        assert!(matches!(
            encode(&too_long),
            Err(ProtocolError::Limit { .. })
        ));
        let ragged = Message::Embedded {
            id: 1,
            vectors: vec![vec![1.0], vec![1.0, 2.0]],
        };
        assert!(matches!(
            encode(&ragged),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        // SplitMix64: deterministic, so a failure reproduces.
        let mut state = 0x5EED_u64;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let frames: Vec<Vec<u8>> = all_kinds()
            .iter()
            .map(|m| encode(m).unwrap()[4..].to_vec())
            .collect();
        for round in 0..20_000 {
            let mut payload = frames[round % frames.len()].clone();
            for _ in 0..1 + next() % 4 {
                if payload.is_empty() {
                    break;
                }
                let at = (next() as usize) % payload.len();
                payload[at] = next() as u8;
            }
            let _ = decode(&payload);
        }
    }

    #[test]
    fn debug_shows_counts_not_content() {
        let embed = Message::Embed {
            id: 1,
            texts: vec!["my secret diary".into()],
        };
        let embedded = Message::Embedded {
            id: 1,
            vectors: vec![vec![0.123_456]],
        };
        assert_eq!(format!("{embed:?}"), "Embed { id: 1, texts: 1 }");
        assert_eq!(format!("{embedded:?}"), "Embedded { id: 1, vectors: 1 }");
    }
}
