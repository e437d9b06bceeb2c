//! The AI worker protocol: what the vault service and a `contextvault worker` say to each
//! other over their socket pair.
//!
//! The worker runs in a jail (`cv-sandbox`) with no network and no disk; this socket is
//! its only way out, so both ends treat what arrives as untrusted: every length is
//! checked against a limit before anything is allocated, every string must be UTF-8,
//! and a frame must be used up exactly. Nothing here panics on arbitrary bytes.
//!
//! # Frames (all integers big-endian, floats little-endian IEEE 754)
//!
//! ```text
//! frame        length u32 (of what follows, at most MAX_FRAME_BYTES) | payload
//! payload      version u8 (PROTOCOL_VERSION) | kind u8 | body
//! string       length u32 | UTF-8 bytes
//!
//! kind 1  hello      (worker → service, first)  provider string | note string
//!                                        | dimensions u32 | pid u32
//! kind 2  embed      (service → worker)  id u64 | count u32 | count × string
//! kind 3  health     (service → worker)  id u64
//! kind 4  embedded   (worker → service)  id u64 | count u32 | dimensions u32
//!                                        | count × dimensions × f32
//! kind 5  healthy    (worker → service)  id u64 | served u64
//! kind 6  failed     (worker → service)  id u64 | reason u8 | message string
//! ```
//!
//! The service numbers its requests; each answer carries the number of the request it
//! answers. A peer that meets another version, an unknown kind or a malformed frame
//! reports it (`failed` with [`FailReason::Protocol`] from the worker) and closes the
//! connection: the two sides are built together, so a mismatch is a bug or an attack,
//! never something to negotiate. Room for more: new kinds get new numbers.
//!
//! # Privacy
//!
//! Texts and their vectors (which can be inverted back to text) are content: the
//! `Debug` form of [`Message`] shows counts, never either, and no error carries them.
//!
//! # The two sides
//!
//! - The worker runs [`serve`] over its end of the socket with its [`Model`].
//! - The service runs a [`pool::Pool`]: a few slots (tokio tasks), each keeping one
//!   worker started through a [`pool::Spawner`] (the supervisor, in the appliance),
//!   sharing one queue of requests. It replaces workers that crash, hang or break the
//!   protocol (retrying their request once), recycles them by use, age and idleness,
//!   backs off when none can start, and answers every request within
//!   [`pool::PoolConfig::answer_deadline`]. See the module for the details.

mod codec;
mod io;
pub mod pool;
mod serve;

pub use crate::codec::{
    FailReason, MAX_FRAME_BYTES, MAX_TEXT_BYTES, MAX_TEXTS, Message, PROTOCOL_VERSION,
    ProtocolError, decode, encode,
};
pub use crate::io::{read_message, read_message_async, write_message, write_message_async};
pub use crate::serve::{Model, serve};
