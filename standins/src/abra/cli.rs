//! Command-line parsing the way abra's cobra/pflag does it: flags may come before, between or
//! after positional arguments, `--name=value`, `--name value`, `-x value`, `-xVALUE`, bundled
//! boolean shorthands (`-Cc`), and `--` ends flag parsing. Unknown flags are errors worded as
//! pflag words them (spf13/pflag flag.go `failf("unknown flag: --%s")`,
//! `"unknown shorthand flag: %q in -%s"`, `"flag needs an argument: %s"`).

use std::collections::BTreeMap;

/// One flag a command accepts.
#[derive(Clone, Copy, Debug)]
pub struct Flag {
    pub long: &'static str,
    pub short: Option<char>,
    /// `true`: takes a value; `false`: boolean.
    pub value: bool,
}

pub const fn flag(long: &'static str, short: Option<char>) -> Flag {
    Flag {
        long,
        short,
        value: false,
    }
}

pub const fn opt(long: &'static str, short: Option<char>) -> Flag {
    Flag {
        long,
        short,
        value: true,
    }
}

/// abra's persistent flags, accepted by every command (abra cli/cli.go root command):
/// `--debug/-d`, `--no-input/-n`, `--offline/-o`, and cobra's `--help/-h`.
pub const GLOBAL: &[Flag] = &[
    flag("debug", Some('d')),
    flag("no-input", Some('n')),
    flag("offline", Some('o')),
    flag("help", Some('h')),
];

/// The result of parsing: positionals (including everything after `--`), and flag values by
/// long name (booleans hold `"true"`/`"false"`).
#[derive(Debug, Default)]
pub struct Parsed {
    pub positional: Vec<String>,
    /// Arguments after a literal `--`, kept apart for `app run`.
    pub after_dashes: Vec<String>,
    pub flags: BTreeMap<&'static str, String>,
}

impl Parsed {
    pub fn on(&self, long: &str) -> bool {
        self.flags.get(long).is_some_and(|v| v == "true")
    }

    pub fn value(&self, long: &str) -> Option<&str> {
        self.flags.get(long).map(String::as_str)
    }
}

/// Parses `args` against `spec` plus [`GLOBAL`]. The error is pflag's message.
pub fn parse(args: &[String], spec: &[Flag]) -> Result<Parsed, String> {
    let all: Vec<Flag> = spec.iter().chain(GLOBAL.iter()).copied().collect();
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            out.after_dashes = args[i..].to_vec();
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (body, None),
            };
            let Some(f) = all.iter().find(|f| f.long == name) else {
                return Err(format!("unknown flag: --{name}"));
            };
            let v = if f.value {
                match inline {
                    Some(v) => v,
                    None if i < args.len() => {
                        i += 1;
                        args[i - 1].clone()
                    }
                    None => return Err(format!("flag needs an argument: --{name}")),
                }
            } else {
                match inline.as_deref() {
                    None | Some("true") | Some("1") => "true".to_owned(),
                    Some("false") | Some("0") => "false".to_owned(),
                    Some(other) => {
                        return Err(format!(
                            "invalid argument \"{other}\" for \"--{name}\" flag: strconv.ParseBool: parsing \"{other}\": invalid syntax"
                        ))
                    }
                }
            };
            out.flags.insert(f.long, v);
            continue;
        }
        if a.len() > 1 && a.starts_with('-') {
            let shorts: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < shorts.len() {
                let c = shorts[j];
                j += 1;
                let Some(f) = all.iter().find(|f| f.short == Some(c)) else {
                    return Err(format!("unknown shorthand flag: '{c}' in {a}"));
                };
                if f.value {
                    let rest: String = shorts[j..].iter().collect();
                    let rest = rest.strip_prefix('=').unwrap_or(&rest).to_owned();
                    let v = if !rest.is_empty() {
                        rest
                    } else if i < args.len() {
                        i += 1;
                        args[i - 1].clone()
                    } else {
                        return Err(format!("flag needs an argument: '{c}' in -{c}"));
                    };
                    out.flags.insert(f.long, v);
                    break;
                }
                out.flags.insert(f.long, "true".to_owned());
            }
            continue;
        }
        out.positional.push(a.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn interspersed_bundled_and_dashes() {
        let spec = [
            flag("chaos", Some('C')),
            flag("no-converge-checks", Some('c')),
            opt("server", None),
        ];
        let p = parse(
            &s(&["a.b", "-Cc", "--server=x", "v1", "--", "-z", "q"]),
            &spec,
        )
        .unwrap();
        assert_eq!(p.positional, s(&["a.b", "v1"]));
        assert!(p.on("chaos") && p.on("no-converge-checks"));
        assert_eq!(p.value("server"), Some("x"));
        assert_eq!(p.after_dashes, s(&["-z", "q"]));
        assert_eq!(
            parse(&s(&["--nope"]), &spec).unwrap_err(),
            "unknown flag: --nope"
        );
        assert_eq!(
            parse(&s(&["-z"]), &spec).unwrap_err(),
            "unknown shorthand flag: 'z' in -z"
        );
    }
}
