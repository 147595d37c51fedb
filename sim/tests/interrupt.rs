//! An interrupted sweep keeps what it found (issue 17): SIGINT or SIGTERM during `run` (with
//! `--shard`, `--out`, `--json`) and `hunt` stops handing out seeds, lets the seeds in flight
//! finish, reports the seeds that completed as INTERRUPTED (never as a pass) and exits 128 +
//! the signal. Each test spawns the real binary on a sweep far too long to finish, waits until
//! its progress lines say a few seeds are done (output, not time), then sends the signal.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("faultline-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A running `faultline` whose stderr lines arrive on a channel as they are written.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

fn spawn(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn faultline");
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Running {
        child,
        lines,
        seen: Vec::new(),
    }
}

/// Seeds done according to a progress line (`faultline: progress: X D/N seeds, ...`).
fn progress_done(line: &str) -> Option<u64> {
    let rest = line.strip_prefix(sim::progress::LINE_PREFIX)?;
    let counts = rest.split_whitespace().find(|w| w.contains('/'))?;
    counts.split('/').next()?.parse().ok()
}

impl Running {
    /// Blocks until a progress line says at least `n` seeds are done. Panics, with what was
    /// printed, if the process ends first.
    fn wait_for_seeds(&mut self, n: u64) -> u64 {
        loop {
            match self.lines.recv() {
                Ok(line) => {
                    let done = progress_done(&line);
                    self.seen.push(line);
                    if let Some(d) = done.filter(|d| *d >= n) {
                        return d;
                    }
                }
                Err(_) => panic!(
                    "faultline ended before {n} seeds were reported: {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Sends `sig`, waits for the exit and returns (exit code, stdout, stderr).
    fn signal_and_wait(mut self, sig: libc::c_int) -> (Option<i32>, String, String) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill");
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = self.child.wait().unwrap();
        self.seen.extend(self.lines.iter());
        (status.code(), out, self.seen.join("\n"))
    }
}

#[test]
fn sigint_during_a_sharded_json_run_writes_the_partial_report_and_exits_130() {
    let d = tmpdir("interrupt-json");
    let out_dir = d.to_str().unwrap();
    // The volatile-term scenario fails on most seeds: the partial report has failures.
    let mut run = spawn(&[
        "run",
        "simultaneous-restart-volatile-term",
        "--seeds",
        "100000",
        "--shard",
        "1/3",
        "--jobs",
        "2",
        "--progress",
        "--json",
        "--out",
        out_dir,
    ]);
    let reported = run.wait_for_seeds(3);
    let (code, stdout, stderr) = run.signal_and_wait(libc::SIGINT);
    assert_eq!(code, Some(130), "exit 128 + SIGINT: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(v["interrupted"], true, "{v}");
    let run_n = v["seeds_run"].as_u64().unwrap();
    assert!(
        run_n >= reported && run_n < 33_333,
        "{run_n} seeds run, {reported} reported"
    );
    // The seeds that completed: a prefix of shard 1/3's seeds 2, 5, 8, ...
    let c = &v["completed"][0];
    assert_eq!(c["signal"], "SIGINT");
    assert_eq!(c["shard"], 1);
    assert_eq!(c["planned"], 33_333);
    assert_eq!(c["seeds"], run_n);
    assert_eq!(
        (c["first_seed"].as_u64(), c["step"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(c["last_seed"].as_u64(), Some(2 + 3 * (run_n - 1)));
    assert_eq!(c["next_seed"].as_u64(), Some(2 + 3 * run_n));
    let failures = v["failures"].as_array().unwrap();
    assert!(!failures.is_empty(), "failures found so far are kept: {v}");
    for f in failures {
        let seed = f["seed"].as_u64().unwrap();
        assert!(seed % 3 == 2 && seed <= 2 + 3 * (run_n - 1), "{seed}");
        let replay = f["replay"].as_str().unwrap();
        assert_eq!(
            replay,
            format!(
                "faultline run simultaneous-restart-volatile-term --seed {seed} --bug volatile-raft-term"
            )
        );
        // Each failing seed was announced with its replay command as it was found.
        assert!(stderr.contains(&format!("seed {seed} FAILED")), "{stderr}");
    }
    // --out holds the same partial report and each failing seed's report.
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("simultaneous-restart-volatile-term-run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["interrupted"], true);
    assert_eq!(saved["seeds_run"], run_n);
    assert_eq!(saved["completed"], v["completed"]);
    for f in failures {
        let p = d.join(format!(
            "simultaneous-restart-volatile-term-seed-{}.json",
            f["seed"]
        ));
        assert!(p.is_file(), "{}", p.display());
    }
    // The partial report merges and replays like any other.
    let merged = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "merge",
            d.join("simultaneous-restart-volatile-term-run.json")
                .to_str()
                .unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&merged.stdout);
    assert!(text.contains("INTERRUPTED (SIGINT) after"), "{text}");
}

#[test]
fn sigint_during_a_text_run_prints_an_interrupted_summary_never_a_pass() {
    let mut run = spawn(&[
        "run",
        "steady",
        "--seeds",
        "100000",
        "--jobs",
        "2",
        "--progress",
    ]);
    run.wait_for_seeds(2);
    let (code, stdout, stderr) = run.signal_and_wait(libc::SIGINT);
    assert_eq!(code, Some(130), "{stdout}{stderr}");
    assert!(!stdout.contains("PASS"), "{stdout}");
    let verdict = stdout
        .lines()
        .find(|l| l.starts_with("INTERRUPTED (SIGINT) after "))
        .unwrap_or_else(|| panic!("an INTERRUPTED verdict: {stdout}"));
    assert!(
        verdict.contains("of 100000 seeds: none of them failed; the other"),
        "{verdict}"
    );
    // The header counts the seeds that completed; the resume command runs the rest.
    let n: u64 = stdout
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("seeds run in the header: {stdout}"));
    assert!(n >= 2, "{stdout}");
    let resume = format!(
        "resume: faultline run steady --seed {} --seeds {}",
        n + 1,
        100_000 - n
    );
    assert!(stdout.contains(&resume), "{resume} in {stdout}");
}

#[test]
fn sigterm_during_a_hunt_says_what_it_searched_and_exits_143() {
    // Without an address-packing failure the leak knob stays silent: the hunt finds nothing.
    let mut run = spawn(&[
        "hunt",
        "steady",
        "--bug",
        "bytes-total-leak",
        "--max-seeds",
        "100000",
        "--jobs",
        "2",
        "--progress",
    ]);
    run.wait_for_seeds(2);
    let (code, stdout, stderr) = run.signal_and_wait(libc::SIGTERM);
    assert_eq!(code, Some(143), "exit 128 + SIGTERM: {stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("INTERRUPTED (SIGTERM) after "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let n: u64 = line["INTERRUPTED (SIGTERM) after ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        line.contains(&format!("(seeds 1..={n}, ")) && line.contains("none failed"),
        "{line}"
    );
    assert!(
        stdout.contains(&format!(
            "resume: faultline hunt steady --bug bytes-total-leak --seed {} --max-seeds {}",
            n + 1,
            100_000 - n
        )),
        "{stdout}"
    );
}
