//! Running abra, git and pytest: each in its own process group, output streamed line by line
//! through the redactor, bounded in time, and killed — with everything it started — when the
//! run is aborted.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::abort::{self, kill_group, SIGKILL, SIGTERM};
use crate::redact::Redactor;

/// One command to run.
pub struct Cmd {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Start from an empty environment (plus `env` and PATH): used for a recipe's own tests,
    /// which must not see any CI credential.
    pub clear_env: bool,
    pub cwd: Option<PathBuf>,
    pub timeout: Duration,
    /// Keep stdout instead of printing it (for machine output that holds secret values).
    pub capture: bool,
}

impl Cmd {
    pub fn new(program: impl Into<PathBuf>, args: &[&str]) -> Cmd {
        Cmd {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            clear_env: false,
            cwd: None,
            timeout: Duration::from_secs(600),
            capture: false,
        }
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Cmd {
        self.env.push((k.to_owned(), v.into()));
        self
    }

    pub fn envs<'a>(mut self, vars: impl IntoIterator<Item = (&'a String, &'a String)>) -> Cmd {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    pub fn cwd(mut self, dir: &Path) -> Cmd {
        self.cwd = Some(dir.to_owned());
        self
    }

    pub fn timeout(mut self, t: Duration) -> Cmd {
        self.timeout = t;
        self
    }

    pub fn capture(mut self) -> Cmd {
        self.capture = true;
        self
    }

    pub fn clear_env(mut self) -> Cmd {
        self.clear_env = true;
        self
    }

    fn display(&self) -> String {
        let name = self
            .program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::iter::once(name)
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub struct Output {
    /// Exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Captured stdout (only with `capture`), unredacted: the caller keeps it off the log.
    pub stdout: Vec<u8>,
    /// The last non-blank line it printed (stderr's, else stdout's), redacted.
    pub last_line: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Where everything printed goes: our stdout, which the runner streams to Drone's log.
fn emit(line: &[u8]) {
    let mut out = std::io::stdout().lock();
    if out.write_all(line).and_then(|_| out.flush()).is_err() {
        abort::trigger(abort::Reason::PipeClosed);
    }
}

/// A sink that hands complete, redacted lines to [`emit`].
/// Prints a child's (redacted) output, remembering its last non-blank line: what a failed
/// command said last is usually why, and goes into the stage's reason.
#[derive(Default)]
struct LogSink {
    line: Vec<u8>,
    last: Vec<u8>,
}

/// Of a last line, this much is kept.
const MAX_LAST_LINE: usize = 400;

impl LogSink {
    fn push(&mut self, part: &[u8]) {
        let room = MAX_LAST_LINE.saturating_sub(self.line.len());
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn end_line(&mut self) {
        if self.line.iter().any(|b| !b.is_ascii_whitespace()) {
            std::mem::swap(&mut self.last, &mut self.line);
        }
        self.line.clear();
    }

    fn last_line(mut self) -> String {
        self.end_line();
        String::from_utf8_lossy(&self.last).trim().to_owned()
    }
}

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        emit(buf);
        let mut parts = buf.split(|b| *b == b'\n');
        self.push(parts.next().unwrap_or_default());
        for part in parts {
            self.end_line();
            self.push(part);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Prints a line of our own through the redactor.
pub fn say(redactor: &Redactor, line: &str) {
    let mut l = redactor.redact(line.as_bytes());
    l.push(b'\n');
    emit(&l);
}

/// Wall time spent waiting on children and on the app, so a stage can report its own
/// overhead (what stage-runner itself costs, excluding abra, git, pytest and the app).
pub static OUTSIDE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn outside(since: Instant) {
    OUTSIDE_MS.fetch_add(
        since.elapsed().as_millis() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// Children currently running, by process group, so an abort can end them all.
static GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Every process a run starts, and everything those start, carries this variable with the
/// run's directory: a stage-runner killed outright (SIGKILL, an OOM kill) leaves its children
/// running, and the next stage of the run or the janitor finds them by it ([`reap`]). The
/// directory, not the id: build numbers repeat across Drone instances and test worlds.
pub const RUN_MARK: &str = "CCCI_RUN_PROCESS";

/// The run this process works for; children are marked with it.
static RUN: Mutex<String> = Mutex::new(String::new());

pub fn mark_run(run_dir: &Path) {
    *RUN.lock().unwrap() = run_dir.display().to_string();
}

/// Kills every process still marked as the run's in `run_dir` (not this one): what a killed
/// stage-runner left. Returns how many. Only processes this user may signal are seen.
pub fn reap(run_dir: &Path) -> usize {
    let want = format!("{RUN_MARK}={}", run_dir.display());
    let me = std::process::id();
    let mut n = 0;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(p.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()) {
            abort::kill_pid(pid, SIGKILL);
            n += 1;
        }
    }
    n
}

/// Ends every running child's process group: SIGTERM, a short grace, SIGKILL.
pub fn kill_all_children() {
    let groups: Vec<u32> = GROUPS.lock().unwrap().clone();
    for g in &groups {
        kill_group(*g, SIGTERM);
    }
    if !groups.is_empty() {
        std::thread::sleep(Duration::from_millis(500));
    }
    for g in &groups {
        kill_group(*g, SIGKILL);
    }
}

/// Copies a child's stream to the log through the redactor (or keeps it, unprinted); ends
/// with the last line printed.
fn pump(
    mut from: impl Read + Send + 'static,
    redactor: Redactor,
    keep: Option<Arc<Mutex<Vec<u8>>>>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut stream = redactor.stream(LogSink::default());
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => match &keep {
                    Some(k) => k.lock().unwrap().extend_from_slice(&buf[..n]),
                    None => {
                        let _ = stream.write_all(&buf[..n]);
                    }
                },
            }
        }
        stream.finish().map(LogSink::last_line).unwrap_or_default()
    })
}

/// Runs `cmd` to its end, the deadline, or an abort. Only a failure to start, a timeout or an
/// abort are errors; a non-zero exit is returned for the caller to judge.
pub fn run(cmd: Cmd, redactor: &Redactor) -> Result<Output> {
    use std::os::unix::process::CommandExt;
    if let Some(why) = abort::aborted() {
        bail!("not starting `{}`: {why}", cmd.display());
    }
    say(redactor, &format!("+ {}", cmd.display()));
    let mut c = Command::new(&cmd.program);
    c.args(&cmd.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if cmd.clear_env {
        c.env_clear();
        for k in ["PATH", "LANG", "TZ"] {
            if let Some(v) = std::env::var_os(k) {
                c.env(k, v);
            }
        }
    }
    c.envs(cmd.env.iter().map(|(k, v)| (k, v)));
    let run = RUN.lock().unwrap().clone();
    if !run.is_empty() {
        c.env(RUN_MARK, run);
    }
    if let Some(d) = &cmd.cwd {
        c.current_dir(d);
    }
    let mut child: Child = c
        .spawn()
        .with_context(|| format!("starting {}", cmd.program.display()))?;
    let pgid = child.id();
    GROUPS.lock().unwrap().push(pgid);
    let kept = cmd.capture.then(|| Arc::new(Mutex::new(Vec::new())));
    let out = pump(
        child.stdout.take().expect("piped"),
        redactor.clone(),
        kept.clone(),
    );
    let err = pump(child.stderr.take().expect("piped"), redactor.clone(), None);
    let deadline = Instant::now() + cmd.timeout;
    let spawned = Instant::now();
    let result = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status.code()),
            Ok(None) => {}
            Err(e) => break Err(anyhow!("waiting for `{}`: {e}", cmd.display())),
        }
        if let Some(why) = abort::aborted() {
            break Err(anyhow!("`{}` stopped: {why}", cmd.display()));
        }
        if Instant::now() >= deadline {
            break Err(anyhow!(
                "`{}` timed out after {} s",
                cmd.display(),
                cmd.timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    // Whatever happened, nothing the child started outlives it.
    kill_group(pgid, SIGTERM);
    if result.is_err() {
        std::thread::sleep(Duration::from_millis(300));
    }
    kill_group(pgid, SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
    GROUPS.lock().unwrap().retain(|g| *g != pgid);
    // A process in another group may still hold the pipes; wait a little, then let go.
    let until = Instant::now() + Duration::from_secs(2);
    let mut last_line = String::new();
    for h in [err, out] {
        while !h.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if h.is_finished() {
            let line = h.join().unwrap_or_default();
            if last_line.is_empty() {
                last_line = line;
            }
        }
    }
    outside(spawned);
    let code = result?;
    let stdout = kept
        .map(|k| std::mem::take(&mut *k.lock().unwrap()))
        .unwrap_or_default();
    Ok(Output {
        code,
        stdout,
        last_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last(chunks: &[&str]) -> String {
        let mut sink = LogSink::default();
        for c in chunks {
            sink.write_all(c.as_bytes()).unwrap();
        }
        sink.last_line()
    }

    #[test]
    fn the_last_non_blank_line_survives_any_split() {
        assert_eq!(
            last(&["a\nFATA deploy", " failed\n", "\n  \n"]),
            "FATA deploy failed"
        );
        assert_eq!(last(&["one\ntwo"]), "two");
        assert_eq!(last(&["", "\n"]), "");
        let long = "x".repeat(3 * MAX_LAST_LINE);
        assert_eq!(last(&[&long, "\n"]).len(), MAX_LAST_LINE);
    }
}
