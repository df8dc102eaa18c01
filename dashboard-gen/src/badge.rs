//! Shields-style SVG badges: label `cc-ci`, message passing / failing / running / untested.

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

/// The badge for `recipe` (the name goes into `<title>` only).
pub fn svg(recipe: &str, status: Status) -> String {
    let label = "cc-ci";
    let msg = status.badge();
    let lw = text_width(label) + 12;
    let mw = text_width(msg) + 12;
    let w = lw + mw;
    let title = format!("{recipe}: cc-ci {msg}");
    let title = xml(&title);
    let c = colour(status);
    let (lx, mx) = (lw * 5, lw * 10 + mw * 5);
    let (ltl, mtl) = ((lw - 12) * 10, (mw - 12) * 10);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{title}"><title>{title}</title><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{mw}" height="20" fill="{c}"/><rect width="{w}" height="20" fill="url(#s)"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="110"><text aria-hidden="true" x="{lx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{ltl}">{label}</text><text x="{lx}" y="140" transform="scale(.1)" fill="#fff" textLength="{ltl}">{label}</text><text aria-hidden="true" x="{mx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{mtl}">{msg}</text><text x="{mx}" y="140" transform="scale(.1)" fill="#fff" textLength="{mtl}">{msg}</text></g></svg>
"##
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
}
