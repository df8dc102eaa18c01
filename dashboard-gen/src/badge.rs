//! Shields-style SVG badges. Two per recipe: the level badge (`cc-ci | <recipe> | level N`,
//! coloured by level) that maintainers embed in their README, and the status badge (`cc-ci |
//! passing`), kept at its old URL for the READMEs that embed it already.

use crate::escape::xml;
use crate::model::Status;

/// Approximate advance of an 11px Verdana character; badges only need to look right.
fn text_width(s: &str) -> u32 {
    s.chars()
        .map(|c| match c {
            'i' | 'l' | 'j' | '.' | ',' | ':' | '\'' | '!' | '|' => 4,
            'f' | 't' | 'r' | '-' | ' ' => 5,
            'm' | 'w' => 10,
            'A'..='Z' => 8,
            _ => 7,
        })
        .sum()
}

fn colour(s: Status) -> &'static str {
    match s {
        Status::Passed => "#1a7f37",
        Status::Failed | Status::Error => "#cf222e",
        Status::Running => "#0969da",
        Status::Cancelled | Status::Untested => "#6e7781",
    }
}

const LABEL: &str = "#555";
const GREY: &str = "#6e7781";

/// Levels 0 (broken) to 6 (stable): red through amber to a deep green.
fn level_colour(level: Option<u8>) -> &'static str {
    match level {
        None => GREY,
        Some(0) => "#cf222e",
        Some(1) => "#d1690e",
        Some(2) => "#b08800",
        Some(3) => "#6f9a1f",
        Some(4) => "#2da44e",
        Some(5) => "#1a7f37",
        Some(_) => "#116329",
    }
}

/// A badge of adjacent parts, each `(text, fill)`; `title` is its accessible name.
fn parts(title: &str, parts: &[(&str, &str)]) -> String {
    let title = xml(title);
    let widths: Vec<u32> = parts.iter().map(|(t, _)| text_width(t) + 12).collect();
    let w: u32 = widths.iter().sum();
    let mut rects = String::new();
    let mut texts = String::new();
    let mut x = 0;
    for ((text, fill), pw) in parts.iter().zip(&widths) {
        rects.push_str(&format!(
            r#"<rect x="{x}" width="{pw}" height="20" fill="{fill}"/>"#
        ));
        let t = xml(text);
        let (cx, tl) = (x * 10 + pw * 5, (pw - 12) * 10);
        texts.push_str(&format!(
            r##"<text aria-hidden="true" x="{cx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{tl}">{t}</text><text x="{cx}" y="140" transform="scale(.1)" fill="#fff" textLength="{tl}">{t}</text>"##
        ));
        x += pw;
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{title}"><title>{title}</title><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)">{rects}<rect width="{w}" height="20" fill="url(#s)"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="110">{texts}</g></svg>
"##
    )
}

/// The status badge for `recipe` (the name goes into `<title>` only).
pub fn svg(recipe: &str, status: Status) -> String {
    let msg = status.badge();
    parts(
        &format!("{recipe}: cc-ci {msg}"),
        &[("cc-ci", LABEL), (msg, colour(status))],
    )
}

/// The level badge: `cc-ci | <recipe> | level N`, or `untested` before a run finished.
pub fn level(recipe: &str, level: Option<u8>) -> String {
    let msg = level.map_or_else(|| "untested".to_owned(), |l| format!("level {l}"));
    parts(
        &format!("cc-ci: {recipe} {msg}"),
        &[
            ("cc-ci", LABEL),
            (recipe, "#3d444d"),
            (&msg, level_colour(level)),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badge_says_status_and_escapes_title() {
        let s = svg("a<b>&'\"", Status::Failed);
        assert!(s.contains(">failing</text>"));
        assert!(
            s.contains("<title>a&lt;b&gt;&amp;&#39;&quot;: cc-ci failing</title>"),
            "{s}"
        );
        assert!(!s.contains("<b>"));
        assert!(svg("x", Status::Untested).contains(">untested<"));
        assert!(svg("x", Status::Passed).contains(">passing<"));
        assert!(svg("x", Status::Running).contains(">running<"));
    }

    #[test]
    fn level_badge_names_recipe_and_level_in_the_level_s_colour() {
        let s = level("custom-html", Some(3));
        assert!(s.contains(">cc-ci</text>"), "{s}");
        assert!(s.contains(">custom-html</text>"), "{s}");
        assert!(s.contains(">level 3</text>"), "{s}");
        assert!(s.contains("fill=\"#6f9a1f\""), "{s}");
        assert!(
            s.contains("<title>cc-ci: custom-html level 3</title>"),
            "{s}"
        );
        assert!(level("x", Some(0)).contains("fill=\"#cf222e\""));
        assert!(level("x", Some(5)).contains("fill=\"#1a7f37\""));
        assert!(level("x", Some(6)).contains("fill=\"#116329\""));
        let u = level("x", None);
        assert!(u.contains(">untested</text>") && u.contains(GREY), "{u}");
        // Three parts side by side: the width is their sum.
        let w: u32 = ["cc-ci", "custom-html", "level 3"]
            .iter()
            .map(|t| text_width(t) + 12)
            .sum();
        assert!(
            s.contains(&format!("width=\"{w}\" height=\"20\" role=\"img\"")),
            "{s}"
        );
    }
}
