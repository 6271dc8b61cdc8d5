//! Temporary files named after the process that writes them, `<pid>-<start time>-<n>`,
//! so that a later run can tell one left behind by a killed process from one still
//! being written, and remove only the first.

/// `<pid>-<start time>` of the running process `pid` (the start time in clock ticks
/// after boot, field 22 of `/proc/<pid>/stat`): names a process across pid reuse.
/// `None` if there is no such process.
pub fn process_tag(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let start = after_name.split_whitespace().nth(19)?;
    Some(format!("{pid}-{start}"))
}

/// The tag of this process; empty where `/proc` cannot tell it, and then no file is
/// ever taken for an orphan.
pub fn own_tag() -> String {
    process_tag(std::process::id()).unwrap_or_default()
}

/// Whether `name` (`<pid>-<start time>-<n>`) is a temporary file of a process that is
/// no longer running. A name of another shape is never an orphan.
pub fn is_orphan(name: &str) -> bool {
    let mut parts = name.splitn(3, '-');
    let (Some(pid), Some(start), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(pid) && digits(start) && digits(n)) || own_tag().is_empty() {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    process_tag(pid).is_none_or(|tag| tag != format!("{pid}-{start}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_name_of_a_process_that_is_gone_is_an_orphan() {
        let own = format!("{}-7", own_tag());
        assert!(!is_orphan(&own), "this process is running");
        let (pid, start) = own_tag()
            .split_once('-')
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .unwrap();
        // Same pid, another start time: the pid was reused, the writer is gone.
        let reused = format!("{pid}-{}-0", start.parse::<u64>().unwrap() + 1);
        assert!(is_orphan(&reused));
        // pid_max is at most 2^22: no process has this pid.
        assert!(is_orphan("4194305-1-0"));
        for odd in ["", "12", "12-3", "x-1-0", "1-y-0", "1-1-", ".cairn-tmp-abc"] {
            assert!(!is_orphan(odd), "{odd:?}");
        }
    }
}
