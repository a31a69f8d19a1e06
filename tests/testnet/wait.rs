//! Bounded waits and the runner's log lines.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

/// Why a scenario failed: what it expected and what it saw, in one line.
pub struct Failed(pub String);

// libtest prints a failed test's error with `Debug`: the message itself reads best.
impl fmt::Debug for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Failed {
    fn from(message: String) -> Self {
        Failed(message)
    }
}

/// How often a wait checks again.
const POLL: Duration = Duration::from_secs(2);

/// `[HH:MM:SS] message` on stdout, UTC, as the script's own lines.
pub fn log(message: impl fmt::Display) {
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    println!("[{}] {message}", &now[11..19]);
}

/// The current time as `2026-12-03T10:00:00Z` (heal-times.tsv).
pub fn utc_now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Checks every 2 s until `check` holds, for at most `limit`; logs how long it took.
/// `check` says what it saw when it does not hold, so that a timeout can tell.
pub async fn wait_for(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<(), String>,
) -> Result<Duration, Failed> {
    let start = Instant::now();
    loop {
        match check().await {
            Ok(()) => {
                let took = start.elapsed();
                log(format!("ok: {what} ({}s)", took.as_secs()));
                return Ok(took);
            }
            Err(seen) if start.elapsed() > limit => {
                let message = format!(
                    "timed out after {}s waiting for: {what}; last seen: {seen}",
                    limit.as_secs()
                );
                log(&message);
                return Err(Failed(message));
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Like [`wait_for`], for a wait whose timeout the scenario only notes and goes on from
/// (the script's `wait_for … || true`).
pub async fn wait_or_note(
    limit: Duration,
    what: &str,
    check: impl AsyncFnMut() -> Result<(), String>,
) {
    let _ = wait_for(limit, what, check).await;
}
