//! Keeps secrets out of everything stage-runner prints or writes.
//!
//! Drone masks only `from_secret` values, per write buffer (engine/replacer/replacer.go): the
//! run's generated passwords, and a value split across two writes, would reach the log. So
//! every byte a child prints passes through here, line by line, with every known value in
//! each of its [`forms`] replaced by `[redacted:<name>]` (docs/secrets.md lists them).

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

/// A JSON string's inside: `"`, `\\` and controls escaped (every encoder), plus `<>&` as
/// `\u00XX` (Go's HTML-safe default) and `/` as `\/` (PHP's, and some others') where asked.
fn json(value: &str, html: bool, slash: bool) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if html => out.push_str(&format!("\\u{:04x}", c as u32)),
            '/' if slash => out.push_str("\\/"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Every form a secret value may take in output: as is (and each of its lines, for a value
/// printed line by line); base64 at each of the three byte alignments, standard and URL-safe;
/// percent-encoded (all, all but `/`, with `+` for space); hex; JSON-escaped the ways
/// encoders differ. Matching ignores ASCII case, which also covers `%2f`/`%2F` and hex in
/// either case.
pub fn forms(value: &str) -> Vec<String> {
    // A value read from a file often ends in a newline that is not printed with it.
    let value = value.trim_end_matches(['\n', '\r']);
    let mut f = vec![value.to_owned()];
    f.extend(
        value
            .lines()
            .map(str::trim)
            .filter(|l| l.len() >= MIN_SECRET_LEN && l.len() < value.len())
            .map(str::to_owned),
    );
    for prefix in 0..3 {
        let core = base64_core(value.as_bytes(), prefix);
        if core.len() >= MIN_SECRET_LEN {
            f.push(core.replace('+', "-").replace('/', "_"));
            f.push(core);
        }
    }
    f.push(ccci::api::percent(value, b"", false));
    f.push(ccci::api::percent(value, b"/", false));
    f.push(ccci::api::percent(value, b"", true));
    f.push(value.bytes().map(|b| format!("{b:02x}")).collect());
    for (html, slash) in [(false, false), (true, false), (false, true), (true, true)] {
        f.push(json(value, html, slash));
    }
    f.retain(|x| x.len() >= MIN_SECRET_LEN);
    f.sort();
    f.dedup();
    f
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
                .ascii_case_insensitive(true)
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

/// Widths base64 is wrapped at: MIME and `base64(1)` (76), PEM and OpenSSL (64).
const WRAPS: [usize; 2] = [64, 76];

/// A whole line of wrapped base64 (line end excluded): its value may go on on the next line.
fn wrapped(line: &[u8]) -> bool {
    WRAPS.contains(&line.len()) && line.iter().all(|b| b64_char(*b))
}

fn b64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_')
}

/// The complete lines of `buf`: (start, end without the line end, end with it).
fn lines(buf: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
        let end = start + nl;
        let text_end = if end > start && buf[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        out.push((start, text_end, end + 1));
        start = end + 1;
    }
    out
}

impl Redactor {
    /// Redacts `region`, whose complete lines are `ls` ([`lines`]), reading base64 wrapped
    /// over several lines as one: a value's encoding cut by a line end is still found.
    fn redact_lines(&self, region: &[u8], ls: &[(usize, usize, usize)]) -> Vec<u8> {
        if self.ac.is_none() || !ls.iter().any(|&(a, b, _)| wrapped(&region[a..b])) {
            return self.redact(region);
        }
        let mut out = Vec::with_capacity(region.len());
        let mut done = 0;
        let mut i = 0;
        while i < ls.len() {
            if !wrapped(&region[ls[i].0..ls[i].1]) {
                i += 1;
                continue;
            }
            // A run: wrapped lines, then the short last one if it is base64 too.
            let first = i;
            while i < ls.len() && wrapped(&region[ls[i].0..ls[i].1]) {
                i += 1;
            }
            if i < ls.len() && region[ls[i].0..ls[i].1].iter().all(|b| b64_char(*b)) {
                i += 1;
            }
            let (start, end) = (ls[first].0, ls[i - 1].2);
            out.extend(self.redact(&region[done..start]));
            let mut joined = Vec::new();
            let mut at = Vec::new();
            for &(a, b, _) in &ls[first..i] {
                joined.extend_from_slice(&region[a..b]);
                at.extend(a..b);
            }
            let mut covered = vec![false; end - start];
            let mut put: Vec<Option<usize>> = vec![None; end - start];
            for m in self.ac.as_ref().expect("checked").find_iter(&joined) {
                put[at[m.start()] - start] = Some(m.pattern().as_usize());
                for j in m.start()..m.end() {
                    covered[at[j] - start] = true;
                }
            }
            for k in 0..end - start {
                if let Some(p) = put[k] {
                    out.extend_from_slice(&self.replacements[p]);
                }
                if !covered[k] {
                    out.push(region[start + k]);
                }
            }
            done = end;
        }
        out.extend(self.redact(&region[done..]));
        out
    }
}

impl<W: Write> Stream<'_, W> {
    fn flush_lines(&mut self, all: bool) -> io::Result<()> {
        if all {
            let out = self.r.redact_lines(&self.buf, &lines(&self.buf));
            self.out.write_all(&out)?;
            self.buf.clear();
            return Ok(());
        }
        let Some(nl) = self.buf.iter().rposition(|b| *b == b'\n') else {
            if self.buf.len() > MAX_LINE {
                let cut = self.buf.len() - self.r.longest.saturating_sub(1).min(self.buf.len());
                let mut red = Vec::with_capacity(cut + 64);
                let rest = self.r.redact_into(&self.buf, cut, &mut red);
                self.out.write_all(&red)?;
                self.buf.drain(..rest);
            }
            return Ok(());
        };
        // Wrapped base64 at the end waits for the line that ends it (at most a few lines of
        // it: past MAX_LINE, all but the last two go, which hold any value's split).
        let ls = lines(&self.buf[..nl + 1]);
        let mut keep = ls.len();
        while keep > 0 && wrapped(&self.buf[ls[keep - 1].0..ls[keep - 1].1]) {
            keep -= 1;
        }
        if keep < ls.len() && nl + 1 - ls[keep].0 > MAX_LINE {
            keep = ls.len() - 2;
        }
        let cut = if keep == ls.len() { nl + 1 } else { ls[keep].0 };
        if cut == 0 {
            return Ok(());
        }
        let out = self.r.redact_lines(&self.buf[..cut], &ls[..keep]);
        self.out.write_all(&out)?;
        self.buf.drain(..cut);
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
    fn the_forms_logs_show_are_replaced() {
        let r = Redactor::new([("pw", "a b/c&d<e\"f")]);
        for shown in [
            "a%20b/c%26d%3Ce%22f",        // a URL path: `/` left alone
            "a%20b%2Fc%26d%3cE%22F",      // mixed-case escapes
            "a+b%2Fc%26d%3Ce%22f",        // an HTML form: `+` for space
            "a b/c\\u0026d\\u003ce\\\"f", // Go's JSON
            "a b\\/c&d<e\\\"f",           // JSON with `\/`
            "a b/c&d<e\\\"f",             // serde's JSON
        ] {
            let out = r.redact_str(&format!("x={shown} y"));
            assert_eq!(out, "x=[redacted:pw] y", "{shown}");
        }
        let hex = Redactor::new([("k", "s3cret-key")]);
        assert_eq!(
            hex.redact_str("key 7333637265742d6b6579"),
            "key [redacted:k]"
        );
        assert_eq!(
            hex.redact_str("key 7333637265742D6B6579"),
            "key [redacted:k]"
        );
    }

    #[test]
    fn a_value_from_a_file_and_a_value_of_many_lines() {
        let r = Redactor::new([("tok", "from-a-file-token\n")]);
        assert_eq!(
            r.redact_str("token from-a-file-token here"),
            "token [redacted:tok] here"
        );
        let pem = "-----BEGIN KEY-----\nMIIBVgIBADANBgkqhkiG9w0BAQEFAASC\nAUAwggE8AgEAAkEAq7BFUpkGp3+XQmo\n-----END KEY-----";
        let r = Redactor::new([("key", pem)]);
        let mut out = Vec::new();
        {
            let mut s = r.stream(&mut out);
            for l in pem.lines() {
                s.write_all(format!("key: {l}\n").as_bytes()).unwrap();
            }
            s.finish().unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("MIIBVgIBADANBgkqhkiG9w0BAQEFAASC"), "{text}");
        assert!(!text.contains("AUAwggE8AgEAAkEAq7BFUpkGp3+XQmo"), "{text}");
    }

    #[test]
    fn base64_wrapped_over_lines_is_caught() {
        let secret = "a-generated-password-of-some-length-0123456789";
        let r = Redactor::new([("pw", secret)]);
        for width in WRAPS {
            for lead in 0..80 {
                // A secret inside a document, base64'd and wrapped: the cut falls anywhere.
                let doc = format!("{}{secret}{}", "x".repeat(lead), "y".repeat(90));
                let encoded = b64(doc.as_bytes());
                let wrapped: Vec<&str> = encoded
                    .as_bytes()
                    .chunks(width)
                    .map(|c| std::str::from_utf8(c).unwrap())
                    .collect();
                let mut out = Vec::new();
                {
                    let mut s = r.stream(&mut out);
                    s.write_all(b"data:\n").unwrap();
                    for l in &wrapped {
                        s.write_all(format!("{l}\r\n").as_bytes()).unwrap();
                    }
                    s.write_all(b"end\n").unwrap();
                    s.finish().unwrap();
                }
                let text = String::from_utf8(out).unwrap();
                assert!(
                    text.contains("[redacted:pw]"),
                    "width {width} lead {lead}: {text}"
                );
                assert!(
                    text.ends_with("end\n") && text.starts_with("data:\n"),
                    "{text}"
                );
                let core = base64_core(secret.as_bytes(), lead % 3);
                let flat: String = text.lines().collect();
                assert!(
                    !flat.contains(&core[..20]),
                    "width {width} lead {lead}: {text}"
                );
            }
        }
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
