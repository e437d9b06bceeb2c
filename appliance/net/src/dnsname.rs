//! The limits and the letters-digits-hyphen rule (RFC 1123 §2.1, RFC 5890 §2.3.1) that
//! every DNS name the appliance checks follows: its hostname, the LAN certificate's names
//! and the names it orders public certificates for.

/// The longest DNS label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// The longest DNS name in presentation form: 255 octets on the wire (RFC 1035 §2.3.4)
/// leave 253 characters written out without the trailing dot.
pub const MAX_NAME_LEN: usize = 253;

/// Checks one label: 1 to [`MAX_LABEL_LEN`] ASCII letters, digits and `-`, not starting
/// or ending with `-`. The error is the reason, worded to follow the label in a message
/// (`label "a_b" contains '_'; only letters, digits and `-` are allowed`).
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("is empty".to_owned());
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "is {} characters long; a DNS label has at most {MAX_LABEL_LEN}",
            label.len()
        ));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(format!(
            "contains {c:?}; only letters, digits and `-` are allowed"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("starts or ends with `-`".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_and_inner_hyphens_pass() {
        for good in ["a", "Vault", "nas-1", "xn--bcher-kva", &"a".repeat(63)] {
            assert_eq!(check_label(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        for (bad, why) in [
            ("", "is empty"),
            (
                &"a".repeat(64) as &str,
                "is 64 characters long; a DNS label has at most 63",
            ),
            ("a_b", "contains '_'"),
            ("a b", "contains ' '"),
            ("a\nb", "contains '\\n'"),
            ("bücher", "contains 'ü'"),
            ("-a", "starts or ends with `-`"),
            ("a-", "starts or ends with `-`"),
        ] {
            let reason = check_label(bad).expect_err(bad);
            assert!(reason.contains(why), "{bad:?}: {reason}");
        }
    }
}
