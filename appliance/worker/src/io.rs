//! Reading and writing whole frames, blocking (the worker) or async (the service).

use std::io::{Read, Write};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::codec::{MAX_FRAME_BYTES, Message, ProtocolError, decode, encode};

fn frame_length(prefix: [u8; 4]) -> Result<usize, ProtocolError> {
    let length = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if length > MAX_FRAME_BYTES {
        return Err(ProtocolError::TooLarge(length));
    }
    Ok(length)
}

fn closed_at_start(e: std::io::Error) -> ProtocolError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ProtocolError::Closed
    } else {
        ProtocolError::Io(e)
    }
}

/// Reads one message; [`ProtocolError::Closed`] when the peer closed between messages.
pub fn read_message(reader: &mut impl Read) -> Result<Message, ProtocolError> {
    let mut prefix = [0u8; 4];
    reader.read_exact(&mut prefix).map_err(closed_at_start)?;
    let mut payload = vec![0u8; frame_length(prefix)?];
    reader.read_exact(&mut payload)?;
    decode(&payload)
}

pub fn write_message(writer: &mut impl Write, message: &Message) -> Result<(), ProtocolError> {
    writer.write_all(&encode(message)?)?;
    writer.flush()?;
    Ok(())
}

/// [`read_message`] on an async stream.
pub async fn read_message_async(
    reader: &mut (impl AsyncRead + Unpin),
) -> Result<Message, ProtocolError> {
    let mut prefix = [0u8; 4];
    reader
        .read_exact(&mut prefix)
        .await
        .map_err(closed_at_start)?;
    let mut payload = vec![0u8; frame_length(prefix)?];
    reader.read_exact(&mut payload).await?;
    decode(&payload)
}

pub async fn write_message_async(
    writer: &mut (impl AsyncWrite + Unpin),
    message: &Message,
) -> Result<(), ProtocolError> {
    writer.write_all(&encode(message)?).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_a_socket_pair_in_order() {
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let sent = [
            Message::Health { id: 1 },
            Message::Embed {
                id: 2,
                texts: vec!["a".into(); 100],
            },
        ];
        for m in &sent {
            write_message(&mut a, m).unwrap();
        }
        for m in &sent {
            assert_eq!(&read_message(&mut b).unwrap(), m);
        }
        drop(a);
        assert!(matches!(read_message(&mut b), Err(ProtocolError::Closed)));
    }

    #[test]
    fn an_oversized_length_prefix_is_refused_without_reading_on() {
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.write_all(&u32::MAX.to_be_bytes()).unwrap();
        assert!(matches!(
            read_message(&mut b),
            Err(ProtocolError::TooLarge(_))
        ));
    }

    #[test]
    fn a_frame_cut_short_is_an_io_error_not_a_clean_close() {
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.write_all(&10u32.to_be_bytes()).unwrap();
        a.write_all(&[1, 3]).unwrap();
        drop(a);
        assert!(matches!(read_message(&mut b), Err(ProtocolError::Io(_))));
    }

    #[tokio::test]
    async fn the_async_side_reads_what_the_blocking_side_writes() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let worker = std::thread::spawn(move || {
            let mut a = a;
            let request = read_message(&mut a).unwrap();
            let Message::Embed { id, texts } = request else {
                panic!("expected an embed request");
            };
            let vectors = texts.iter().map(|t| vec![t.len() as f32; 3]).collect();
            write_message(&mut a, &Message::Embedded { id, vectors }).unwrap();
        });
        b.set_nonblocking(true).unwrap();
        let mut b = tokio::net::UnixStream::from_std(b).unwrap();
        write_message_async(
            &mut b,
            &Message::Embed {
                id: 5,
                texts: vec!["abc".into(), "de".into()],
            },
        )
        .await
        .unwrap();
        let answer = read_message_async(&mut b).await.unwrap();
        assert_eq!(
            answer,
            Message::Embedded {
                id: 5,
                vectors: vec![vec![3.0; 3], vec![2.0; 3]]
            }
        );
        worker.join().unwrap();
    }
}
