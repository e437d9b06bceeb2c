//! Cryptographic building blocks shared by the supervisor, the vault service and the CLI.
//!
//! Only vetted RustCrypto implementations are used; this crate picks parameters and
//! gives them types, it implements no primitive itself.

pub mod password;
pub mod token;
pub mod vault;

pub use password::{Passphrase, PasswordError, hash_password, verify_password};
pub use token::{
    API_SESSION_PREFIX, API_TOKEN_PREFIX, SecretToken, constant_time_eq, mint_api_token, sha256,
};
pub use vault::{
    CapturePublicKey, CaptureSealer, DataKey, DataKeyBinding, ItemBinding, KeyBundle, RecoveryKey,
    SealedKeyCache, UnlockedVault, VaultCryptoError, create_vault, decrypt_content,
    encrypt_content, seal_data_key,
};
