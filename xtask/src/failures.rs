//! What failed, in short: read from libtest's output as it streams past, and printed
//! again after cargo's summary, where a reader of only the end of a long log (a CI
//! report keeps the first and last lines) sees why each test failed, not a backtrace.

/// Lines kept of one failure's message.
const LINES_PER_FAILURE: usize = 6;
/// Characters kept of one line.
const LINE_CHARS: usize = 240;

/// The failures seen so far: each test's name and its panic message.
#[derive(Default)]
pub struct Failures {
    failures: Vec<(String, Vec<String>)>,
    /// Inside a `---- NAME stdout ----` section, before its backtrace.
    in_message: bool,
}

impl Failures {
    /// Takes one line of libtest's output.
    pub fn line(&mut self, line: &str) {
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|rest| rest.strip_suffix(" stdout ----"))
        {
            self.failures.push((name.to_string(), Vec::new()));
            self.in_message = true;
        } else if line.starts_with("stack backtrace:")
            || line == "failures:"
            || line == "successes:"
        {
            self.in_message = false;
        } else if self.in_message {
            if let Some((_, message)) = self.failures.last_mut() {
                message.push(line.to_string());
            }
        }
    }

    /// The digest: each distinct message once, with the tests that met it. Empty when
    /// nothing failed.
    pub fn digest(&self) -> String {
        let mut groups: Vec<(Vec<&str>, Vec<String>)> = Vec::new();
        for (name, message) in &self.failures {
            let short = shorten(message);
            match groups.iter_mut().find(|(_, m)| *m == short) {
                Some((names, _)) => names.push(name),
                None => groups.push((vec![name], short)),
            }
        }
        let mut out = String::new();
        for (names, message) in groups {
            out.push_str(&format!("xtask: failed: {}\n", names.join(", ")));
            for line in message {
                out.push_str(&format!("    {line}\n"));
            }
        }
        out
    }
}

/// The lines of a panic message that say why: where it panicked, then, when the
/// message is a failed command's (`stderr:` follows its stdout), the command's
/// stderr, else the message's first lines; temporary directories blanked so that
/// tests that failed alike read alike.
fn shorten(message: &[String]) -> Vec<String> {
    let lines: Vec<&str> = message
        .iter()
        .map(String::as_str)
        .filter(|l| !l.trim().is_empty())
        .collect();
    // `thread 'NAME' (ID) panicked at FILE:LINE:COL:`, without the thread.
    let panicked = lines.iter().position(|l| l.contains(" panicked at "));
    let mut kept: Vec<&str> = panicked
        .map(|at| &lines[at][lines[at].find("panicked at ").unwrap_or(0)..])
        .into_iter()
        .collect();
    let body = match lines.iter().position(|l| *l == "stderr:") {
        Some(at) => &lines[at + 1..],
        None => &lines[panicked.map_or(0, |at| at + 1)..],
    };
    kept.extend(body.iter().copied());
    kept.into_iter()
        .take(LINES_PER_FAILURE)
        .map(|l| clip(&blank_temp_dirs(l)))
        .collect()
}

/// `line` with each `/tmp/.tmpXXXXXX` as `/tmp/.tmp…`.
fn blank_temp_dirs(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("/.tmp") {
        let (before, from) = rest.split_at(at + "/.tmp".len());
        out.push_str(before);
        out.push('…');
        rest = from.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    }
    out.push_str(rest);
    out
}

fn clip(line: &str) -> String {
    match line.char_indices().nth(LINE_CHARS) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
test a::one ... FAILED
test a::two ... FAILED
test a::three ... FAILED

failures:

---- a::one stdout ----

thread 'a::one' (23077) panicked at tests/it/x.rs:10:5:
\"cairn\" \"build\" \"/tmp/.tmpAb12Cd/r.yaml\" failed (exit status: 1):
stdout:

stderr:
error: cannot download its InRelease from http://mirror/dists/x/InRelease: host not found
  = help: check the mirror
stack backtrace:
   0: __rustc::rust_begin_unwind

---- a::two stdout ----

thread 'a::two' (23078) panicked at tests/it/x.rs:10:5:
\"cairn\" \"build\" \"/tmp/.tmpZz99Yy/r.yaml\" failed (exit status: 1):
stdout:

stderr:
error: cannot download its InRelease from http://mirror/dists/x/InRelease: host not found
  = help: check the mirror

---- a::three stdout ----

thread 'a::three' (23079) panicked at tests/it/y.rs:3:9:
assertion `left == right` failed
  left: 1
 right: 2

failures:
    a::one
    a::two
    a::three
";

    #[test]
    fn each_reason_is_shown_once_with_the_tests_that_met_it_without_backtraces() {
        let mut failures = Failures::default();
        for line in OUTPUT.lines() {
            failures.line(line);
        }
        assert_eq!(
            failures.digest(),
            "\
xtask: failed: a::one, a::two
    panicked at tests/it/x.rs:10:5:
    error: cannot download its InRelease from http://mirror/dists/x/InRelease: host not found
      = help: check the mirror
xtask: failed: a::three
    panicked at tests/it/y.rs:3:9:
    assertion `left == right` failed
      left: 1
     right: 2
"
        );
    }

    #[test]
    fn long_lines_are_clipped_and_temporary_directories_blanked() {
        assert_eq!(
            blank_temp_dirs("in /tmp/.tmpAb12Cd/out and /tmp/.tmpQ/x"),
            "in /tmp/.tmp…/out and /tmp/.tmp…/x"
        );
        let long = "é".repeat(300);
        assert_eq!(clip(&long).chars().count(), LINE_CHARS + 1);
        assert!(Failures::default().digest().is_empty());
    }
}
