//! Licenses from a package's machine-readable `/usr/share/doc/<pkg>/copyright`
//! (DEP-5, "copyright-format 1.0"), as an SPDX license expression for the SBOM.
//! Files that are not machine-readable give no license (the SBOM says NOASSERTION).

/// The SPDX expression for the licenses the `Files:` paragraphs name (joined with
/// `AND`, each paragraph's own `or`/`and` kept), or `None` when the file is not DEP-5.
pub fn license_expression(copyright: &str) -> Option<String> {
    let first = copyright.lines().next()?;
    if !(first.starts_with("Format:") && first.contains("copyright-format")) {
        return None;
    }
    let doc: deb822_fast::Deb822 = copyright.parse().ok()?;
    let mut parts: Vec<String> = Vec::new();
    for p in doc.iter().filter(|p| p.get("Files").is_some()) {
        let Some(short) = p.get("License").and_then(|l| l.lines().next()) else {
            continue;
        };
        if let Some(expr) = expression(short) {
            if !parts.contains(&expr) {
                parts.push(expr);
            }
        }
    }
    parts.sort();
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(
            parts
                .iter()
                .map(|p| {
                    if p.contains(' ') {
                        format!("({p})")
                    } else {
                        p.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" AND "),
        ),
    }
}

/// One `License:` short name (`GPL-2+ or Artistic`, `BSD-3-clause`) in SPDX terms.
fn expression(short: &str) -> Option<String> {
    let words: Vec<String> = short
        .replace(',', " ")
        .split_whitespace()
        .map(|w| match w.to_ascii_lowercase().as_str() {
            "or" => "OR".to_string(),
            "and" => "AND".to_string(),
            _ => spdx_id(w),
        })
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Debian's short license names (copyright-format 1.0, "License specification") as
/// SPDX identifiers; others become `LicenseRef-<name>`.
fn spdx_id(debian: &str) -> String {
    let (base, or_later) = match debian.strip_suffix('+') {
        Some(b) => (b, true),
        None => (debian, false),
    };
    let gnu = |id: &str| format!("{id}{}", if or_later { "-or-later" } else { "-only" });
    let known = match base {
        "GPL-1" => gnu("GPL-1.0"),
        "GPL-2" => gnu("GPL-2.0"),
        "GPL-3" => gnu("GPL-3.0"),
        "LGPL-2" => gnu("LGPL-2.0"),
        "LGPL-2.1" => gnu("LGPL-2.1"),
        "LGPL-3" => gnu("LGPL-3.0"),
        "AGPL-3" => gnu("AGPL-3.0"),
        "GFDL-1.2" => gnu("GFDL-1.2"),
        "GFDL-1.3" => gnu("GFDL-1.3"),
        "Expat" | "MIT" => "MIT".into(),
        "Apache-2.0" | "Apache-2" => "Apache-2.0".into(),
        "BSD-2-clause" | "BSD-2-Clause" => "BSD-2-Clause".into(),
        "BSD-3-clause" | "BSD-3-Clause" => "BSD-3-Clause".into(),
        "BSD-4-clause" | "BSD-4-Clause" => "BSD-4-Clause".into(),
        "ISC" => "ISC".into(),
        "Zlib" => "Zlib".into(),
        "MPL-1.1" => "MPL-1.1".into(),
        "MPL-2.0" => "MPL-2.0".into(),
        "Artistic" | "Artistic-1.0" => "Artistic-1.0".into(),
        "Artistic-2.0" => "Artistic-2.0".into(),
        "CC0-1.0" | "CC0" => "CC0-1.0".into(),
        "OpenSSL" => "OpenSSL".into(),
        "Unicode-DFS-2016" => "Unicode-DFS-2016".into(),
        _ => String::new(),
    };
    if !known.is_empty() {
        return known;
    }
    let mut id = String::from("LicenseRef-");
    for c in debian.chars() {
        id.push(if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
            c
        } else {
            '-'
        });
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep5_files_paragraphs_become_one_spdx_expression() {
        let text = "Format: https://format.example.invalid/copyright-format/1.0/\nUpstream-Name: x\n\nFiles: *\nCopyright: 2020 A\nLicense: GPL-2+\n\nFiles: lib/*\nCopyright: 2020 B\nLicense: BSD-3-clause or Expat\n\nFiles: doc/*\nLicense: public-domain\n text here\n\nLicense: GPL-2+\n full text\n";
        assert_eq!(
            license_expression(text).as_deref(),
            Some("(BSD-3-Clause OR MIT) AND GPL-2.0-or-later AND LicenseRef-public-domain")
        );
        assert_eq!(license_expression("This is free software.\n"), None);
        let single = "Format: https://format.example.invalid/copyright-format/1.0/\n\nFiles: *\nLicense: MPL-2.0\n";
        assert_eq!(license_expression(single).as_deref(), Some("MPL-2.0"));
    }
}
