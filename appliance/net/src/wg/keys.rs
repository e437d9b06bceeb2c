//! WireGuard keys: Curve25519 key pairs, written as 44 characters of base64 like `wg
//! genkey` does.
//!
//! A [`PrivateKey`] never prints (its `Debug` is `PrivateKey(..)`) and is wiped from
//! memory when dropped; so is a [`PresharedKey`], the symmetric key a peer and the
//! interface share on top of the key pairs (WireGuard's optional `PresharedKey`, mixed
//! into every handshake so that recorded traffic stays safe even if Curve25519 is broken
//! one day). Keys handed to `wireguard-control` are copies in its own `Key` type, which
//! does not wipe itself; they live only for the call.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::names::InvalidValue;

/// Key length in bytes (Curve25519).
pub const KEY_LEN: usize = 32;

/// What [`PrivateKey`] and [`PresharedKey`] share: reading and writing base64 without
/// ever echoing the text, a copy for `wireguard-control`, a constant-time comparison (not
/// needed here — keys are compared with keys this process holds, never with an
/// attacker's guesses — but it costs nothing), and a `Debug` that prints only the type.
macro_rules! secret_key {
    ($name:ident, $what:literal) => {
        impl $name {
            /// Reads the base64 form (surrounding whitespace ignored). The error never
            /// contains the text.
            pub fn from_base64(text: &str) -> Result<$name, InvalidValue> {
                let bytes = decode(text.trim())
                    .map_err(|reason| InvalidValue::new($what, "(not shown)", reason))?;
                let mut key = $name([0u8; KEY_LEN]);
                key.0.copy_from_slice(&bytes);
                Ok(key)
            }

            /// The base64 form, in memory that is wiped when dropped.
            pub fn to_base64(&self) -> Zeroizing<String> {
                Zeroizing::new(STANDARD.encode(self.0))
            }

            /// A copy for `wireguard-control` (see the module docs).
            pub(crate) fn to_control(&self) -> wireguard_control::Key {
                wireguard_control::Key(self.0)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0
                    .iter()
                    .zip(other.0.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }
        }

        impl Eq for $name {}

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }
    };
}

/// A WireGuard private key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PrivateKey([u8; KEY_LEN]);

secret_key!(PrivateKey, "private key");

impl PrivateKey {
    /// A new random key from the operating system's CSPRNG (through `rand::rng()`),
    /// clamped as Curve25519 private keys are (RFC 7748 section 5), which is what `wg
    /// genkey` writes.
    pub fn generate() -> PrivateKey {
        let mut key = PrivateKey([0u8; KEY_LEN]);
        rand::rng().fill_bytes(&mut key.0);
        key.0[0] &= 248;
        key.0[31] &= 127;
        key.0[31] |= 64;
        key
    }

    pub fn public_key(&self) -> PublicKey {
        let secret = x25519_dalek::StaticSecret::from(self.0);
        PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }
}

/// A WireGuard preshared key: 32 random bytes that one peer and the interface both hold.
/// Unlike a private key it is not clamped (it is no Curve25519 scalar), like the output
/// of `wg genpsk`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PresharedKey([u8; KEY_LEN]);

secret_key!(PresharedKey, "preshared key");

impl PresharedKey {
    /// A new random key from the operating system's CSPRNG (through `rand::rng()`).
    pub fn generate() -> PresharedKey {
        let mut key = PresharedKey([0u8; KEY_LEN]);
        rand::rng().fill_bytes(&mut key.0);
        key
    }
}

/// Written as its base64 form (the registry keeps it so).
impl Serialize for PresharedKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.to_base64().as_str())
    }
}

impl<'de> Deserialize<'de> for PresharedKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(deserializer)?);
        PresharedKey::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

/// A WireGuard public key; shown in base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    pub fn from_base64(text: &str) -> Result<PublicKey, InvalidValue> {
        let bytes =
            decode(text.trim()).map_err(|reason| InvalidValue::new("public key", text, reason))?;
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&bytes);
        Ok(PublicKey(key))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub(crate) fn to_control(self) -> wireguard_control::Key {
        wireguard_control::Key(self.0)
    }

    pub(crate) fn from_control(key: &wireguard_control::Key) -> PublicKey {
        PublicKey(key.0)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl FromStr for PublicKey {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::from_base64(s)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PublicKey::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

/// Exactly 32 bytes of standard base64 (44 characters with one `=`).
fn decode(text: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(text)
            .map_err(|_| "is not base64 (a WireGuard key is 44 characters ending in `=`)")?,
    );
    if bytes.len() != KEY_LEN {
        return Err(format!(
            "decodes to {} bytes; a WireGuard key has {KEY_LEN}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_match_wg_pubkey() {
        // `echo SGb+ojrRNDuMePufwtIYhXzA//k6wF3R21tEBgKlzlM= | wg pubkey`
        let private =
            PrivateKey::from_base64("SGb+ojrRNDuMePufwtIYhXzA//k6wF3R21tEBgKlzlM=\n").unwrap();
        assert_eq!(
            private.public_key().to_base64(),
            "DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8="
        );
    }

    #[test]
    fn generated_keys_are_clamped_and_round_trip() {
        let key = PrivateKey::generate();
        assert_eq!(key.0[0] & 7, 0);
        assert_eq!(key.0[31] & 0xc0, 0x40);
        let again = PrivateKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(again, key);
        assert_ne!(PrivateKey::generate(), key);
        let public = key.public_key();
        assert_eq!(PublicKey::from_base64(&public.to_base64()).unwrap(), public);
    }

    #[test]
    fn private_keys_never_print() {
        let key = PrivateKey::generate();
        let shown = format!("{key:?}");
        assert_eq!(shown, "PrivateKey(..)");
        assert!(!shown.contains(key.to_base64().as_str()));
    }

    #[test]
    fn preshared_keys_are_random_and_round_trip() {
        let key = PresharedKey::generate();
        let text = key.to_base64();
        assert_eq!(text.len(), 44, "{}", text.as_str());
        let again = PresharedKey::from_base64(&format!(" {}\n", text.as_str())).unwrap();
        assert_eq!(again, key);
        assert_ne!(PresharedKey::generate(), key);
        // Serde uses the same base64 form.
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{}\"", text.as_str()));
        assert_eq!(serde_json::from_str::<PresharedKey>(&json).unwrap(), key);
        // What wireguard-control is given is the same 32 bytes.
        assert_eq!(key.to_control().to_base64(), text.as_str());
    }

    #[test]
    fn preshared_keys_never_print() {
        let key = PresharedKey::generate();
        let shown = format!("{key:?}");
        assert_eq!(shown, "PresharedKey(..)");
        assert!(!shown.contains(key.to_base64().as_str()));
        let shown = format!("{:?}", Some(key.clone()));
        assert_eq!(shown, "Some(PresharedKey(..))");
    }

    #[test]
    fn bad_preshared_keys_are_refused_without_echoing_them() {
        let e = PresharedKey::from_base64("c2VjcmV0").unwrap_err();
        assert_eq!(e.what, "preshared key");
        assert!(e.reason.contains("decodes to 6 bytes"), "{e}");
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        let e = PresharedKey::from_base64("not base64!").unwrap_err();
        assert!(e.reason.contains("not base64"), "{e}");
        assert!(!e.to_string().contains("not base64!"), "{e}");
        let e = PresharedKey::from_base64("").unwrap_err();
        assert!(e.reason.contains("decodes to 0 bytes"), "{e}");
        // Through serde too: the message says what is wrong and shows no key.
        let long = STANDARD.encode([7u8; 33]);
        let e = serde_json::from_str::<PresharedKey>(&format!("\"{long}\"")).unwrap_err();
        assert!(e.to_string().contains("decodes to 33 bytes"), "{e}");
        assert!(!e.to_string().contains(&long), "{e}");
        let e = serde_json::from_str::<PresharedKey>("42").unwrap_err();
        assert!(e.to_string().contains("expected a string"), "{e}");
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_a_private_one() {
        let e = PrivateKey::from_base64("c2VjcmV0").unwrap_err();
        assert!(e.reason.contains("6 bytes"), "{e}");
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        let e = PublicKey::from_base64("not base64!").unwrap_err();
        assert!(e.reason.contains("not base64"), "{e}");
    }
}
