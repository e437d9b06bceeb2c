//! Random bearer secrets (session cookies, CSRF tokens, setup codes) and digests.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// 256 random bits, base64url-encoded: a secret handed to a client (cookie, form).
/// The server keeps only its SHA-256 where the secret grants access, so a database dump
/// holds no live credential.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretToken(String);

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

impl SecretToken {
    pub fn generate() -> SecretToken {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = SecretToken(URL_SAFE_NO_PAD.encode(bytes));
        bytes.zeroize();
        token
    }

    /// Wraps a token received from a client.
    pub fn from_client(text: &str) -> SecretToken {
        SecretToken(text.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The digest kept server-side.
    pub fn digest(&self) -> [u8; 32] {
        sha256(self.0.as_bytes())
    }
}

/// API tokens start with this, so a leaked one is recognisable (secret scanners, logs)
/// and is never mistaken for a passphrase.
pub const API_TOKEN_PREFIX: &str = "cvt_";
/// Session tokens handed out by the JSON API's login start with this.
pub const API_SESSION_PREFIX: &str = "cvs_";

/// A new API token: the text shown once to its owner (`cvt_…`), and the digest stored.
pub fn mint_api_token() -> (zeroize::Zeroizing<String>, [u8; 32]) {
    let secret = SecretToken::generate();
    let text = zeroize::Zeroizing::new(format!("{API_TOKEN_PREFIX}{}", secret.expose()));
    let digest = sha256(text.as_bytes());
    (text, digest)
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Compares two secrets without leaking, through timing, how much of them matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Crockford's base32 alphabet (<https://www.crockford.com/base32.html>): digits and
/// letters without I, L, O and U, so nothing reads ambiguously.
pub(crate) const CROCKFORD_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A human-typable one-time code: groups of 4 characters from Crockford's base32
/// alphabet (no I, L, O, U, so nothing reads ambiguously), e.g. `7KQ2-M9XD-4HTA`.
/// Three groups carry 60 bits; with login throttling that is far beyond guessing.
pub fn human_code(groups: usize) -> String {
    let mut rng = rand::rng();
    (0..groups)
        .map(|_| {
            (0..4)
                .map(|_| CROCKFORD_ALPHABET[(rng.next_u32() % 32) as usize] as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Normalises a typed code: case-insensitive, dashes and spaces optional, and the
/// letters people confuse with digits read as those digits (Crockford's decoding rules).
pub fn normalize_human_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_never_print() {
        let a = SecretToken::generate();
        let b = SecretToken::generate();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 43);
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn human_codes_round_trip_through_sloppy_typing() {
        let code = human_code(3);
        assert_eq!(code.len(), 14);
        let sloppy = code.to_lowercase().replace('-', " ");
        assert_eq!(normalize_human_code(&sloppy), normalize_human_code(&code));
        assert_eq!(normalize_human_code("o1l-i"), "0111");
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
