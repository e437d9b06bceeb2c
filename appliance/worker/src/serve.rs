//! The worker's side: answer requests until the service hangs up.

use std::io::{Read, Write};

use crate::codec::{FailReason, Message, ProtocolError};
use crate::io::{read_message, write_message};

/// What a worker runs requests on (the embedding engine, in `contextvault worker`).
pub trait Model {
    /// The execution provider in use ("cpu", "cuda").
    fn provider(&self) -> &str;
    /// Why the provider is not the one the worker prefers; empty when it is.
    fn provider_note(&self) -> &str {
        ""
    }
    fn dimensions(&self) -> usize;
    /// One vector per text, in order. The error must not contain the texts.
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String>;
}

/// Says hello, then answers requests one at a time until the service closes the
/// connection (`Ok`, with the number answered) or sends something unreadable (the
/// worker says why, then returns the error: its process should exit).
pub fn serve(
    stream: &mut (impl Read + Write),
    model: &mut impl Model,
    pid: u32,
) -> Result<u64, ProtocolError> {
    write_message(
        stream,
        &Message::Hello {
            provider: model.provider().to_owned(),
            note: model.provider_note().to_owned(),
            dimensions: u32::try_from(model.dimensions()).unwrap_or(u32::MAX),
            pid,
        },
    )?;
    let mut served = 0u64;
    loop {
        let request = match read_message(stream) {
            Ok(request) => request,
            Err(ProtocolError::Closed) => return Ok(served),
            Err(e) => {
                let _ = write_message(stream, &failed(0, FailReason::Protocol, &e));
                return Err(e);
            }
        };
        let answer = match request {
            Message::Embed { id, texts } => {
                let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                match model.embed(&texts) {
                    Ok(vectors) if vectors.len() == texts.len() => {
                        Message::Embedded { id, vectors }
                    }
                    Ok(_) => Message::Failed {
                        id,
                        reason: FailReason::Inference,
                        message: "the model returned the wrong number of vectors".into(),
                    },
                    Err(message) => Message::Failed {
                        id,
                        reason: FailReason::Inference,
                        message,
                    },
                }
            }
            Message::Health { id } => Message::Healthy { id, served },
            other => {
                let e = ProtocolError::Malformed {
                    kind: "request",
                    reason: "a worker only answers embed and health requests",
                };
                let _ = write_message(stream, &failed(id_of(&other), FailReason::Protocol, &e));
                return Err(e);
            }
        };
        served += 1;
        // An answer that cannot be encoded (too large, ragged vectors) is reported instead;
        // nothing of it was written.
        match write_message(stream, &answer) {
            Ok(()) => {}
            Err(e @ (ProtocolError::Io(_) | ProtocolError::Closed)) => return Err(e),
            Err(e) => write_message(stream, &failed(id_of(&answer), FailReason::Inference, &e))?,
        }
    }
}

fn id_of(message: &Message) -> u64 {
    match message {
        Message::Embed { id, .. }
        | Message::Health { id }
        | Message::Embedded { id, .. }
        | Message::Healthy { id, .. }
        | Message::Failed { id, .. } => *id,
        Message::Hello { .. } => 0,
    }
}

fn failed(id: u64, reason: FailReason, e: &ProtocolError) -> Message {
    Message::Failed {
        id,
        reason,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;

    /// A stand-in for the model: the vector of a text is its length and word count.
    struct Counting;

    impl Model for Counting {
        fn provider(&self) -> &str {
            "test"
        }
        fn dimensions(&self) -> usize {
            2
        }
        fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
            if texts.contains(&"fail") {
                return Err("the model failed".into());
            }
            if texts.contains(&"ragged") {
                return Ok(texts
                    .iter()
                    .enumerate()
                    .map(|(n, _)| vec![0.0; n + 1])
                    .collect());
            }
            Ok(texts
                .iter()
                .map(|t| vec![t.len() as f32, t.split_whitespace().count() as f32])
                .collect())
        }
    }

    fn start() -> (
        UnixStream,
        std::thread::JoinHandle<Result<u64, ProtocolError>>,
    ) {
        let (service, mut worker) = UnixStream::pair().unwrap();
        let handle = std::thread::spawn(move || serve(&mut worker, &mut Counting, 1));
        (service, handle)
    }

    #[test]
    fn it_says_hello_then_answers_each_request_by_id() {
        let (mut s, worker) = start();
        assert_eq!(
            read_message(&mut s).unwrap(),
            Message::Hello {
                provider: "test".into(),
                note: String::new(),
                dimensions: 2,
                pid: 1
            }
        );
        write_message(
            &mut s,
            &Message::Embed {
                id: 10,
                texts: vec!["two words".into(), "one".into()],
            },
        )
        .unwrap();
        assert_eq!(
            read_message(&mut s).unwrap(),
            Message::Embedded {
                id: 10,
                vectors: vec![vec![9.0, 2.0], vec![3.0, 1.0]]
            }
        );
        write_message(
            &mut s,
            &Message::Embed {
                id: 11,
                texts: vec!["fail".into()],
            },
        )
        .unwrap();
        assert!(matches!(
            read_message(&mut s).unwrap(),
            Message::Failed {
                id: 11,
                reason: FailReason::Inference,
                ..
            }
        ));
        // Vectors of different lengths cannot be sent: reported as a failure instead.
        write_message(
            &mut s,
            &Message::Embed {
                id: 12,
                texts: vec!["ragged".into(), "x".into()],
            },
        )
        .unwrap();
        assert!(matches!(
            read_message(&mut s).unwrap(),
            Message::Failed {
                id: 12,
                reason: FailReason::Inference,
                ..
            }
        ));
        write_message(&mut s, &Message::Health { id: 13 }).unwrap();
        assert_eq!(
            read_message(&mut s).unwrap(),
            Message::Healthy { id: 13, served: 3 }
        );
        drop(s);
        assert_eq!(worker.join().unwrap().unwrap(), 4);
    }

    #[test]
    fn garbage_is_answered_with_a_protocol_failure_and_the_worker_stops() {
        let (mut s, worker) = start();
        read_message(&mut s).unwrap();
        s.write_all(&3u32.to_be_bytes()).unwrap();
        s.write_all(&[9, 9, 9]).unwrap();
        assert!(matches!(
            read_message(&mut s).unwrap(),
            Message::Failed {
                reason: FailReason::Protocol,
                ..
            }
        ));
        assert!(matches!(
            worker.join().unwrap(),
            Err(ProtocolError::Version(9))
        ));
    }

    #[test]
    fn a_worker_refuses_to_be_sent_answers() {
        let (mut s, worker) = start();
        read_message(&mut s).unwrap();
        write_message(&mut s, &Message::Healthy { id: 4, served: 0 }).unwrap();
        assert!(matches!(
            read_message(&mut s).unwrap(),
            Message::Failed {
                id: 4,
                reason: FailReason::Protocol,
                ..
            }
        ));
        assert!(worker.join().unwrap().is_err());
    }
}
