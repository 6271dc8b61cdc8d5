//! Debian version numbers and their ordering, as Debian Policy 5.6.12 defines it
//! (`[epoch:]upstream_version[-debian_revision]`), and version relations
//! (`<<`, `<=`, `=`, `>=`, `>>`) as used in `Depends` and `Provides`.

use std::cmp::Ordering;
use std::fmt;

/// A parsed version. Compared per Policy 5.6.12; `Eq` is that ordering's equality, so
/// `1.0` and `0:1.0` are equal.
/// One allocation per version: a full archive index has tens of thousands.
#[derive(Debug, Clone)]
pub struct Version {
    epoch: u64,
    /// The whole version as written.
    text: String,
    /// Where the upstream part and the revision (empty if none) lie in `text`.
    upstream: std::ops::Range<usize>,
    revision: std::ops::Range<usize>,
}

impl Version {
    /// Parses a version. As apt does, an upstream part that does not start with a
    /// digit is accepted, as long as the version is non-empty and has no spaces.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        if text.is_empty() || text.contains(char::is_whitespace) {
            return None;
        }
        let (epoch, start) = match text.split_once(':') {
            Some((e, _)) => (e.parse().ok()?, e.len() + 1),
            None => (0, 0),
        };
        let (upstream, revision) = match text[start..].rfind('-') {
            Some(dash) => (start..start + dash, start + dash + 1..text.len()),
            None => (start..text.len(), text.len()..text.len()),
        };
        if upstream.is_empty() {
            return None;
        }
        Some(Version {
            epoch,
            text: text.to_string(),
            upstream,
            revision,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| {
                compare_part(
                    &self.text[self.upstream.clone()],
                    &other.text[other.upstream.clone()],
                )
            })
            .then_with(|| {
                compare_part(
                    &self.text[self.revision.clone()],
                    &other.text[other.revision.clone()],
                )
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

/// The weight of a character in the non-digit parts: `~` sorts before everything,
/// even the end of the part; letters before non-letters.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// Policy 5.6.12: alternate non-digit strings (compared by [`order`]) and digit
/// strings (compared numerically) from the left.
fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // Non-digit prefix.
        loop {
            let (ca, cb) = (a.first().copied(), b.first().copied());
            let a_done = ca.is_none_or(|c| c.is_ascii_digit());
            let b_done = cb.is_none_or(|c| c.is_ascii_digit());
            if a_done && b_done {
                break;
            }
            let (oa, ob) = (
                if a_done { 0 } else { order(ca) },
                if b_done { 0 } else { order(cb) },
            );
            if oa != ob {
                return oa.cmp(&ob);
            }
            a = &a[1..];
            b = &b[1..];
        }
        // Digit prefix, compared as numbers of any length.
        let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let (na, nb) = (trim_zeros(&a[..da]), trim_zeros(&b[..db]));
        let by_number = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
        if by_number != Ordering::Equal {
            return by_number;
        }
        a = &a[da..];
        b = &b[db..];
    }
    Ordering::Equal
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

/// A version relation in a dependency or `Provides`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Earlier,
    EarlierOrEqual,
    Equal,
    LaterOrEqual,
    Later,
}

impl Relation {
    pub fn parse(op: &str) -> Option<Relation> {
        Some(match op {
            "<<" => Relation::Earlier,
            // `<` and `>` are obsolete spellings of `<=` and `>=` (Policy 7.1).
            "<=" | "<" => Relation::EarlierOrEqual,
            "=" => Relation::Equal,
            ">=" | ">" => Relation::LaterOrEqual,
            ">>" => Relation::Later,
            _ => return None,
        })
    }

    /// Whether `candidate` stands in this relation to `wanted`.
    pub fn holds(self, candidate: &Version, wanted: &Version) -> bool {
        let o = candidate.cmp(wanted);
        match self {
            Relation::Earlier => o == Ordering::Less,
            Relation::EarlierOrEqual => o != Ordering::Greater,
            Relation::Equal => o == Ordering::Equal,
            Relation::LaterOrEqual => o != Ordering::Less,
            Relation::Later => o == Ordering::Greater,
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Relation::Earlier => "<<",
            Relation::EarlierOrEqual => "<=",
            Relation::Equal => "=",
            Relation::LaterOrEqual => ">=",
            Relation::Later => ">>",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn ordering_follows_policy_5_6_12() {
        // Each pair: left < right. Vectors from Policy 5.6.12 and dpkg's test suite.
        let less = [
            ("1.0~rc1", "1.0"),
            ("1.0", "1.0a"),
            ("1.0a", "1.0+"),
            ("1.0", "1.0.1"),
            ("1.2", "1.10"),
            ("1.0-1", "1.0-2"),
            ("1.0-9", "1.0-10"),
            ("1.0-1", "1.0.1-0"),
            ("9:1.0", "10:0.1"),
            ("1:0.1", "2:0"),
            ("2.30-1", "1:2.0"),
            ("0.9", "0.10"),
            ("1.0+dfsg-1", "1.0+dfsg1-1"),
            ("1.35.0-4", "1:1.30.1-6"),
            ("1.0a", "1.0b"),
            ("1.0-1~bpo1", "1.0-1"),
            ("3.0.11-1~deb12u2", "3.0.11-1"),
            ("20230311", "20230311+deb12u1"),
        ];
        for (a, b) in less {
            let (va, vb) = (v(a), v(b));
            assert_eq!(va.cmp(&vb), Ordering::Less, "{a} < {b}");
            assert_eq!(vb.cmp(&va), Ordering::Greater, "{b} > {a}");
        }
        // The tilde rule on bare parts: `~~ < ~~a < ~ < (end)`.
        for (a, b) in [("~~", "~~a"), ("~~a", "~"), ("~", "")] {
            assert_eq!(compare_part(a, b), Ordering::Less, "{a} < {b}");
        }
        for (a, b) in [
            ("1.0", "0:1.0"),
            ("1.01", "1.1"),
            ("1.0-0", "1.0"),
            ("1.0-", "1.0"),
        ] {
            assert_eq!(v(a), v(b), "{a} = {b}");
        }
    }

    #[test]
    fn relations() {
        let (one, two) = (v("1.0"), v("2.0"));
        assert!(Relation::parse(">=").unwrap().holds(&two, &one));
        assert!(!Relation::parse("<<").unwrap().holds(&one, &one));
        assert!(Relation::parse("<=").unwrap().holds(&one, &one));
        assert!(Relation::parse(">>").unwrap().holds(&two, &one));
        assert!(Relation::parse("=").unwrap().holds(&v("0:1.0"), &one));
        assert_eq!(Relation::parse("<"), Some(Relation::EarlierOrEqual));
        assert_eq!(Relation::parse("!="), None);
    }

    #[test]
    fn parse_rejects_empty_and_spaces() {
        assert!(Version::parse("").is_none());
        assert!(Version::parse("1 0").is_none());
        assert!(Version::parse("x:1").is_none());
        assert_eq!(v("1:2.3-4").as_str(), "1:2.3-4");
    }
}
