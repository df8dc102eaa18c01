//! Redactor throughput: 50 secrets (each in all its forms) over a 100 MB stream written in
//! 8 KiB pieces, as a child's output arrives. Goal: >= 200 MB/s. Run with
//! `cargo bench -p cc-ci-stage-runner --bench redact`.

use std::io::Write;
use std::time::Instant;

use stage_runner::redact::Redactor;

fn main() {
    let secrets: Vec<(String, String)> = (0..50)
        .map(|i| {
            (
                format!("secret_{i}"),
                format!("S3cr3t-{i:02}-{}", "x".repeat(20 + i % 7)),
            )
        })
        .collect();
    let r = Redactor::new(secrets.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    // Log-like lines, a secret in one line of 200.
    let mut line_no = 0usize;
    let mut chunk = Vec::new();
    while chunk.len() < 1 << 20 {
        line_no += 1;
        if line_no.is_multiple_of(200) {
            let (_, v) = &secrets[line_no % 50];
            writeln!(chunk, "step {line_no}: password={v} ok").unwrap();
        } else {
            writeln!(chunk, "step {line_no}: pulling layer sha256:0a1b2c3d4e5f deployed service app_{line_no} in 12ms").unwrap();
        }
    }
    let total: usize = 100 * 1024 * 1024;
    let mut sink = CountingSink(0);
    let start = Instant::now();
    {
        let mut s = r.stream(&mut sink);
        let mut sent = 0;
        while sent < total {
            for piece in chunk.chunks(8192) {
                s.write_all(piece).unwrap();
            }
            sent += chunk.len();
        }
        s.finish().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let mb = total as f64 / (1024.0 * 1024.0);
    println!(
        "redact: 50 secrets ({} patterns), {mb:.0} MB in {secs:.3} s = {:.0} MB/s (goal >= 200 MB/s); output {} bytes",
        secrets.len() * stage_runner::redact::forms(&secrets[0].1).len(),
        mb / secs,
        sink.0
    );
}

struct CountingSink(usize);

impl Write for CountingSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
