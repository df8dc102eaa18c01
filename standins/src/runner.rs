//! Stand-in drone-runner-exec.
