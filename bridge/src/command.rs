//! The `!testme` command: what a comment must say to start a run. Pure, no I/O.
//!
//! The rule is deliberately strict (the whole comment is the command) so that quoting a
//! previous `!testme`, showing it in a code block, or mentioning it in a sentence never starts
//! a run. Edited comments are refused by the caller, which knows the event.

/// What a comment asks of cc-ci.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Run the cc-ci pipeline on the PR's head commit (again, if it ran before).
    TestMe,
}

const TESTME: &str = "!testme";

/// Parses a comment body. `None` for anything that is not exactly the command.
pub fn parse(body: &str) -> Option<Command> {
    // Blank lines around the command are noise; indentation is not: four columns of spaces
    // or a tab before it make an indented Markdown code block. Markdown ends a line at \n,
    // \r\n or a lone \r: all three split lines here, so `"\r    !testme"` is indented.
    let mut lines = body.split(['\n', '\r']).filter(|l| !l.trim().is_empty());
    let line = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    let indent: usize = line
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .map(|c| if c == '\t' { 4 } else { 1 })
        .sum();
    (indent < 4 && line.trim() == TESTME).then_some(Command::TestMe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_command_triggers() {
        assert_eq!(parse("!testme"), Some(Command::TestMe));
    }

    #[test]
    fn surrounding_whitespace_and_crlf_are_ignored() {
        assert_eq!(parse("  !testme \r\n"), Some(Command::TestMe));
        assert_eq!(parse("\n\n!testme\n\n"), Some(Command::TestMe));
    }

    #[test]
    fn longer_words_do_not_trigger() {
        assert_eq!(parse("!testmexyz"), None);
        assert_eq!(parse("!testme please"), None);
        assert_eq!(parse("please !testme"), None);
        assert_eq!(parse("!TESTME"), None);
        assert_eq!(parse("!test me"), None);
    }

    #[test]
    fn quotes_do_not_trigger() {
        assert_eq!(parse("> !testme"), None);
        assert_eq!(parse("> !testme\n\nwhy did this fail?"), None);
    }

    #[test]
    fn code_blocks_do_not_trigger() {
        assert_eq!(parse("```\n!testme\n```"), None);
        assert_eq!(parse("`!testme`"), None);
        assert_eq!(parse("    !testme"), None);
        assert_eq!(parse("\t!testme"), None);
    }

    #[test]
    fn every_line_end_is_a_line_end() {
        assert_eq!(parse("\r    !testme"), None, "a lone CR, then a code block");
        assert_eq!(parse("\r\n    !testme"), None);
        assert_eq!(parse("x\r!testme"), None);
        assert_eq!(parse("!testme\rx"), None);
        assert_eq!(parse("\r!testme\r"), Some(Command::TestMe));
    }

    /// Near misses, generated: every prefix and suffix built from a few fragments around the
    /// command. It triggers exactly when the command is the only non-blank line and sits less
    /// than four columns in.
    #[test]
    fn near_misses_never_trigger() {
        const PARTS: &[&str] = &[
            "", " ", "  ", "\t", "\r", "\n", "\r\n", ">", "`", "x", "\u{200b}", "\u{a0}", "!",
        ];
        let mut tried = 0;
        for a in PARTS {
            for b in PARTS {
                for c in PARTS {
                    for d in PARTS {
                        let prefix = format!("{a}{b}{c}");
                        let body = format!("{prefix}{TESTME}{d}");
                        tried += 1;
                        let blank = |s: &str| s.chars().all(char::is_whitespace);
                        let last_line = prefix.rsplit(['\n', '\r']).next().unwrap();
                        let columns: usize = last_line
                            .chars()
                            .take_while(|c| *c == ' ' || *c == '\t')
                            .map(|c| if c == '\t' { 4 } else { 1 })
                            .sum();
                        let want = blank(&prefix) && blank(d) && columns < 4;
                        assert_eq!(parse(&body).is_some(), want, "{body:?}");
                    }
                }
            }
        }
        assert_eq!(tried, PARTS.len().pow(4));
    }

    #[test]
    fn empty_does_not_trigger() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("   \n"), None);
    }
}
