//! Cryptographic building blocks shared by the supervisor, the vault service and the CLI.
//!
//! Only vetted RustCrypto implementations are used; this crate picks parameters and
//! gives them types, it implements no primitive itself.

pub mod password;
pub mod token;

pub use password::{Passphrase, PasswordError, hash_password, verify_password};
pub use token::{SecretToken, constant_time_eq, sha256};
