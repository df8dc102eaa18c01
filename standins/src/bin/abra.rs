//! Stand-in `abra` binary: named like the real CLI so a PATH holding it stands in for abra.
//! Everything lives in `standins::abra` (see its docs for commands and stand-in-only env vars).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(standins::abra::main(&args));
}
