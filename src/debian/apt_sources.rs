//! The host's apt configuration, for `mirror: host`: which archive URLs serve which
//! suites. Reads the text of `sources.list`-style files (one-line `deb URI SUITE
//! COMPONENTS...`) and deb822 `.sources` files; the caller reads the files (library
//! code never looks at the host), so recipes name no mirror host at all.

/// One `deb` source of the host: an archive root URL and the suites it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSource {
    pub uri: String,
    pub suites: Vec<String>,
}

/// Parses one apt sources file. `deb822` is true for `*.sources` files. Only binary
/// (`deb`) entries that are enabled count; options (`[signed-by=...]`) are skipped.
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
        let rest = match rest.strip_prefix('[') {
            Some(options) => match options.split_once(']') {
                Some((_, after)) => after,
                None => continue,
            },
            None => rest,
        };
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push(HostSource {
                uri: uri.trim_end_matches('/').to_string(),
                suites: vec![suite.to_string()],
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
        for uri in words("URIs") {
            out.push(HostSource {
                uri: uri.trim_end_matches('/').to_string(),
                suites: words("Suites"),
            });
        }
    }
    out
}

/// The archive URL for `suite`: the first host source that serves it, else the first
/// host source that serves the suite's base name (`bookworm` for
/// `bookworm-updates`), else `None`.
pub fn mirror_for(sources: &[HostSource], suite: &str) -> Option<String> {
    let serves = |s: &str| sources.iter().find(|h| h.suites.iter().any(|x| x == s));
    let base = suite.split('-').next().unwrap_or(suite);
    serves(suite)
        .or_else(|| serves(base))
        .map(|h| h.uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_and_deb822_formats() {
        let list = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian/ bookworm main\ndeb-src http://src.invalid/debian bookworm main\ndeb http://other.invalid/x stable main # trailing\n";
        assert_eq!(
            parse(list, false),
            [
                HostSource {
                    uri: "http://mirror.invalid/debian".into(),
                    suites: vec!["bookworm".into()]
                },
                HostSource {
                    uri: "http://other.invalid/x".into(),
                    suites: vec!["stable".into()]
                },
            ]
        );
        let sources = "Types: deb\n# http://commented.invalid/\nURIs: http://a.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://b.invalid/debian-security\nSuites: bookworm-security\n\nTypes: deb\nEnabled: no\nURIs: http://c.invalid/\nSuites: trixie\n";
        let hosts = parse(sources, true);
        assert_eq!(hosts.len(), 2);
        assert_eq!(
            mirror_for(&hosts, "bookworm").as_deref(),
            Some("http://a.invalid/debian")
        );
        assert_eq!(
            mirror_for(&hosts, "bookworm-security").as_deref(),
            Some("http://b.invalid/debian-security")
        );
        assert_eq!(
            mirror_for(&hosts, "bookworm-backports").as_deref(),
            Some("http://a.invalid/debian")
        );
        assert_eq!(mirror_for(&hosts, "trixie"), None);
    }
}
