//! Reading `abra recipe lint <recipe>`: its rule table, row by row. abra's exit status says
//! only whether it could lint at all (non-zero on a FATA); which rules hold is in the table
//! ([CCCI] runner/harness/lint.py and commit cd62743: "rc≠0 ONLY on FATA"; an unsatisfied
//! error rule prints `WARN critical errors present in <recipe> config` and still exits 0).

/// What the table says of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    Satisfied,
    Unsatisfied,
    Skipped,
    /// Neither ✅ nor ❌: the stand-in abra's mark for a rule it cannot check.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `R001` …
    pub reference: String,
    pub description: String,
    /// `error` or `warn` (or what abra printed).
    pub severity: String,
    pub held: Held,
    /// abra's advice on fixing it.
    pub resolve: String,
}

impl Rule {
    /// An error-severity rule not satisfied: the lint rung fails.
    pub fn fails(&self) -> bool {
        self.held == Held::Unsatisfied && self.severity.eq_ignore_ascii_case("error")
    }
}

/// The rows of every rule table in `output` (a PTY's output: `\r`, colour codes and box
/// drawing allowed). Columns are found by the header's names where there is one (REF, RULE,
/// SEVERITY, SATISFIED, SKIPPED, RESOLVE), else taken in that order.
pub fn parse(output: &str) -> Vec<Rule> {
    let mut columns: Option<Vec<String>> = None;
    let mut rules = Vec::new();
    for raw in output.lines() {
        let line = strip_ansi(raw);
        let Some(cells) = cells(&line) else { continue };
        if cells.iter().any(|c| c.eq_ignore_ascii_case("rule")) {
            columns = Some(cells.iter().map(|c| c.to_ascii_lowercase()).collect());
            continue;
        }
        let names: Vec<String> = columns.clone().unwrap_or_else(|| {
            ["ref", "rule", "severity", "satisfied", "skipped", "resolve"]
                .map(String::from)
                .to_vec()
        });
        let get = |name: &str| {
            names
                .iter()
                .position(|n| n.starts_with(name))
                .and_then(|i| cells.get(i))
                .cloned()
                .unwrap_or_default()
        };
        let reference = get("ref");
        let is_ref = reference.len() == 4
            && reference.starts_with('R')
            && reference[1..].bytes().all(|b| b.is_ascii_digit());
        if !is_ref {
            continue;
        }
        let held = if mark(&get("skipped")) == Some(true) {
            Held::Skipped
        } else {
            match mark(&get("satisfied")) {
                Some(true) => Held::Satisfied,
                Some(false) => Held::Unsatisfied,
                None => Held::Unknown,
            }
        };
        let resolve = match get("resolve") {
            r if r.is_empty() => get("how"),
            r => r,
        };
        rules.push(Rule {
            reference,
            description: get("rule"),
            severity: get("severity").to_ascii_lowercase(),
            held,
            resolve,
        });
    }
    rules
}

/// ✅ / ❌ (or yes/no, true/false); `None` for anything else.
fn mark(cell: &str) -> Option<bool> {
    let c = cell.trim().to_ascii_lowercase();
    if c.contains('✅') || c == "yes" || c == "true" || c == "✓" {
        Some(true)
    } else if c.contains('❌') || c == "no" || c == "false" || c == "✗" {
        Some(false)
    } else {
        None
    }
}

/// The cells of a table row (`│ a │ b │` or `| a | b |`); `None` for any other line.
fn cells(line: &str) -> Option<Vec<String>> {
    let t = line.trim();
    let bar = |c: char| matches!(c, '│' | '|' | '┃');
    if !t.starts_with(bar) {
        return None;
    }
    let inner = t.trim_matches(bar);
    Some(inner.split(bar).map(|c| c.trim().to_owned()).collect())
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            if it.peek() == Some(&'[') {
                it.next();
                for d in it.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\u{1b}[1m┌──────┬──────────────────────────────────────────┬──────────┬───────────┬─────────┬──────────────────────────────────────┐\r
│ REF  │ RULE                                     │ SEVERITY │ SATISFIED │ SKIPPED │ RESOLVE                              │\r
├──────┼──────────────────────────────────────────┼──────────┼───────────┼─────────┼──────────────────────────────────────┤\r
│ R001 │ compose config has expected version      │ warn     │ ✅        │ ❌      │ ensure 'version: \"3.8\"' in compose configs │\r
│ R010 │ traefik routing enabled                  │ error    │ ❌        │ ✅      │ include \"traefik.enable=true\" deploy label │\r
│ R014 │ only annotated tags used for recipe version │ \u{1b}[31merror\u{1b}[0m │ ❌ │ ❌ │ replace lightweight tag with annotated tag │\r
│ R015 │ long secret names                        │ warn     │ ❌        │ ❌      │ reduce length of secret names         │\r
│ R016 │ (not checked by the stand-in)            │ ?        │ ?         │ ?       │                                      │\r
└──────┴──────────────────────────────────────────┴──────────┴───────────┴─────────┴──────────────────────────────────────┘\r
WARN critical errors present in custom-html config\r\n";

    #[test]
    fn each_row_is_a_rule_and_only_error_rules_fail() {
        let rules = parse(TABLE);
        let got: Vec<(&str, Held, bool)> = rules
            .iter()
            .map(|r| (r.reference.as_str(), r.held, r.fails()))
            .collect();
        assert_eq!(
            got,
            [
                ("R001", Held::Satisfied, false),
                ("R010", Held::Skipped, false),
                ("R014", Held::Unsatisfied, true),
                ("R015", Held::Unsatisfied, false),
                ("R016", Held::Unknown, false),
            ]
        );
        assert_eq!(rules[2].severity, "error");
        assert_eq!(
            rules[2].description,
            "only annotated tags used for recipe version"
        );
        assert_eq!(
            rules[2].resolve,
            "replace lightweight tag with annotated tag"
        );
    }

    #[test]
    fn a_table_without_a_header_is_read_in_abra_s_order() {
        let rules =
            parse("| R001 | compose config has expected version | warn | ❌ | ❌ | fix |\n");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].held, Held::Unsatisfied);
        assert!(!rules[0].fails());
        assert!(parse("FATA unable to validate recipe: .env.sample: no such file\n").is_empty());
    }
}
