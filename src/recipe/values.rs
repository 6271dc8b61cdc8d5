//! Parsers for single recipe values (names, modes, owners, ports, ...), apart from
//! where they appear. Each returns the value or an [`Invalid`] saying what is wrong
//! and how to write it instead; the caller adds the position.

use super::model::{ImagePath, ImagePathError, Mode, Owner, Platform};
use crate::oci::compression::Compression;

/// What is wrong with one value, before we know where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Invalid {
    pub message: String,
    pub hint: Option<String>,
}

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Invalid {
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A size in bytes with an optional binary unit: `4096`, `64K`, `256M`, `8G`, `1T`,
/// or the same with `iB` (`8GiB`). `hint` says what the size is for.
pub(super) fn byte_size(s: &str, hint: &str) -> Result<u64, Invalid> {
    let number = s.strip_suffix("iB").unwrap_or(s);
    let (digits, unit) = match number.char_indices().last() {
        Some((i, 'K' | 'k')) => (&number[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&number[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&number[..i], 1 << 30),
        Some((i, 'T' | 't')) => (&number[..i], 1 << 40),
        _ => (number, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| Invalid::new(format!("`{s}` is not a size")).with_hint(hint))
}

/// The image name: `[a-z0-9]+([._-][a-z0-9]+)*`. It becomes a directory name and the
/// OCI `org.opencontainers.image.ref.name`, so it is kept to the safe subset of both.
pub(super) fn image_name(s: &str) -> Result<(), Invalid> {
    let ok = !s.is_empty()
        && s.split(['.', '_', '-'])
            .all(|part| !part.is_empty() && part.bytes().all(is_lower_alnum));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(format!("invalid image name `{s}`")).with_hint(
            "use lower-case letters and digits, separated by single `.`, `_` or `-` (e.g. `hello-world`)",
        ))
    }
}

/// `compression:` of the recipe or a layer: `gzip`, `zstd` or `none`.
pub(super) fn compression(s: &str) -> Result<Compression, Invalid> {
    match s {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        "none" => Ok(Compression::None),
        _ => {
            let mut hint = format!("write one of {}", list(Compression::NAMES));
            if let Some(name) = did_you_mean(s, Compression::NAMES) {
                hint = format!("did you mean `{name}`? {hint}");
            }
            Err(Invalid::new(format!("unknown compression `{s}`")).with_hint(hint))
        }
    }
}

/// A source or layer name: `[a-z0-9][a-z0-9._-]*`.
pub(super) fn item_name(what: &str, s: &str) -> Result<(), Invalid> {
    let mut bytes = s.bytes();
    let ok = bytes.next().is_some_and(is_lower_alnum)
        && bytes.all(|b| is_lower_alnum(b) || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(format!("invalid {what} name `{s}`")).with_hint(
            "start with a lower-case letter or digit, then use only `a-z`, `0-9`, `.`, `_` and `-`",
        ))
    }
}

/// A user or group name as it goes into `/etc/passwd` and `/etc/group`:
/// `[a-z_][a-z0-9_.-]*`, at most 32 characters.
pub(super) fn account_name(what: &str, s: &str) -> Result<(), Invalid> {
    let mut bytes = s.bytes();
    let ok = s.len() <= 32
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| is_lower_alnum(b) || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(format!("invalid {what} name `{s}`")).with_hint(
            "start with a lower-case letter or `_`, then use only `a-z`, `0-9`, `.`, `_` and `-` (at most 32 characters)",
        ))
    }
}

/// A free-text field of `/etc/passwd` (`shell`, `gecos`): one line, no `:` separator.
pub(super) fn passwd_field(field: &str, s: &str) -> Result<(), Invalid> {
    if s.contains([':', '\n', '\r', '\0']) {
        Err(Invalid::new(format!(
            "`{field}` must not contain `:`, a line break or NUL, found `{}`",
            s.escape_debug()
        ))
        .with_hint("these characters would break the `/etc/passwd` line"))
    } else {
        Ok(())
    }
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `os/arch[/variant]`, each part `[a-z0-9_]+`.
pub(super) fn platform(s: &str) -> Result<Platform, Invalid> {
    let parts: Vec<&str> = s.split('/').collect();
    let part_ok = |p: &&str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    if !(2..=3).contains(&parts.len()) || !parts.iter().all(part_ok) {
        return Err(Invalid::new(format!("invalid platform `{s}`")).with_hint(
            "write `os/arch` or `os/arch/variant` in lower case, e.g. `linux/amd64` or `linux/arm64/v8`",
        ));
    }
    Ok(Platform {
        os: parts[0].to_string(),
        architecture: parts[1].to_string(),
        variant: parts.get(2).map(|v| v.to_string()),
    })
}

const MODE_HINT: &str = "write 0o755 (YAML octal) or \"0755\"";

/// A permission mode. `written` is the scalar's text as YAML handed it over, `quoted`
/// whether it was a quoted string in the source. Accepted: `0o755` (YAML octal, plain),
/// and the strings `"0755"`, `"755"`, `"0o755"` (octal digits). A plain `755` or `0755`
/// is refused: YAML reads it as the decimal number 755, which is not what was meant.
pub(super) fn mode(written: &str, quoted: bool) -> Result<Mode, Invalid> {
    let digits = match (quoted, written.strip_prefix("0o")) {
        (_, Some(octal)) => octal,
        (true, None) => written,
        (false, None) if !written.is_empty() && written.bytes().all(|b| b.is_ascii_digit()) => {
            let message = if written.starts_with('0') && written.len() > 1 {
                format!("mode `{written}` has a leading zero, but YAML reads it as a decimal number, not octal")
            } else {
                format!("mode `{written}` is a decimal number to YAML, not an octal mode")
            };
            return Err(Invalid::new(message).with_hint(decimal_mode_hint(written)));
        }
        (false, None) => written,
    };
    let value = (!digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .ok_or_else(|| {
            Invalid::new(format!("mode `{written}` is not an octal number")).with_hint(MODE_HINT)
        })?;
    if value > 0o7777 {
        return Err(Invalid::new(format!(
            "mode `{written}` is larger than 0o7777 (permission, setuid, setgid and sticky bits)"
        ))
        .with_hint(MODE_HINT));
    }
    Ok(Mode(value))
}

/// The hint for a mode written as a plain decimal: the octal spelling of what was
/// most likely meant (`755` -> 0o755; `493`, not octal digits, is 0o755 in decimal).
fn decimal_mode_hint(written: &str) -> String {
    let digits = written.trim_start_matches('0');
    let octal = if digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        digits.to_string()
    } else {
        match written.parse::<u32>() {
            Ok(n) => format!("{n:o}"),
            Err(_) => return MODE_HINT.to_string(),
        }
    };
    if octal.is_empty() || octal.len() > 4 {
        return MODE_HINT.to_string();
    }
    format!("write 0o{octal} (YAML octal) or \"0{octal}\"")
}

/// `uid:gid`, both numeric (u32).
pub(super) fn owner(s: &str) -> Result<Owner, Invalid> {
    let hint = "write numeric ids as `uid:gid`, e.g. `0:0` or `65532:65532`";
    let (uid, gid) = s
        .split_once(':')
        .ok_or_else(|| Invalid::new(format!("owner `{s}` is not `uid:gid`")).with_hint(hint))?;
    let id = |part: &str, what: &str| {
        part.parse::<u32>().map_err(|_| {
            Invalid::new(format!(
                "owner `{s}`: {what} `{part}` is not a number from 0 to {}",
                u32::MAX
            ))
            .with_hint(hint)
        })
    };
    Ok(Owner {
        uid: id(uid, "uid")?,
        gid: id(gid, "gid")?,
    })
}

/// A path inside the image; `field` names the recipe field for the message.
pub(super) fn image_path(field: &str, s: &str) -> Result<ImagePath, Invalid> {
    ImagePath::parse(s).map_err(|err| {
        let hint = match err {
            ImagePathError::NotAbsolute => {
                format!("paths in the image start at its root: write `/{s}`")
            }
            ImagePathError::ParentComponent => {
                "write the path from the image root, without `..`".to_string()
            }
            ImagePathError::Nul => "remove the NUL byte".to_string(),
        };
        Invalid::new(format!("`{field}` path `{}` {err}", s.escape_debug())).with_hint(hint)
    })
}

/// An exposed port: `N`, `N/tcp`, `N/udp` or `N/sctp` with N in 1..=65535.
/// Returns the port and protocol, to be written as `N/proto`.
pub(super) fn port(s: &str) -> Result<(u16, &'static str), Invalid> {
    let hint = "write `PORT` or `PORT/PROTO` with PORT from 1 to 65535 and PROTO tcp, udp or sctp, e.g. `8080/tcp`";
    let (number, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let proto = match proto {
        "tcp" => "tcp",
        "udp" => "udp",
        "sctp" => "sctp",
        other => {
            return Err(Invalid::new(format!(
                "port `{s}`: unknown protocol `{other}`, expected tcp, udp or sctp"
            ))
            .with_hint(hint))
        }
    };
    match number.parse::<u16>() {
        Ok(n) if n > 0 && number.bytes().all(|b| b.is_ascii_digit()) => Ok((n, proto)),
        _ if number == s => {
            Err(Invalid::new(format!("`{s}` is not a port number from 1 to 65535")).with_hint(hint))
        }
        _ => Err(Invalid::new(format!(
            "port `{s}`: `{number}` is not a port number from 1 to 65535"
        ))
        .with_hint(hint)),
    }
}

/// Normalises ports to `N/proto`, sorted numerically then by protocol, without duplicates.
pub(super) fn normalise_ports(mut ports: Vec<(u16, &str)>) -> Vec<String> {
    ports.sort_unstable();
    ports.dedup();
    ports
        .into_iter()
        .map(|(n, proto)| format!("{n}/{proto}"))
        .collect()
}

/// An environment variable name: not empty, without `=` (which would end the name).
pub(super) fn env_name(key: &str) -> Result<(), Invalid> {
    if key.is_empty() || key.contains(['=', '\0']) {
        Err(
            Invalid::new(format!("invalid environment variable name `{key}`"))
                .with_hint("a variable name is not empty and contains no `=`, e.g. `PATH`"),
        )
    } else {
        Ok(())
    }
}

/// `SIG[A-Z0-9+-]+` (e.g. `SIGTERM`, `SIGRTMIN+3`) or a signal number.
pub(super) fn stop_signal(s: &str) -> Result<(), Invalid> {
    let named = s.strip_prefix("SIG").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'+' || b == b'-')
    });
    let numbered = s.parse::<u32>().is_ok_and(|n| n > 0);
    if named || numbered {
        Ok(())
    } else {
        Err(Invalid::new(format!("invalid stop signal `{s}`"))
            .with_hint("write a signal name such as `SIGTERM` or `SIGQUIT`, or its number"))
    }
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|&(distance, c)| distance <= (c.chars().count() / 3).max(1))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, c)| c)
}

/// `a, b, c` with each name in backticks.
pub(super) fn list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `value` is not one of the `known` words for `what`: the closest as a hint.
pub(super) fn unknown(what: &str, value: &str, known: &[&str]) -> Invalid {
    let invalid = Invalid::new(format!(
        "unknown {what} `{value}`; expected one of {}",
        list(known.iter().copied())
    ));
    match did_you_mean(value, known.iter().copied()) {
        Some(close) => invalid.with_hint(format!("did you mean `{close}`?")),
        None => invalid.with_hint(format!("write one of {}", list(known.iter().copied()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_accept_octal_spellings_and_refuse_decimal_ones() {
        assert_eq!(mode("0o755", false), Ok(Mode(0o755)));
        assert_eq!(mode("0755", true), Ok(Mode(0o755)));
        assert_eq!(mode("755", true), Ok(Mode(0o755)));
        assert_eq!(mode("0o1777", true), Ok(Mode(0o1777)));
        assert_eq!(mode("0o7777", false), Ok(Mode(0o7777)));
        for written in ["755", "493", "0755"] {
            let err = mode(written, false).unwrap_err();
            assert!(err.message.contains("decimal"), "{written}: {err:?}");
            assert_eq!(err.hint.as_deref(), Some(MODE_HINT));
        }
        let err = mode("01777", false).unwrap_err();
        assert_eq!(
            err.hint.as_deref(),
            Some("write 0o1777 (YAML octal) or \"01777\"")
        );
        assert!(mode("0o10000", false)
            .unwrap_err()
            .message
            .contains("0o7777"));
        assert!(mode("rwxr-xr-x", true).is_err());
        assert!(mode("0o", false).is_err());
        assert!(mode("", true).is_err());
        assert!(mode("0o99", false).is_err());
    }

    #[test]
    fn owners_are_numeric_uid_gid_pairs() {
        assert_eq!(owner("0:0"), Ok(Owner::ROOT));
        assert_eq!(
            owner("65532:1000"),
            Ok(Owner {
                uid: 65532,
                gid: 1000
            })
        );
        assert!(owner("0").is_err());
        assert!(owner("root:root").is_err());
        assert!(owner("1:-1").is_err());
        assert!(owner("4294967296:0").is_err());
        assert!(owner("0:0:0").is_err());
    }

    #[test]
    fn ports_normalise_to_number_and_protocol_sorted_and_deduplicated() {
        let parsed: Vec<_> = ["8080", "53/udp", "443/tcp", "8080/tcp", "53/tcp", "9/sctp"]
            .into_iter()
            .map(|p| port(p).unwrap())
            .collect();
        assert_eq!(
            normalise_ports(parsed),
            ["9/sctp", "53/tcp", "53/udp", "443/tcp", "8080/tcp"]
        );
        for bad in ["0", "65536", "80/http", "+80", "http", "80/", ""] {
            assert!(port(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn names_follow_their_grammars() {
        assert!(image_name("hello").is_ok());
        assert!(image_name("my.app_v2-x").is_ok());
        for bad in ["", "Hello", "a..b", "-a", "a-", "a/b", "a b"] {
            assert!(image_name(bad).is_err(), "{bad} accepted");
        }
        assert!(item_name("layer", "0base").is_ok());
        assert!(item_name("layer", "base-1.x_").is_ok());
        assert!(item_name("layer", "_base").is_err());
        assert!(item_name("layer", "Base").is_err());
        assert!(account_name("user", "_apt").is_ok());
        assert!(account_name("user", "0day").is_err());
        assert!(account_name("user", &"a".repeat(33)).is_err());
    }

    #[test]
    fn platforms_split_into_os_architecture_and_variant() {
        assert_eq!(
            platform("linux/arm64/v8"),
            Ok(Platform {
                os: "linux".into(),
                architecture: "arm64".into(),
                variant: Some("v8".into())
            })
        );
        assert_eq!(platform("linux/amd64").unwrap().variant, None);
        for bad in [
            "linux",
            "Linux/amd64",
            "linux//amd64",
            "a/b/c/d",
            "linux/amd64/",
        ] {
            assert!(platform(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn stop_signals_are_names_or_numbers() {
        for good in ["SIGTERM", "SIGRTMIN+3", "15"] {
            assert!(stop_signal(good).is_ok(), "{good} refused");
        }
        for bad in ["TERM", "SIG", "sigterm", "0", "-9"] {
            assert!(stop_signal(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn suggestions_only_for_close_names() {
        let fields = ["name", "layers", "sources", "config"];
        assert_eq!(did_you_mean("nmae", fields), Some("name"));
        assert_eq!(did_you_mean("layer", fields), Some("layers"));
        assert_eq!(did_you_mean("packages", fields), None);
    }
}
