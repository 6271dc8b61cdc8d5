//! A repository's `InRelease`: its OpenPGP cleartext signature is verified against
//! the recipe's keyring before a single field is read, and only the signed text is
//! parsed. Fails closed: no signature, a bad one, one by a key outside the keyring, or
//! a Release past its `Valid-Until` is an error.

use super::DebianError;
use crate::digest::Sha256Digest;
use crate::oci::time::{civil_from_days, days_from_civil};
use openpgp::cert::CertParser;
use openpgp::parse::stream::{
    MessageLayer, MessageStructure, VerificationError, VerificationHelper, VerifierBuilder,
};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::{Cert, KeyHandle};
use sequoia_openpgp as openpgp;
use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, UNIX_EPOCH};

/// The fields of a verified Release that cairn uses.
#[derive(Debug, Clone)]
pub struct Release {
    /// Fingerprint (upper-case hex) of the certificate whose key signed the InRelease.
    pub signer: String,
    /// `Valid-Until`, seconds since the epoch.
    pub valid_until: Option<u64>,
    /// `SHA256:` lines: path below `dists/<suite>/` -> (digest, size).
    pub sha256: BTreeMap<String, (Sha256Digest, u64)>,
    /// `Acquire-By-Hash: yes`: each index is also served as
    /// `<its directory>/by-hash/SHA256/<hex>`, a name that never changes content, so
    /// a mirror in the middle of an update still serves the index this Release signs.
    pub by_hash: bool,
}

/// Verifies `inrelease` (an OpenPGP cleartext-signed Release) against the certificates
/// in `keyring` (binary or armored) as of `now`, and parses the signed text.
/// `check_expiry` is off for locked builds, which rebuild from a Release pinned when
/// it was valid.
pub fn verify(
    inrelease: &[u8],
    keyring: &[u8],
    keyring_name: &str,
    now: u64,
    check_expiry: bool,
) -> Result<Release, DebianError> {
    let certs = CertParser::from_bytes(keyring)
        .and_then(|parser| parser.collect::<openpgp::Result<Vec<Cert>>>())
        .map_err(|e| DebianError::Keyring {
            keyring: keyring_name.to_string(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(DebianError::Keyring {
            keyring: keyring_name.to_string(),
            detail: "it holds no OpenPGP certificate".into(),
        });
    }
    let policy = StandardPolicy::new();
    let time = UNIX_EPOCH + Duration::from_secs(now);
    let helper = Helper {
        certs,
        outcome: None,
    };
    let bad = |detail: String| DebianError::Signature {
        keyring: keyring_name.to_string(),
        detail,
    };
    let mut verifier = VerifierBuilder::from_bytes(inrelease)
        .and_then(|b| b.with_policy(&policy, Some(time), helper))
        .map_err(|e| bad(not_signed_detail(inrelease, &e)))?;
    let mut text = Vec::new();
    let read = verifier.read_to_end(&mut text);
    let helper = verifier.into_helper();
    match helper.outcome {
        Some(Outcome::Signed(signer)) if read.is_ok() => {
            let text = String::from_utf8(text)
                .map_err(|_| bad("the signed Release text is not UTF-8".into()))?;
            let release = parse_release(&text, signer)?;
            if check_expiry {
                if let Some(until) = release.valid_until {
                    if until < now {
                        return Err(DebianError::Expired {
                            valid_until: rfc2822(until),
                            now: rfc2822(now),
                        });
                    }
                }
            }
            Ok(release)
        }
        Some(Outcome::Refused(detail)) => Err(bad(detail)),
        _ => Err(bad(match read {
            Err(e) => not_signed_detail(inrelease, &e),
            Ok(_) => "no signature was checked".into(),
        })),
    }
}

fn not_signed_detail(bytes: &[u8], e: &dyn std::fmt::Display) -> String {
    if !bytes.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----") {
        "it is not an OpenPGP cleartext-signed message (an unsigned Release is refused)".into()
    } else {
        e.to_string()
    }
}

struct Helper {
    certs: Vec<Cert>,
    /// What the signature check found, once it ran.
    outcome: Option<Outcome>,
}

/// What the check of the InRelease signatures found.
enum Outcome {
    /// A good signature, by the certificate with this fingerprint.
    Signed(String),
    /// Why no signature counts.
    Refused(String),
}

impl VerificationHelper for Helper {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.certs.clone())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut problems = Vec::new();
        for layer in structure.into_iter() {
            let MessageLayer::SignatureGroup { results } = layer else {
                continue;
            };
            for result in results {
                match result {
                    Ok(good) => {
                        self.outcome = Some(Outcome::Signed(good.ka.cert().fingerprint().to_hex()));
                        return Ok(());
                    }
                    Err(e) => problems.push(describe(&e)),
                }
            }
        }
        let detail = if problems.is_empty() {
            "it carries no signature".to_string()
        } else {
            problems.join("; ")
        };
        self.outcome = Some(Outcome::Refused(detail.clone()));
        Err(anyhow::anyhow!(detail))
    }
}

fn describe(e: &VerificationError) -> String {
    let issuers = |sig: &openpgp::packet::Signature| {
        sig.get_issuers()
            .iter()
            .map(|h| h.to_hex())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match e {
        VerificationError::MissingKey { sig } => format!(
            "signed by key {}, which is not in the keyring",
            issuers(sig)
        ),
        VerificationError::BadSignature { sig, error, .. } => format!(
            "the signature by key {} does not match the text (tampered or corrupt): {error}",
            issuers(sig)
        ),
        VerificationError::BadKey { sig, error, .. } => format!(
            "the key {} that signed it is not valid now: {error}",
            issuers(sig)
        ),
        VerificationError::UnboundKey { sig, error, .. } => {
            format!(
                "key {} is not bound to its certificate: {error}",
                issuers(sig)
            )
        }
        VerificationError::MalformedSignature { error, .. } => {
            format!("malformed signature: {error}")
        }
        VerificationError::UnknownSignature { .. } => "a signature of unknown type".into(),
        _ => "an unsupported signature".into(),
    }
}

/// Parses the fields of a (verified) Release text.
pub(crate) fn parse_release(text: &str, signer: String) -> Result<Release, DebianError> {
    let bad = |detail: String| DebianError::BadRelease { detail };
    let paragraphs: deb822_fast::Deb822 = text
        .parse()
        .map_err(|e: deb822_fast::Error| bad(e.to_string()))?;
    let paragraph = paragraphs
        .iter()
        .next()
        .ok_or_else(|| bad("it is empty".into()))?;
    let valid_until = paragraph
        .get("Valid-Until")
        .map(|v| parse_rfc2822(v).ok_or_else(|| bad(format!("cannot read Valid-Until `{v}`"))))
        .transpose()?;
    let mut sha256 = BTreeMap::new();
    for line in paragraph.get("SHA256").unwrap_or_default().lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [hex, size, path] = parts[..] else {
            continue;
        };
        let digest = hex
            .parse::<Sha256Digest>()
            .map_err(|_| bad(format!("bad SHA256 line `{line}`")))?;
        let size = size
            .parse()
            .map_err(|_| bad(format!("bad size in SHA256 line `{line}`")))?;
        sha256.insert(path.to_string(), (digest, size));
    }
    if sha256.is_empty() {
        return Err(bad("it lists no SHA256 digests".into()));
    }
    let by_hash = paragraph
        .get("Acquire-By-Hash")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"));
    Ok(Release {
        signer,
        valid_until,
        sha256,
        by_hash,
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// `Sat, 10 Jun 2023 08:57:08 UTC` (the form Release files use; `UTC`, `GMT`, `Z` or
/// `+0000`) -> seconds since the epoch.
fn parse_rfc2822(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text.split_once(", ").map_or(text, |(_, rest)| rest);
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [day, month, year, time, zone] = parts[..] else {
        return None;
    };
    if !matches!(zone, "UTC" | "GMT" | "Z" | "+0000") {
        return None;
    }
    let day: u64 = day.parse().ok()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms[..] else { return None };
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// Seconds since the epoch as `Sat, 10 Jun 2023 08:57:08 UTC`, for messages.
pub fn rfc2822(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} UTC",
        DAYS[(days.rem_euclid(7)) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_dates_round_trip() {
        let t = parse_rfc2822("Sat, 10 Jun 2023 08:57:08 UTC").unwrap();
        assert_eq!(t, 1_686_387_428);
        assert_eq!(rfc2822(t), "Sat, 10 Jun 2023 08:57:08 UTC");
        assert_eq!(parse_rfc2822("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(rfc2822(951_782_400), "Tue, 29 Feb 2000 00:00:00 UTC");
        assert_eq!(parse_rfc2822("Sat, 10 Jun 2023 08:57:08 +0200"), None);
        assert_eq!(parse_rfc2822("yesterday"), None);
    }

    #[test]
    fn release_fields_parse() {
        let text = "Origin: Test\nValid-Until: Thu, 01 Jan 1970 00:01:40 UTC\nSHA256:\n 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824 5 main/binary-amd64/Packages\n";
        let r = parse_release(text, "FP".into()).unwrap();
        assert_eq!(r.valid_until, Some(100));
        assert_eq!(r.sha256["main/binary-amd64/Packages"].1, 5);
        assert!(!r.by_hash);
        let by_hash = parse_release(&format!("Acquire-By-Hash: yes\n{text}"), "FP".into()).unwrap();
        assert!(by_hash.by_hash);
        assert!(parse_release("Origin: x\n", "FP".into()).is_err());
    }

    #[test]
    fn garbage_and_unsigned_text_are_refused() {
        let err = verify(b"Origin: x\n", b"", "k", 0, true).unwrap_err();
        assert!(err.to_string().contains("keyring"), "{err}");
    }
}
