//! Test counts and failures from pytest's JUnit XML (`--junitxml`): the regular subset pytest
//! writes — `<testcase classname= name=>` holding `<failure message=>`, `<error message=>` or
//! `<skipped>` — not XML at large.

use ccci::summary::{Counts, Failure};

/// Longest failure message kept in a summary.
const MAX_MESSAGE: usize = 2000;

pub fn parse(xml: &str) -> (Counts, Vec<Failure>) {
    let mut counts = Counts::default();
    let mut failures = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<testcase") {
        rest = &rest[start + "<testcase".len()..];
        let tag_end = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..tag_end];
        let self_closing = tag.ends_with('/');
        let body_end = if self_closing {
            tag_end
        } else {
            rest.find("</testcase>").unwrap_or(rest.len())
        };
        let body = &rest[tag_end.min(body_end)..body_end];
        let name = match (attr(tag, "classname"), attr(tag, "name")) {
            (Some(c), Some(n)) if !c.is_empty() => format!("{c}::{n}"),
            (_, Some(n)) => n,
            _ => "?".into(),
        };
        counts.total += 1;
        let outcome = ["<failure", "<error"]
            .iter()
            .find_map(|t| body.find(t).map(|i| &body[i..]));
        if let Some(el) = outcome {
            counts.failed += 1;
            let open_end = el.find('>').unwrap_or(el.len());
            let mut message = attr(&el[..open_end], "message").unwrap_or_default();
            if message.is_empty() {
                let text_end = el.find("</").unwrap_or(el.len());
                message = unescape(el[open_end.min(text_end)..text_end].trim_start_matches('>'));
            }
            if message.chars().count() > MAX_MESSAGE {
                message = message.chars().take(MAX_MESSAGE).collect::<String>() + "…";
            }
            failures.push(Failure { name, message });
        } else if body.contains("<skipped") {
            counts.skipped += 1;
        } else {
            counts.passed += 1;
        }
        rest = &rest[body_end..];
    }
    (counts, failures)
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let mut search = tag;
    loop {
        let i = search.find(name)?;
        let before_ok = i == 0 || search.as_bytes()[i - 1].is_ascii_whitespace();
        let after = &search[i + name.len()..];
        if before_ok && after.starts_with("=\"") {
            let v = &after[2..];
            let end = v.find('"')?;
            return Some(unescape(&v[..end]));
        }
        search = &search[i + name.len()..];
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..end];
        let c = match ent {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if ent.starts_with("#x") => u32::from_str_radix(&ent[2..], 16)
                .ok()
                .and_then(char::from_u32),
            _ if ent.starts_with('#') => ent[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape pytest 8 writes (junitxml.py, family xunit2).
    const XML: &str = r#"<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="4" time="0.5"><testcase classname="custom-html.test_install" name="test_index" time="0.1" /><testcase classname="custom-html.test_install" name="test_file" time="0.2"><failure message="AssertionError: expected &quot;hello&quot; &lt;b&gt; got &amp;nbsp;">def test_file(): ...</failure></testcase><testcase classname="custom-html.test_install" name="test_later" time="0.0"><skipped type="pytest.skip" message="not yet">skip</skipped></testcase><testcase classname="c" name="test_boom" time="0"><error message="">fixture 'x' not found</error></testcase></testsuite></testsuites>"#;

    #[test]
    fn counts_and_failures() {
        let (c, f) = parse(XML);
        assert_eq!(
            c,
            Counts {
                total: 4,
                passed: 1,
                failed: 2,
                skipped: 1
            }
        );
        assert_eq!(f[0].name, "custom-html.test_install::test_file");
        assert_eq!(
            f[0].message,
            "AssertionError: expected \"hello\" <b> got &nbsp;"
        );
        assert_eq!(f[1].message, "fixture 'x' not found");
    }

    #[test]
    fn empty_and_garbage_give_nothing() {
        assert_eq!(parse("").0, Counts::default());
        assert_eq!(parse("<testsuite><testcase").0.total, 1);
    }
}
