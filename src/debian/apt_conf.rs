//! The host's apt configuration (`apt.conf(5)`), for `mirror: host`: where apt's
//! files are (`Dir`, `Dir::Etc`) and whether the host checks a Release's
//! `Valid-Until` (`Acquire::Check-Valid-Until`). A host that serves its packages from
//! a mirror it knows lags (a snapshot, a caching proxy) turns the check off for apt; a
//! `mirror: host` repository follows that choice, with a warning, as it follows the
//! host's choice of mirror. The caller reads the files.

/// The option that turns `Valid-Until` checking on or off, as apt names it (case
/// does not matter to apt).
pub const CHECK_VALID_UNTIL: &str = "Acquire::Check-Valid-Until";

/// The assignments of one apt.conf file, in order: each option's full name (its
/// scopes joined by `::`, so `Acquire { Retries "3"; };` is `Acquire::Retries`) and
/// value. Directives (`#include`, `#clear`) and list values are left out.
pub fn assignments(text: &str) -> Vec<(String, String)> {
    let mut scopes: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let tokens = tokens(text);
    let mut i = 0;
    while i < tokens.len() {
        match (&tokens[i], tokens.get(i + 1)) {
            (Token::Word(name), Some(Token::Open)) => {
                scopes.push(name.clone());
                i += 2;
            }
            (Token::Close, _) => {
                scopes.pop();
                i += 1;
            }
            (Token::Word(name), Some(Token::Quoted(v) | Token::Word(v)))
                if !name.starts_with('#') =>
            {
                let full = scopes
                    .iter()
                    .chain(std::iter::once(name))
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join("::");
                out.push((full, v.clone()));
                // `Dir "/" { Etc "etc/apt/"; };`: a value that also opens a scope.
                if tokens.get(i + 2) == Some(&Token::Open) {
                    scopes.push(name.clone());
                    i += 3;
                } else {
                    i += 2;
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// The last value `assignments` give `option` (case-insensitive, as apt reads names).
pub fn last<'a>(assignments: &'a [(String, String)], option: &str) -> Option<&'a str> {
    assignments
        .iter()
        .rev()
        .find(|(name, _)| name.eq_ignore_ascii_case(option))
        .map(|(_, value)| value.as_str())
}

/// apt's reading of a boolean option (`StringToBool`).
pub fn boolean(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "no" | "false" | "without" | "off" | "disable" => Some(false),
        "yes" | "true" | "with" | "on" | "enable" => Some(true),
        number => number.parse::<i64>().ok().map(|n| n != 0),
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
    End,
}

/// The tokens of apt.conf text, without comments (`//`, `#` lines other than
/// `#include` and `#clear`, and `/* ... */`).
fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut at_line_start = true;
    while let Some(c) = chars.next() {
        match c {
            '\n' => at_line_start = true,
            c if c.is_whitespace() => {}
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        at_line_start = true;
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '"' => {
                at_line_start = false;
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => value.push(c),
                        // Unterminated: apt refuses the file, so nothing of it counts
                        // from here on (least of all an option turned off).
                        None => return out,
                    }
                }
                out.push(Token::Quoted(value));
            }
            '{' => out.push(Token::Open),
            '}' => out.push(Token::Close),
            ';' => out.push(Token::End),
            c => {
                let mut word = String::from(c);
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || matches!(next, '{' | '}' | ';' | '"') {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                let directive = word == "#include" || word == "#clear";
                if c == '#' && at_line_start && !directive {
                    // A comment line.
                    for c in chars.by_ref() {
                        if c == '\n' {
                            break;
                        }
                    }
                    at_line_start = true;
                    continue;
                }
                at_line_start = false;
                out.push(Token::Word(word));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_comments_and_the_last_assignment_are_read_as_apt_reads_them() {
        let check = |text: &str| last(&assignments(text), CHECK_VALID_UNTIL).and_then(boolean);
        assert_eq!(
            check("Acquire::Check-Valid-Until \"false\";\n"),
            Some(false)
        );
        assert_eq!(
            check("acquire { check-valid-until \"0\"; Retries \"3\"; };"),
            Some(false)
        );
        assert_eq!(
            check(
                "// Acquire::Check-Valid-Until \"false\";\n# Acquire::Check-Valid-Until \"false\";\n/* Acquire::Check-Valid-Until \"false\"; */\nAcquire::Check-Date \"false\";\n"
            ),
            None
        );
        assert_eq!(
            check("Acquire::Check-Valid-Until \"false\";\nAcquire::Check-Valid-Until \"yes\";\n"),
            Some(true)
        );
        // Another option that ends alike, or the same name in another scope.
        assert_eq!(
            check("Acquire::http::Check-Valid-Until \"false\";\nAPT { Check-Valid-Until \"false\"; };"),
            None
        );
        assert_eq!(check("Acquire::Check-Valid-Until \"maybe\";"), None);
        // An unterminated value or comment sets nothing.
        for broken in [
            "Acquire { Check-Valid-Until \"no",
            "/* Acquire::Check-Valid-Until \"no\";",
            "}}} ;; {",
        ] {
            assert_eq!(check(broken), None, "{broken}");
        }
        assert_eq!(boolean("Off"), Some(false));
        assert_eq!(boolean("1"), Some(true));
        let nested =
            assignments("#include \"x.conf\";\nDir \"/srv/root/\" { Etc \"etc/apt/\"; };\n");
        assert_eq!(last(&nested, "dir"), Some("/srv/root/"));
        assert_eq!(last(&nested, "Dir::Etc"), Some("etc/apt/"));
    }
}
