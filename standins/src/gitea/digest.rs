//! Ids, tokens and digests the stand-in Gitea hands out or signs with: random ids and tokens,
//! SHA-1 and HMACs for the webhook signature headers, hex and base64, and Go's HTML escaping
//! of JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static RNG: AtomicU64 = AtomicU64::new(0);

/// A non-cryptographic 64-bit random value (splitmix64 over time and a counter): enough for
/// ids and tokens in a test double.
pub fn random_u64() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = RNG.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::SeqCst) ^ nanos;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A version-4 shaped UUID, as `HookTask.UUID` (`gouuid.New().String()`).
pub fn uuid() -> String {
    let (a, b) = (random_u64(), random_u64());
    let h = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-{}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        ["8", "9", "a", "b"][(b & 3) as usize],
        &h[17..20],
        &h[20..32]
    )
}

/// 40 lowercase hex characters, the shape of a Gitea access token.
pub fn token() -> String {
    format!(
        "{:016x}{:016x}{:08x}",
        random_u64(),
        random_u64(),
        random_u64() as u32
    )
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 with padding (what Gitea's contents API and Basic auth take).
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// The SHA-1 signature Gitea sends beside its SHA-256 one (`X-Hub-Signature`).
pub fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac =
        <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings; serde does
/// not. Those characters only occur inside JSON strings, so replacing them everywhere is safe.
pub fn go_html_escape(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_and_base64_match_known_vectors() {
        // RFC 2202 test case 2.
        assert_eq!(
            hex(&hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
    }
}
