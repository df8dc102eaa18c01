//! `${VAR}` substitution over the `.drone.yml` text, with the rules of drone/envsubst v1.0.2
//! (the library the exec runner calls in `runtime/runner.go` `Run` before parsing the YAML).
//!
//! What matters to pipelines, all mirrored from drone/envsubst `parse/scan.go`, `parse/parse.go`,
//! `template.go` and `funcs.go`:
//! - only braced `${NAME}` is expanded; a bare `$NAME` is left for the shell;
//! - `$$` is an escape: it yields one `$` and the next character is taken literally, so
//!   `$${NAME}` becomes the text `${NAME}`;
//! - an unknown name expands to the empty string;
//! - `${NAME=w}`, `${NAME:=w}`, `${NAME:-w}`, `${NAME:?w}`, `${NAME:+w}` all behave as
//!   "use `w` when empty" (`lookupFunc` maps them all to `toDefault`);
//! - `${NAME-w}` and `${NAME+w}` are parse errors ("missing closing brace"): the parser only
//!   knows `-`/`+` after a colon;
//! - `${#NAME}`, `${NAME^}`, `${NAME^^}`, `${NAME,}`, `${NAME,,}`, `${NAME:off}`,
//!   `${NAME:off:len}`, `${NAME#p}`, `${NAME##p}`, `${NAME%p}`, `${NAME%%p}`, `${NAME/a/b}`,
//!   `${NAME//a/b}`, `${NAME/#a/b}`, `${NAME/%a/b}` as in `funcs.go`.

use std::fmt;

/// A parse error, worded as drone/envsubst words it (the runner reports it as the stage error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubstError(pub &'static str);

impl fmt::Display for SubstError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for SubstError {}

const BAD_SUBSTITUTION: SubstError = SubstError("bad substitution");
const MISSING_CLOSING_BRACE: SubstError = SubstError("missing closing brace");
const PARSE_VARIABLE_NAME: SubstError = SubstError("unable to parse variable name");
const PARSE_FUNC_SUBSTITUTION: SubstError =
    SubstError("unable to parse substitution within function");
const PARSE_DEFAULT_FUNCTION: SubstError = SubstError("unable to parse default function");

#[derive(Debug)]
enum Node {
    Text(String),
    Func {
        op: String,
        param: String,
        args: Vec<Node>,
    },
}

/// Expands `input` with `lookup` (which returns "" for unknown names).
pub fn eval(input: &str, lookup: &dyn Fn(&str) -> String) -> Result<String, SubstError> {
    let mut p = Parser {
        s: input.chars().collect(),
        pos: 0,
    };
    let nodes = p.parse_text()?;
    let mut out = String::with_capacity(input.len());
    for n in &nodes {
        out.push_str(&eval_node(n, lookup));
    }
    Ok(out)
}

fn eval_node(n: &Node, lookup: &dyn Fn(&str) -> String) -> String {
    match n {
        Node::Text(t) => t.clone(),
        Node::Func { op, param, args } => {
            let args: Vec<String> = args.iter().map(|a| eval_node(a, lookup)).collect();
            apply(op, &lookup(param), &args)
        }
    }
}

struct Parser {
    s: Vec<char>,
    pos: usize,
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.s.get(self.pos).copied()
    }

    fn peek_at(&self, off: usize) -> Option<char> {
        self.s.get(self.pos + off).copied()
    }

    fn at_lbrack(&self) -> bool {
        self.peek() == Some('$') && self.peek_at(1) == Some('{')
    }

    /// Top level: text with `$$` escapes, and `${…}` functions.
    fn parse_text(&mut self) -> Result<Vec<Node>, SubstError> {
        let mut nodes = Vec::new();
        let mut text = String::new();
        while let Some(c) = self.peek() {
            if self.at_lbrack() {
                if !text.is_empty() {
                    nodes.push(Node::Text(std::mem::take(&mut text)));
                }
                self.pos += 2;
                nodes.push(self.parse_func()?);
                continue;
            }
            if c == '$' && self.peek_at(1) == Some('$') {
                // `$$` drops one `$` and keeps the next character literally.
                text.push('$');
                self.pos += 2;
                continue;
            }
            text.push(c);
            self.pos += 1;
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text));
        }
        Ok(nodes)
    }

    fn expect_rbrack(&mut self) -> Result<(), SubstError> {
        if self.peek() == Some('}') {
            self.pos += 1;
            Ok(())
        } else {
            Err(BAD_SUBSTITUTION)
        }
    }

    /// After `${`.
    fn parse_func(&mut self) -> Result<Node, SubstError> {
        if self.peek() == Some('#') {
            self.pos += 1;
            let name = self.ident();
            if name.is_empty() {
                return Err(BAD_SUBSTITUTION);
            }
            self.expect_rbrack()?;
            return Ok(Node::Func {
                op: "#".into(),
                param: name,
                args: vec![],
            });
        }
        let name = self.ident();
        if name.is_empty() {
            return Err(PARSE_VARIABLE_NAME);
        }
        match self.peek() {
            Some(':') => match self.peek_at(1) {
                Some('=' | '-' | '?' | '+') => self.parse_default(name),
                _ => self.parse_substr(name),
            },
            Some('=') => self.parse_default(name),
            Some(',' | '^') => {
                let c = self.peek().unwrap_or(',');
                let mut op = String::new();
                while self.peek() == Some(c) && op.len() < 2 {
                    op.push(c);
                    self.pos += 1;
                }
                self.expect_rbrack()?;
                Ok(Node::Func {
                    op,
                    param: name,
                    args: vec![],
                })
            }
            Some('/') => self.parse_replace(name),
            Some(c @ ('#' | '%')) => {
                let mut op = String::from(c);
                self.pos += 1;
                if self.peek() == Some(c) {
                    op.push(c);
                    self.pos += 1;
                }
                let arg = self.param(|c| c != '}', false)?;
                self.expect_rbrack()?;
                Ok(Node::Func {
                    op,
                    param: name,
                    args: vec![arg],
                })
            }
            Some('}') => {
                self.pos += 1;
                Ok(Node::Func {
                    op: String::new(),
                    param: name,
                    args: vec![],
                })
            }
            _ => Err(MISSING_CLOSING_BRACE),
        }
    }

    fn ident(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| is_ident(*c)) {
            name.push(c);
            self.pos += 1;
        }
        name
    }

    /// One function argument: a nested `${…}`, or text while `accept` holds. `escapes`
    /// turns on `$$` → `$` and `\/`, `\\` (only the replace function's arguments have them).
    fn param(&mut self, accept: impl Fn(char) -> bool, escapes: bool) -> Result<Node, SubstError> {
        if self.at_lbrack() {
            self.pos += 2;
            return self.parse_func();
        }
        let mut text = String::new();
        while let Some(c) = self.peek() {
            if self.at_lbrack() {
                break;
            }
            if escapes {
                let next = self.peek_at(1);
                if (c == '$' && next == Some('$'))
                    || (c == '\\' && matches!(next, Some('/' | '\\')))
                {
                    text.push(next.unwrap_or(c));
                    self.pos += 2;
                    continue;
                }
            }
            if !accept(c) {
                break;
            }
            text.push(c);
            self.pos += 1;
        }
        if text.is_empty() && self.peek().is_none() {
            return Err(PARSE_FUNC_SUBSTITUTION);
        }
        Ok(Node::Text(text))
    }

    fn parse_default(&mut self, name: String) -> Result<Node, SubstError> {
        let mut op = String::new();
        if self.peek() == Some('=') {
            op.push('=');
            self.pos += 1;
        } else {
            // `:` then one of `=-?+`, checked by the caller.
            for _ in 0..2 {
                match self.peek() {
                    Some(c) => op.push(c),
                    None => return Err(PARSE_DEFAULT_FUNCTION),
                }
                self.pos += 1;
            }
        }
        let mut args = Vec::new();
        loop {
            match self.peek() {
                Some('}') => {
                    self.pos += 1;
                    break;
                }
                None => return Err(PARSE_FUNC_SUBSTITUTION),
                _ => args.push(self.param(|c| c != '}', false)?),
            }
        }
        Ok(Node::Func {
            op,
            param: name,
            args,
        })
    }

    fn parse_substr(&mut self, name: String) -> Result<Node, SubstError> {
        self.pos += 1; // the ':'
        let mut args = vec![self.param(|c| c != ':' && c != '}', false)?];
        match self.peek() {
            Some('}') => {
                self.pos += 1;
                return Ok(Node::Func {
                    op: ":".into(),
                    param: name,
                    args,
                });
            }
            Some(':') => self.pos += 1,
            _ => return Err(BAD_SUBSTITUTION),
        }
        args.push(self.param(|c| c != '}', false)?);
        self.expect_rbrack()?;
        Ok(Node::Func {
            op: ":".into(),
            param: name,
            args,
        })
    }

    fn parse_replace(&mut self, name: String) -> Result<Node, SubstError> {
        let mut op = String::from("/");
        self.pos += 1;
        if let Some(c @ ('/' | '#' | '%')) = self.peek() {
            op.push(c);
            self.pos += 1;
        }
        let mut args = vec![self.param(|c| c != '/', true)?];
        if self.peek() != Some('/') {
            return Err(BAD_SUBSTITUTION);
        }
        self.pos += 1;
        if self.peek() == Some('}') {
            self.pos += 1;
            return Ok(Node::Func {
                op,
                param: name,
                args,
            });
        }
        args.push(self.param(|c| c != '}', true)?);
        self.expect_rbrack()?;
        Ok(Node::Func {
            op,
            param: name,
            args,
        })
    }
}

fn apply(op: &str, v: &str, args: &[String]) -> String {
    match op {
        "," => {
            let mut c = v.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => String::new(),
            }
        }
        ",," => v.to_lowercase(),
        "^" => {
            let mut c = v.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        }
        "^^" => v.to_uppercase(),
        "#" if args.is_empty() => v.len().to_string(),
        "#" => trim_shortest(v, &args[0]),
        "##" => trim_longest(v, &args[0]),
        "%" => rev(&trim_shortest(&rev(v), &rev(&args[0]))),
        "%%" => rev(&trim_longest(&rev(v), &rev(&args[0]))),
        ":" => substr(v, args),
        "/" => match args {
            [] => v.to_owned(),
            [a] => v.replacen(a.as_str(), "", 1),
            [a, b, ..] => v.replacen(a.as_str(), b, 1),
        },
        "//" => match args {
            [] => v.to_owned(),
            [a] => v.replace(a.as_str(), ""),
            [a, b, ..] => v.replace(a.as_str(), b),
        },
        "/#" => match args {
            [a, b] if v.starts_with(a.as_str()) => v.replacen(a.as_str(), b, 1),
            _ => v.to_owned(),
        },
        "/%" => match args {
            [a, b] if v.ends_with(a.as_str()) => format!("{}{b}", &v[..v.len() - a.len()]),
            _ => v.to_owned(),
        },
        // Every default form, and the plain `${NAME}`.
        _ => {
            if v.is_empty() && !args.is_empty() {
                args.concat()
            } else {
                v.to_owned()
            }
        }
    }
}

fn rev(s: &str) -> String {
    s.chars().rev().collect()
}

fn substr(s: &str, args: &[String]) -> String {
    // Go slices bytes; keep to char boundaries so a multi-byte value cannot panic.
    let Some(Ok(mut pos)) = args.first().map(|a| a.trim().parse::<i64>()) else {
        return s.to_owned();
    };
    let len = s.len() as i64;
    if pos < 0 {
        pos = (len + pos).max(0);
    }
    let cut = |a: i64, b: i64| s.get(a as usize..b as usize).unwrap_or("").to_owned();
    if args.len() == 1 {
        return if pos < len {
            cut(pos, len)
        } else {
            String::new()
        };
    }
    let Ok(n) = args[1].trim().parse::<i64>() else {
        return s.to_owned();
    };
    if pos + n >= len {
        return if pos < len {
            cut(pos, len)
        } else {
            String::new()
        };
    }
    cut(pos, pos + n)
}

fn prefixes(s: &str) -> Vec<&str> {
    // Longest first, as `trimLongest` scans.
    let mut ends: Vec<usize> = s.char_indices().map(|(i, _)| i).skip(1).collect();
    ends.push(s.len());
    ends.reverse();
    ends.into_iter().map(|e| &s[..e]).collect()
}

fn trim_longest(s: &str, pat: &str) -> String {
    for p in prefixes(s) {
        if crate::runner::manifest::glob_match(pat, p, false) {
            return s[p.len()..].to_owned();
        }
    }
    s.to_owned()
}

fn trim_shortest(s: &str, pat: &str) -> String {
    let mut shortest = None;
    for p in prefixes(s) {
        if crate::runner::manifest::glob_match(pat, p, false) {
            shortest = Some(p.len());
        }
    }
    match shortest {
        Some(n) if n > 0 => s[n..].to_owned(),
        _ => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ev(input: &str, vars: &[(&str, &str)]) -> Result<String, SubstError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        eval(input, &|k: &str| m.get(k).cloned().unwrap_or_default())
    }

    // Cases from drone/envsubst eval_test.go (behaviour, re-expressed).
    #[test]
    fn follows_drone_envsubst() {
        let v = [("var01", "abcdEFGH28ij")];
        assert_eq!(ev("${#var01}", &v).unwrap(), "12");
        assert_eq!(ev("${var01^}", &v).unwrap(), "AbcdEFGH28ij");
        assert_eq!(ev("${var01^^}", &v).unwrap(), "ABCDEFGH28IJ");
        assert_eq!(ev("${var01,,}", &v).unwrap(), "abcdefgh28ij");
        assert_eq!(ev("$${var01}", &v).unwrap(), "${var01}");
        assert_eq!(
            ev("some text ${var01}$${var$${var01}$var01${var01}", &v).unwrap(),
            "some text abcdEFGH28ij${var${var01}$var01abcdEFGH28ij"
        );
        let p = [("path_name", "/home/bozo/ideas/thoughts.for.today")];
        assert_eq!(
            ev("${path_name:11}", &p).unwrap(),
            "ideas/thoughts.for.today"
        );
        assert_eq!(ev("${path_name:11:5}", &p).unwrap(), "ideas");
        assert_eq!(ev("${var=xyz}", &[]).unwrap(), "xyz");
        assert_eq!(ev("${var:-xyz}", &[]).unwrap(), "xyz");
        assert_eq!(ev("${var:-xyz}", &[("var", "abc")]).unwrap(), "abc");
        let d = [("default_var", "foo1")];
        assert_eq!(
            ev("foo: ${var=prefix${default_var}-suffix}", &d).unwrap(),
            "foo: prefixfoo1-suffix"
        );
        let f = [("filename", "bash.string.txt")];
        assert_eq!(ev("${filename#*.}", &f).unwrap(), "string.txt");
        assert_eq!(ev("${filename##*.}", &f).unwrap(), "txt");
        assert_eq!(ev("${filename%.*}", &f).unwrap(), "bash.string");
        assert_eq!(ev("${filename%%.*}", &f).unwrap(), "bash");
        let z = [("stringZ", "abcABC123ABCabc")];
        assert_eq!(ev("${stringZ/%abc/XYZ}", &z).unwrap(), "abcABC123ABCXYZ");
        assert_eq!(ev("${stringZ/#abc/XYZ}", &z).unwrap(), "XYZABC123ABCabc");
        assert_eq!(ev("${stringZ//abc/xyz}", &z).unwrap(), "xyzABC123ABCxyz");
        assert_eq!(
            ev(r"${stringZ//\//-}", &[("stringZ", "foo/bar/baz")]).unwrap(),
            "foo-bar-baz"
        );
        assert_eq!(
            ev("$HOME and $$ and ${UNKNOWN}.", &[]).unwrap(),
            "$HOME and $ and ."
        );
        assert_eq!(ev("${var-x}", &[]).unwrap_err(), MISSING_CLOSING_BRACE);
        assert_eq!(ev("${}", &[]).unwrap_err(), PARSE_VARIABLE_NAME);
    }
}
