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
    // Blank lines around the command are noise; indentation is not: four spaces or a tab
    // before the first line make an indented Markdown code block.
    let first = body
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let indent: usize = first
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .map(|c| if c == '\t' { 4 } else { 1 })
        .sum();
    if indent >= 4 {
        return None;
    }
    (body.trim() == TESTME).then_some(Command::TestMe)
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
    fn empty_does_not_trigger() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("   \n"), None);
    }
}
