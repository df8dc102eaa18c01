//! Keeps secrets out of everything stage-runner prints or writes.
//!
//! Drone masks only `from_secret` values, per write buffer (engine/replacer/replacer.go): the
//! run's generated passwords, and a value split across two writes, would reach the log. So
//! every byte a child prints passes through here, line by line, with every known value — as
//! is, base64-encoded at each of the three byte alignments (standard and URL-safe alphabets),
//! and percent-encoded — replaced by `[redacted:<name>]`.

use std::io::{self, Write};

use aho_corasick::{AhoCorasick, MatchKind};

/// Values shorter than this are not redacted: they would match everywhere and hide the log.
pub const MIN_SECRET_LEN: usize = 6;
/// A line longer than this is flushed in pieces (minus a tail that may hold a split secret).
const MAX_LINE: usize = 64 * 1024;

#[derive(Clone)]
pub struct Redactor {
    secrets: Vec<(String, String)>,
    ac: Option<AhoCorasick>,
    replacements: Vec<Vec<u8>>,
    longest: usize,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} patterns)", self.replacements.len())
    }
}

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 of `prefix` zero bytes then `value`, keeping only the characters that depend on
/// `value` alone: what `value` looks like inside any base64 stream at that alignment.
fn base64_core(value: &[u8], prefix: usize) -> String {
    let mut bytes = vec![0u8; prefix];
    bytes.extend_from_slice(value);
    let bits = bytes.len() * 8;
    let (lo, hi) = (prefix * 8, bits);
    let mut out = String::new();
    let mut i = 0;
    while 6 * i + 6 <= bits {
        if 6 * i >= lo && 6 * i + 6 <= hi {
            let mut v = 0u8;
            for b in 0..6 {
                let bit = 6 * i + b;
                let byte = bytes[bit / 8];
                v = (v << 1) | ((byte >> (7 - bit % 8)) & 1);
            }
            out.push(STD[v as usize] as char);
        }
        i += 1;
    }
    out
}

fn percent(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Every form a secret value may take in output.
pub fn forms(value: &str) -> Vec<String> {
    let mut f = vec![value.to_owned()];
    for prefix in 0..3 {
        let core = base64_core(value.as_bytes(), prefix);
        if core.len() >= MIN_SECRET_LEN {
            f.push(core.replace('+', "-").replace('/', "_"));
            f.push(core);
        }
    }
    let p = percent(value);
    f.push(p.to_lowercase_hex());
    f.push(p);
    f.sort();
    f.dedup();
    f
}

trait LowerHex {
    fn to_lowercase_hex(&self) -> String;
}

impl LowerHex for String {
    /// `%2f` as some encoders write it.
    fn to_lowercase_hex(&self) -> String {
        let mut out = String::with_capacity(self.len());
        let mut chars = self.chars().peekable();
        while let Some(c) = chars.next() {
            out.push(c);
            if c == '%' {
                for _ in 0..2 {
                    if let Some(h) = chars.next() {
                        out.push(h.to_ascii_lowercase());
                    }
                }
            }
        }
        out
    }
}

impl Redactor {
    /// `secrets` are (name, value) pairs; the name appears in the replacement.
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Redactor {
        let mut patterns: Vec<String> = Vec::new();
        let mut replacements = Vec::new();
        let mut kept = Vec::new();
        for (name, value) in secrets {
            kept.push((name.to_owned(), value.to_owned()));
            if value.len() < MIN_SECRET_LEN {
                continue;
            }
            for form in forms(value) {
                if !patterns.contains(&form) {
                    patterns.push(form);
                    replacements.push(format!("[redacted:{name}]").into_bytes());
                }
            }
        }
        let longest = patterns.iter().map(String::len).max().unwrap_or(0);
        let ac = (!patterns.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .expect("secret patterns build an automaton")
        });
        Redactor {
            secrets: kept,
            ac,
            replacements,
            longest,
        }
    }

    /// Adds a value learnt during the run (a secret abra just generated).
    pub fn add(&mut self, name: &str, value: &str) {
        let mut all = std::mem::take(&mut self.secrets);
        all.push((name.to_owned(), value.to_owned()));
        *self = Redactor::new(all.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    }

    pub fn is_empty(&self) -> bool {
        self.ac.is_none()
    }

    /// Redacts a whole buffer.
    pub fn redact(&self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        self.redact_into(input, input.len(), &mut out);
        out
    }

    pub fn redact_str(&self, input: &str) -> String {
        String::from_utf8_lossy(&self.redact(input.as_bytes())).into_owned()
    }

    /// Redacts `input`, writing only what lies before `cut` (matches starting before `cut` are
    /// replaced whole). Returns where the unwritten rest starts.
    fn redact_into(&self, input: &[u8], cut: usize, out: &mut Vec<u8>) -> usize {
        let Some(ac) = &self.ac else {
            out.extend_from_slice(&input[..cut]);
            return cut;
        };
        let mut last = 0;
        for m in ac.find_iter(input) {
            if m.start() >= cut {
                break;
            }
            out.extend_from_slice(&input[last..m.start()]);
            out.extend_from_slice(&self.replacements[m.pattern().as_usize()]);
            last = m.end();
        }
        if last < cut {
            out.extend_from_slice(&input[last..cut]);
            last = cut;
        }
        last
    }

    pub fn stream<W: Write>(&self, out: W) -> Stream<'_, W> {
        Stream {
            r: self,
            buf: Vec::new(),
            out,
        }
    }
}

/// A writer that redacts line by line, so a secret split across writes is still caught.
pub struct Stream<'a, W: Write> {
    r: &'a Redactor,
    buf: Vec<u8>,
    out: W,
}

impl<W: Write> Stream<'_, W> {
    fn flush_lines(&mut self, all: bool) -> io::Result<()> {
        let cut = if all {
            self.buf.len()
        } else if let Some(nl) = self.buf.iter().rposition(|b| *b == b'\n') {
            nl + 1
        } else if self.buf.len() > MAX_LINE {
            self.buf.len() - self.r.longest.saturating_sub(1).min(self.buf.len())
        } else {
            return Ok(());
        };
        let mut red = Vec::with_capacity(cut + 64);
        let rest = self.r.redact_into(&self.buf, cut, &mut red);
        self.out.write_all(&red)?;
        self.buf.drain(..rest);
        Ok(())
    }

    /// Writes out whatever is buffered (the end of the stream).
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_lines(true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Stream<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.flush_lines(false)?;
        Ok(data.len())
    }

    /// Lines are written as they complete; a partial line waits for its end.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        let mut out = String::new();
        for chunk in s.chunks(3) {
            let n = chunk.len();
            let v = (u32::from(chunk[0]) << 16)
                | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                | u32::from(*chunk.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= n {
                    out.push(STD[((v >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn whole_values_are_replaced_with_their_name() {
        let r = Redactor::new([("admin_password", "hunter2hunter2")]);
        assert_eq!(
            r.redact_str("login with hunter2hunter2 now"),
            "login with [redacted:admin_password] now"
        );
    }

    #[test]
    fn base64_at_every_alignment_is_replaced() {
        let secret = "S3cr3t-value-42";
        let r = Redactor::new([("tok", secret)]);
        for prefix in ["", "a", "ab", "abc", "user:"] {
            let encoded = b64(format!("{prefix}{secret} and more").as_bytes());
            let out = r.redact_str(&format!("Authorization: Basic {encoded}"));
            assert!(out.contains("[redacted:tok]"), "prefix {prefix:?}: {out}");
        }
    }

    #[test]
    fn percent_encoded_values_are_replaced() {
        let r = Redactor::new([("pw", "a b/c+d=e")]);
        let out = r.redact_str("password=a%20b%2Fc%2Bd%3De&x=1 or a%20b%2fc%2bd%3de");
        assert_eq!(out, "password=[redacted:pw]&x=1 or [redacted:pw]");
    }

    #[test]
    fn a_value_split_across_writes_is_caught() {
        let r = Redactor::new([("pw", "correcthorsebattery")]);
        let mut out = Vec::new();
        {
            let mut s = r.stream(&mut out);
            s.write_all(b"first line\npassword: correct").unwrap();
            s.write_all(b"horse").unwrap();
            s.write_all(b"battery\nlast").unwrap();
            s.finish().unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "first line\npassword: [redacted:pw]\nlast"
        );
    }

    #[test]
    fn a_split_value_in_a_huge_line_is_caught() {
        let r = Redactor::new([("pw", "correcthorsebattery")]);
        let mut out = Vec::new();
        {
            let mut s = r.stream(&mut out);
            let filler = vec![b'x'; MAX_LINE + 10];
            s.write_all(&filler).unwrap();
            s.write_all(b"correcthorse").unwrap();
            s.write_all(&filler).unwrap();
            s.write_all(b"battery").unwrap();
            s.finish().unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("correcthorsebattery"));
        // Not a match: the filler separated the halves.
        assert!(text.contains("correcthorse"));
        let r2 = Redactor::new([("pw", "correcthorsebattery")]);
        let mut out = Vec::new();
        {
            let mut s = r2.stream(&mut out);
            s.write_all(&vec![b'x'; MAX_LINE + 10]).unwrap();
            s.write_all(b"correcthorse").unwrap();
            s.write_all(b"battery").unwrap();
            s.finish().unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("[redacted:pw]"),
            "{}",
            &text[text.len() - 40..]
        );
    }

    #[test]
    fn short_values_are_not_redacted() {
        let r = Redactor::new([("x", "ab")]);
        assert!(r.is_empty());
        assert_eq!(r.redact_str("abc"), "abc");
    }
}
