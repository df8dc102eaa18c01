//! Gitea webhook deliveries: signature check over the raw body, before anything parses it.
//!
//! Gitea signs `application/json` hooks with `X-Gitea-Signature`: lowercase hex of
//! HMAC-SHA256(secret, raw body) (services/webhook/deliver.go `addDefaultHeaders`). Several
//! secrets are accepted so a secret can be rotated: configure old and new, switch Gitea, drop
//! the old one.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use ccci::secret::Secret;

/// Why a delivery was refused. Each maps to one HTTP answer and one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `X-Gitea-Signature`, or an empty one (Gitea sends "" when the hook has no secret).
    MissingSignature,
    /// Not 64 lowercase hex digits.
    MalformedSignature,
    /// Well-formed, but no configured secret produces it.
    WrongSignature,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MissingSignature => "missing signature",
            Refusal::MalformedSignature => "malformed signature",
            Refusal::WrongSignature => "wrong signature",
        }
    }
}

/// Checks `signature` (the header value) against `body` under each secret in constant time.
pub fn verify(secrets: &[Secret], body: &[u8], signature: Option<&str>) -> Result<(), Refusal> {
    let sig = signature.map(str::trim).unwrap_or("");
    if sig.is_empty() {
        return Err(Refusal::MissingSignature);
    }
    let Some(expected) = decode_hex(sig) else {
        return Err(Refusal::MalformedSignature);
    };
    for secret in secrets {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(body);
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(Refusal::WrongSignature)
}

/// Signs `body` as Gitea does; used by tests and the local run to deliver real hooks.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(v: &[&str]) -> Vec<Secret> {
        v.iter().map(|s| Secret::new(*s)).collect()
    }

    #[test]
    fn known_vector() {
        // RFC 4231 test case 2.
        let sig = sign(&Secret::new("Jefe"), b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn valid_signature_passes() {
        let body = br#"{"action":"created"}"#;
        let sig = sign(&Secret::new("s3cret"), body);
        assert_eq!(verify(&secrets(&["s3cret"]), body, Some(&sig)), Ok(()));
    }

    #[test]
    fn rotated_secret_passes_under_either_key() {
        let body = b"{}";
        let old = sign(&Secret::new("old"), body);
        let new = sign(&Secret::new("new"), body);
        let both = secrets(&["new", "old"]);
        assert_eq!(verify(&both, body, Some(&old)), Ok(()));
        assert_eq!(verify(&both, body, Some(&new)), Ok(()));
        assert_eq!(
            verify(&secrets(&["new"]), body, Some(&old)),
            Err(Refusal::WrongSignature)
        );
    }

    #[test]
    fn wrong_missing_and_malformed_are_refused() {
        let body = b"{}";
        let sig = sign(&Secret::new("a"), body);
        let s = secrets(&["b"]);
        assert_eq!(verify(&s, body, Some(&sig)), Err(Refusal::WrongSignature));
        assert_eq!(verify(&s, body, None), Err(Refusal::MissingSignature));
        assert_eq!(verify(&s, body, Some("")), Err(Refusal::MissingSignature));
        assert_eq!(
            verify(&s, body, Some("zz")),
            Err(Refusal::MalformedSignature)
        );
        assert_eq!(
            verify(&s, body, Some(&format!("sha256={sig}"))),
            Err(Refusal::MalformedSignature)
        );
    }

    #[test]
    fn a_changed_body_fails() {
        let sig = sign(&Secret::new("k"), b"{\"a\":1}");
        assert_eq!(
            verify(&secrets(&["k"]), b"{\"a\":2}", Some(&sig)),
            Err(Refusal::WrongSignature)
        );
    }

    #[test]
    fn no_secrets_refuses_everything() {
        let sig = sign(&Secret::new("k"), b"{}");
        assert_eq!(verify(&[], b"{}", Some(&sig)), Err(Refusal::WrongSignature));
    }
}
