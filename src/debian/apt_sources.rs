//! The host's apt configuration, for `mirror: host`: which archive URLs serve which
//! suites. Reads the text of `sources.list`-style files (one-line `deb URI SUITE
//! COMPONENTS...`) and deb822 `.sources` files; the caller reads the files (library
//! code never looks at the host), so recipes name no mirror host at all.

use super::apt_conf::boolean;

/// One `deb` source of the host: an archive root URL and the suites it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSource {
    pub uri: String,
    pub suites: Vec<String>,
    /// The source's own `Check-Valid-Until` option (`[check-valid-until=no]`), which
    /// overrides the host-wide `Acquire::Check-Valid-Until`.
    pub check_valid_until: Option<bool>,
}

/// Parses one apt sources file. `deb822` is true for `*.sources` files. Only binary
/// (`deb`) entries that are enabled count; of their options only `check-valid-until`
/// is read.
pub fn parse(text: &str, deb822: bool) -> Vec<HostSource> {
    if deb822 {
        parse_deb822(text)
    } else {
        parse_one_line(text)
    }
}

fn parse_one_line(text: &str) -> Vec<HostSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let rest = rest.trim_start();
        let (options, rest) = match rest.strip_prefix('[') {
            Some(options) => match options.split_once(']') {
                Some(split) => split,
                None => continue,
            },
            None => ("", rest),
        };
        let check_valid_until = options.split_whitespace().find_map(|option| {
            let (name, value) = option.split_once('=')?;
            name.eq_ignore_ascii_case("check-valid-until")
                .then(|| boolean(value))
                .flatten()
        });
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push(HostSource {
                uri: uri.trim_end_matches('/').to_string(),
                suites: vec![suite.to_string()],
                check_valid_until,
            });
        }
    }
    out
}

fn parse_deb822(text: &str) -> Vec<HostSource> {
    // Comment lines are dropped first: deb822 allows them anywhere.
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let Ok(doc) = text.parse::<deb822_fast::Deb822>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in doc.iter() {
        let words = |field: &str| -> Vec<String> {
            p.get(field)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        if !words("Types").iter().any(|t| t == "deb") || p.get("Enabled") == Some("no") {
            continue;
        }
        let check_valid_until = p.get("Check-Valid-Until").and_then(|v| boolean(v.trim()));
        for uri in words("URIs") {
            out.push(HostSource {
                uri: uri.trim_end_matches('/').to_string(),
                suites: words("Suites"),
                check_valid_until,
            });
        }
    }
    out
}

/// The host source for `suite`: the first that serves it, else the first that serves
/// the suite's base name (`bookworm` for `bookworm-updates`), else `None`.
pub fn mirror_for<'a>(sources: &'a [HostSource], suite: &str) -> Option<&'a HostSource> {
    let serves = |s: &str| sources.iter().find(|h| h.suites.iter().any(|x| x == s));
    let base = suite.split('-').next().unwrap_or(suite);
    serves(suite).or_else(|| serves(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_and_deb822_formats() {
        let list = "# comment\ndeb [arch=amd64 signed-by=/k.gpg check-valid-until=no] http://mirror.invalid/debian/ bookworm main\ndeb-src http://src.invalid/debian bookworm main\ndeb http://other.invalid/x stable main # trailing\n";
        assert_eq!(
            parse(list, false),
            [
                HostSource {
                    uri: "http://mirror.invalid/debian".into(),
                    suites: vec!["bookworm".into()],
                    check_valid_until: Some(false),
                },
                HostSource {
                    uri: "http://other.invalid/x".into(),
                    suites: vec!["stable".into()],
                    check_valid_until: None,
                },
            ]
        );
        let sources = "Types: deb\n# http://commented.invalid/\nURIs: http://a.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://b.invalid/debian-security\nSuites: bookworm-security\nCheck-Valid-Until: yes\n\nTypes: deb\nEnabled: no\nURIs: http://c.invalid/\nSuites: trixie\n";
        let hosts = parse(sources, true);
        assert_eq!(hosts.len(), 2);
        let uri = |suite| mirror_for(&hosts, suite).map(|h| h.uri.as_str());
        assert_eq!(uri("bookworm"), Some("http://a.invalid/debian"));
        assert_eq!(
            uri("bookworm-security"),
            Some("http://b.invalid/debian-security")
        );
        assert_eq!(uri("bookworm-backports"), Some("http://a.invalid/debian"));
        assert_eq!(uri("trixie"), None);
        assert_eq!(hosts[0].check_valid_until, None);
        assert_eq!(hosts[1].check_valid_until, Some(true));
    }
}
