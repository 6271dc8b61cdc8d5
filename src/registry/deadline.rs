//! Deadlines for network transfers, so that a server that accepts a connection and
//! then says nothing, or drips a byte now and then, cannot hold a command for long.
//!
//! Two kinds, both in [`Deadlines`]:
//! - the stall window: connecting, each wait for a read or write, and the wait for a
//!   response's headers each end after it; and a transfer that moves fewer than
//!   [`Deadlines::min_bytes`] in one window fails ([`MinRateReader`]);
//! - the overall budget ([`Budget`], `--timeout`): the time a command spends waiting
//!   on a registry (any request or download outstanding), added up over the command,
//!   and each request, body included, must end within what is left of it.
//!
//! The Debian fetcher uses the same stall window and [`MinRateReader`].

use std::io::{self, Read};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The per-request deadlines and the overall budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Longest wait for a connection, for any single read or write, and for a
    /// response's headers; and the window of the minimum transfer rate.
    pub stall: Duration,
    /// Fewest bytes a transfer must move in each `stall` window.
    pub min_bytes: u64,
    /// The most time a command may spend waiting on the registry (`--timeout`);
    /// `None`: no overall bound (the stall deadlines still apply).
    pub overall: Option<Duration>,
}

/// The default stall window: 30 s.
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);
/// The default minimum transfer: 1 KiB per stall window.
pub const DEFAULT_MIN_BYTES: u64 = 1024;

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            stall: DEFAULT_STALL,
            min_bytes: DEFAULT_MIN_BYTES,
            overall: None,
        }
    }
}

/// Which deadline ended a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// No connection within the stall window.
    Connect(Duration),
    /// The answer's headers were not complete within the stall window.
    NoAnswer(Duration),
    /// Nothing arrived for the stall window.
    NothingArrived(Duration),
    /// The server took none of the request for the stall window.
    NothingTaken(Duration),
    /// Fewer than `min_bytes` moved in a stall window.
    TooSlow { window: Duration, min_bytes: u64 },
    /// The command's overall budget (`--timeout`) ran out.
    Overall(Duration),
}

impl std::fmt::Display for Fired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fired::Connect(window) => write!(
                f,
                "no connection within {} (the stall deadline)",
                shown(*window)
            ),
            Fired::NoAnswer(window) => write!(
                f,
                "no complete answer within {} (the stall deadline)",
                shown(*window)
            ),
            Fired::NothingArrived(window) => write!(
                f,
                "nothing arrived for {} (the stall deadline)",
                shown(*window)
            ),
            Fired::NothingTaken(window) => write!(
                f,
                "the server took nothing of the request for {} (the stall deadline)",
                shown(*window)
            ),
            Fired::TooSlow { window, min_bytes } => write!(
                f,
                "fewer than {min_bytes} bytes moved in {} (the stall deadline)",
                shown(*window)
            ),
            Fired::Overall(limit) => write!(
                f,
                "the command's overall deadline ran out (--timeout {})",
                shown(*limit)
            ),
        }
    }
}

impl Fired {
    /// How to give the registry more time.
    pub fn hint(&self) -> String {
        match self {
            Fired::Overall(limit) => format!(
                "raise the overall deadline with --timeout (now {}; e.g. --timeout 30m)",
                shown(*limit)
            ),
            _ => "check that the registry is up and reachable; for a slow link or a slow \
                 registry, raise the stall deadline with --stall-timeout (e.g. --stall-timeout 2m)"
                .to_string(),
        }
    }
}

/// `30s`, `10m`, `1h30m`, or `1.5s`: how a duration is written in flags and messages.
pub fn shown(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() != 0 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// Parses `500ms`, `30s`, `10m`, `2h`, or a combination such as `1m30s`; a bare
/// number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration: write e.g. 30s, 10m, 1h or 1m30s");
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        total = u32::try_from(value)
            .ok()
            .and_then(|v| unit.checked_mul(v))
            .and_then(|d| total.checked_add(d))
            .ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// The overall budget of one command: the wall-clock time during which at least one
/// request was outstanding (concurrent requests count once), against a limit. Time
/// the command spends on other work (building layers) does not count.
#[derive(Debug)]
pub struct Budget {
    limit: Option<Duration>,
    state: Mutex<BudgetState>,
}

#[derive(Debug, Default)]
struct BudgetState {
    spent: Duration,
    in_flight: u32,
    busy_since: Option<Instant>,
}

impl Budget {
    pub fn new(limit: Option<Duration>) -> Budget {
        Budget {
            limit,
            state: Mutex::new(BudgetState::default()),
        }
    }

    /// What is left of the budget (`None`: unbounded); zero once it ran out.
    pub fn remaining(&self) -> Option<Duration> {
        let limit = self.limit?;
        let state = self.state.lock().expect("budget lock");
        let busy = state.busy_since.map_or(Duration::ZERO, |t| t.elapsed());
        Some(limit.saturating_sub(state.spent + busy))
    }

    /// The limit, if any.
    pub fn limit(&self) -> Option<Duration> {
        self.limit
    }

    /// Counts the time until the returned guard is dropped.
    pub fn busy(&self) -> BusyGuard<'_> {
        let mut state = self.state.lock().expect("budget lock");
        if state.in_flight == 0 {
            state.busy_since = Some(Instant::now());
        }
        state.in_flight += 1;
        BusyGuard { budget: self }
    }
}

/// Time counted against a [`Budget`] while it lives.
pub struct BusyGuard<'a> {
    budget: &'a Budget,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.budget.state.lock().expect("budget lock");
        state.in_flight -= 1;
        if state.in_flight == 0 {
            if let Some(since) = state.busy_since.take() {
                state.spent += since.elapsed();
            }
        }
    }
}

/// The error a [`MinRateReader`] fails with (inside an `io::Error` of kind
/// `TimedOut`).
#[derive(Debug, thiserror::Error)]
#[error("fewer than {min_bytes} bytes in {}", shown(*window))]
pub struct Stalled {
    pub window: Duration,
    pub min_bytes: u64,
}

/// Fails a transfer that moves fewer than `min_bytes` in a `window`: a server that
/// drips a byte now and then passes every per-read deadline, but not this.
pub struct MinRateReader<R> {
    inner: R,
    window: Duration,
    min_bytes: u64,
    window_start: Instant,
    in_window: u64,
}

impl<R> MinRateReader<R> {
    pub fn new(inner: R, deadlines: &Deadlines) -> Self {
        MinRateReader {
            inner,
            window: deadlines.stall,
            min_bytes: deadlines.min_bytes,
            window_start: Instant::now(),
            in_window: 0,
        }
    }
}

impl<R: Read> Read for MinRateReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Ok(0);
        }
        self.in_window += n as u64;
        if self.window_start.elapsed() >= self.window {
            if self.in_window < self.min_bytes {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    Stalled {
                        window: self.window,
                        min_bytes: self.min_bytes,
                    },
                ));
            }
            self.window_start = Instant::now();
            self.in_window = 0;
        }
        Ok(n)
    }
}

/// The deadline behind a failed request or transfer, if one ended it. `overall` is
/// the `--timeout` limit, named in the answer.
pub fn fired(error: &ureq::Error, deadlines: &Deadlines) -> Option<Fired> {
    use ureq::Timeout;
    let window = deadlines.stall;
    match error {
        ureq::Error::Timeout(Timeout::Global) => {
            Some(Fired::Overall(deadlines.overall.unwrap_or_default()))
        }
        ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => Some(Fired::Connect(window)),
        ureq::Error::Timeout(Timeout::RecvResponse) => Some(Fired::NoAnswer(window)),
        ureq::Error::Timeout(Timeout::PerWrite | Timeout::SendRequest | Timeout::SendBody) => {
            Some(Fired::NothingTaken(window))
        }
        ureq::Error::Timeout(_) => Some(Fired::NothingArrived(window)),
        ureq::Error::Io(io) => fired_io(io, deadlines),
        _ => None,
    }
}

/// [`fired`] for an I/O error from reading a body (which wraps ureq's own errors).
pub fn fired_io(error: &io::Error, deadlines: &Deadlines) -> Option<Fired> {
    let inner = error.get_ref()?;
    if let Some(stalled) = inner.downcast_ref::<Stalled>() {
        return Some(Fired::TooSlow {
            window: stalled.window,
            min_bytes: stalled.min_bytes,
        });
    }
    fired(inner.downcast_ref::<ureq::Error>()?, deadlines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_written_in_flags() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        for bad in ["", "s", "3x", "1.5s", "-3s"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("30s, 10m"), "{bad}: {e}");
        }
        assert_eq!(shown(Duration::from_secs(90)), "1m30s");
        assert_eq!(shown(Duration::from_secs(600)), "10m");
    }

    /// A reader that hands out one byte per call, each after a pause.
    struct Drip(Duration);
    impl Read for Drip {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(self.0);
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn a_drip_fails_the_minimum_rate_and_a_steady_stream_does_not() {
        let deadlines = Deadlines {
            stall: Duration::from_millis(50),
            min_bytes: 1024,
            overall: None,
        };
        let mut drip = MinRateReader::new(Drip(Duration::from_millis(10)), &deadlines);
        let e = io::copy(&mut drip, &mut io::sink()).unwrap_err();
        assert_eq!(
            fired_io(&e, &deadlines),
            Some(Fired::TooSlow {
                window: Duration::from_millis(50),
                min_bytes: 1024
            })
        );
        let mut steady = MinRateReader::new(io::repeat(b'x').take(10 << 20), &deadlines);
        assert_eq!(io::copy(&mut steady, &mut io::sink()).unwrap(), 10 << 20);
    }

    #[test]
    fn the_budget_counts_only_time_with_a_request_outstanding() {
        let budget = Budget::new(Some(Duration::from_secs(3600)));
        let before = budget.remaining().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(budget.remaining().unwrap(), before, "idle time counted");
        {
            let _a = budget.busy();
            let _b = budget.busy();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(before - budget.remaining().unwrap() >= Duration::from_millis(20));
        assert_eq!(Budget::new(None).remaining(), None);
    }
}
