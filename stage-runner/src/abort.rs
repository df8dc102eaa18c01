//! Noticing that this run is over for us, so the stage can tear down and exit.
//!
//! Drone cancels or times out a stage by SIGKILL of the step's `/bin/sh` only
//! (drone-runner-exec engine/exec.go: `cmd.Process.Kill()`); we are that shell's child and get
//! no signal at all. What we do see: our parent is gone (we are re-parented), and our stdout —
//! the pipe to the runner — may close. SIGTERM and SIGINT (an operator, systemd) mean the same.
#![allow(unsafe_code)] // sigaction, killpg: no std API exists for them.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ABORTED: AtomicBool = AtomicBool::new(false);
static REASON: AtomicU8 = AtomicU8::new(0);

/// When the run's deadline passes ([`set_deadline`]); taken when it fires, so the teardown
/// that follows is not aborted by it again.
static DEADLINE: Mutex<Option<Instant>> = Mutex::new(None);

const REASONS: [&str; 5] = [
    "",
    "SIGTERM or SIGINT received",
    "the step's shell was killed (parent process gone)",
    "the log pipe closed",
    "the run's deadline passed",
];

#[derive(Clone, Copy, Debug)]
pub enum Reason {
    Signal = 1,
    ParentGone = 2,
    PipeClosed = 3,
    Deadline = 4,
}

extern "C" fn on_signal(_: libc::c_int) {
    // Only async-signal-safe work here: two atomic stores.
    REASON.store(Reason::Signal as u8, Ordering::SeqCst);
    ABORTED.store(true, Ordering::SeqCst);
}

/// Installs the signal handlers and the parent watch. Call once, first thing.
pub fn install() {
    // SAFETY: `on_signal` only stores to atomics, which is async-signal-safe; the sigaction
    // struct is zeroed and then filled as sigaction(2) documents.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
        // A closed log pipe must be an error on write, not a silent death mid-teardown.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let parent = std::os::unix::process::parent_id();
    std::thread::Builder::new()
        .name("parent-watch".into())
        .spawn(move || loop {
            if std::os::unix::process::parent_id() != parent {
                trigger(Reason::ParentGone);
                return;
            }
            let due = {
                let mut d = DEADLINE.lock().unwrap();
                let due = d.is_some_and(|at| Instant::now() >= at);
                if due {
                    *d = None;
                }
                due
            };
            if due {
                trigger(Reason::Deadline);
            }
            std::thread::sleep(Duration::from_millis(200));
        })
        .expect("spawning the parent watch");
}

pub fn trigger(reason: Reason) {
    if !ABORTED.swap(true, Ordering::SeqCst) {
        REASON.store(reason as u8, Ordering::SeqCst);
    }
}

/// Aborts the stage (as a signal would) once `at` has passed, unless it ends first.
pub fn set_deadline(at: Instant) {
    *DEADLINE.lock().unwrap() = Some(at);
}

/// Whether the abort under way is the run's deadline.
pub fn deadline_passed() -> bool {
    ABORTED.load(Ordering::SeqCst) && REASON.load(Ordering::SeqCst) == Reason::Deadline as u8
}

/// Lets the teardown that follows an abort run its commands (each still time-bounded). A new
/// signal during it aborts again, and the janitor finishes the job.
pub fn clear_for_teardown() {
    ABORTED.store(false, Ordering::SeqCst);
}

/// Why the run is being aborted, if it is.
pub fn aborted() -> Option<&'static str> {
    ABORTED
        .load(Ordering::SeqCst)
        .then(|| REASONS[REASON.load(Ordering::SeqCst) as usize % REASONS.len()])
}

/// Signals a whole process group (a child we started with its own group, and everything
/// it started: abra, pytest, Chromium).
pub fn kill_group(pgid: u32, sig: libc::c_int) {
    if pgid > 1 {
        // SAFETY: killpg takes plain integers; a stale pgid yields ESRCH, which is fine.
        unsafe {
            libc::killpg(pgid as libc::pid_t, sig);
        }
    }
}

/// Signals one process.
pub fn kill_pid(pid: u32, sig: libc::c_int) {
    if pid > 1 {
        // SAFETY: kill takes plain integers; a gone pid yields ESRCH, which is fine.
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}

pub use libc::{SIGKILL, SIGTERM};
