//! Escaping for the contexts the site writes outside strings into: HTML text and attributes,
//! XML (SVG, Atom), and the URLs put in `href`.
//!
//! Every helper borrows when nothing needs escaping, so clean text costs no allocation.

use std::borrow::Cow;

/// Escapes for HTML text *and* quoted attributes (either quote), and for XML: `& < > " '`.
pub fn html(s: &str) -> Cow<'_, str> {
    if !s
        .bytes()
        .any(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\''))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// XML text and attributes (SVG, Atom): the same five characters, and the control characters
/// XML 1.0 forbids dropped (a stray `\u{1b}` from a test's output would make the feed invalid).
pub fn xml(s: &str) -> Cow<'_, str> {
    let bad = |c: char| (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{fffe}';
    if s.chars().any(bad) {
        let clean: String = s.chars().filter(|c| !bad(*c)).collect();
        return Cow::Owned(html(&clean).into_owned());
    }
    html(s)
}

/// A URL fit for `href`: only `http(s)` absolute URLs pass, so a `javascript:` or `data:`
/// link in a summary or a build never becomes clickable. Still needs [`html`] for the quote.
pub fn safe_url(s: &str) -> Option<&str> {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let ok = (lower.starts_with("https://") || lower.starts_with("http://"))
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(s)
}

/// Truncates to at most `max` characters, marking the cut with `…`.
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((i, _)) => Cow::Owned(format!("{}…", &s[..i])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_the_five() {
        assert_eq!(
            html(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert!(matches!(html("plain text é"), Cow::Borrowed(_)));
        assert_eq!(html("<"), "&lt;");
        assert_eq!(html(">"), "&gt;");
        assert_eq!(html("&"), "&amp;");
        assert_eq!(html("\""), "&quot;");
        assert_eq!(html("'"), "&#39;");
    }

    #[test]
    fn xml_drops_forbidden_controls() {
        assert_eq!(xml("a\u{1b}[31m<b>"), "a[31m&lt;b&gt;");
        assert_eq!(xml("tab\tok"), "tab\tok");
        assert_eq!(xml(r#"'"&"#), "&#39;&quot;&amp;");
    }

    #[test]
    fn only_http_urls_are_links() {
        assert_eq!(
            safe_url("https://git.example.org/a/b"),
            Some("https://git.example.org/a/b")
        );
        assert_eq!(safe_url("HTTP://x"), Some("HTTP://x"));
        assert_eq!(safe_url("javascript:alert(1)"), None);
        assert_eq!(safe_url("data:text/html,<script>"), None);
        assert_eq!(safe_url("https://x/ y"), None);
        assert_eq!(safe_url(""), None);
    }

    #[test]
    fn truncate_marks_the_cut() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("ééé", 2), "éé…");
    }
}
