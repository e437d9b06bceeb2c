//! Account passwords, hashed with Argon2id.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Argon2id memory cost in KiB: 64 MiB.
///
/// RFC 9106 section 4 ("Parameter Choice") gives two recommended settings; the second,
/// for memory-constrained environments, is Argon2id with t=3, p=4 and 64 MiB of memory.
/// A NAS or mini-PC with a few GiB fits that easily and one login costs ~0.1-0.3 s.
pub const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes (RFC 9106 §4, second recommended option).
pub const ARGON2_ITERATIONS: u32 = 3;
/// Argon2id lanes (RFC 9106 §4, second recommended option).
pub const ARGON2_PARALLELISM: u32 = 4;

/// The shortest passphrase accepted. NIST SP 800-63B §5.1.1.2 asks for at least 8
/// characters for memorised secrets chosen by the user.
pub const MIN_PASSPHRASE_CHARS: usize = 8;
/// The longest accepted: long enough for any passphrase, short enough that hashing an
/// attacker's megabyte cannot be used to burn CPU.
pub const MAX_PASSPHRASE_BYTES: usize = 1024;

/// A passphrase in memory: zeroed when dropped, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Passphrase(String);

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl Passphrase {
    /// Wraps a passphrase, checking only its length (anything else is the person's choice).
    pub fn new(text: String) -> Result<Passphrase, PasswordError> {
        let pass = Passphrase(text);
        if pass.0.chars().count() < MIN_PASSPHRASE_CHARS {
            return Err(PasswordError::TooShort);
        }
        if pass.0.len() > MAX_PASSPHRASE_BYTES {
            return Err(PasswordError::TooLong);
        }
        Ok(pass)
    }

    /// Wraps a passphrase typed at login without the length rules (a wrong one simply
    /// fails to verify), but still refusing absurd lengths.
    pub fn for_login(text: String) -> Result<Passphrase, PasswordError> {
        let pass = Passphrase(text);
        if pass.0.len() > MAX_PASSPHRASE_BYTES {
            return Err(PasswordError::TooLong);
        }
        Ok(pass)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("the passphrase must be at least {MIN_PASSPHRASE_CHARS} characters long")]
    TooShort,
    #[error("the passphrase must be at most {MAX_PASSPHRASE_BYTES} bytes long")]
    TooLong,
    #[error("the stored password hash is malformed")]
    MalformedHash,
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(
        ARGON2_MEMORY_KIB,
        ARGON2_ITERATIONS,
        ARGON2_PARALLELISM,
        None,
    )
    .expect("the Argon2 parameters above are within the algorithm's limits");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a passphrase into a PHC string (`$argon2id$v=19$m=65536,t=3,p=4$salt$hash`),
/// which records its own parameters so they can be raised later without breaking logins.
pub fn hash_password(pass: &Passphrase) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2()
        .hash_password(pass.0.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Checks a passphrase against a stored PHC string in constant time.
pub fn verify_password(pass: &Passphrase, stored: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(stored).map_err(|_| PasswordError::MalformedHash)?;
    Ok(argon2().verify_password(pass.0.as_bytes(), &parsed).is_ok())
}

/// A hash of a random passphrase, for verifying against when the account does not exist,
/// so a login for an unknown name takes as long as one with a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = crate::token::SecretToken::generate();
        hash_password(&Passphrase(random.expose().to_owned()))
            .expect("hashing a random passphrase cannot fail")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_record_their_parameters() {
        let pass = Passphrase::new("correct horse battery".into()).unwrap();
        let hash = hash_password(&pass).unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=65536,t=3,p=4$"),
            "{hash}"
        );
        assert!(verify_password(&pass, &hash).unwrap());
        let wrong = Passphrase::for_login("correct horse battery!".into()).unwrap();
        assert!(!verify_password(&wrong, &hash).unwrap());
    }

    #[test]
    fn length_rules() {
        assert_eq!(
            Passphrase::new("short".into()).unwrap_err(),
            PasswordError::TooShort
        );
        assert_eq!(
            Passphrase::for_login("x".repeat(MAX_PASSPHRASE_BYTES + 1)).unwrap_err(),
            PasswordError::TooLong
        );
    }

    #[test]
    fn passphrases_never_print() {
        let pass = Passphrase::new("hunter2hunter2".into()).unwrap();
        assert!(!format!("{pass:?}").contains("hunter2"));
    }

    #[test]
    fn malformed_hashes_are_an_error_not_a_panic() {
        let pass = Passphrase::for_login("whatever".into()).unwrap();
        assert_eq!(
            verify_password(&pass, "not a hash").unwrap_err(),
            PasswordError::MalformedHash
        );
    }
}
