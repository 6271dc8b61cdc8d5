//! The `secure_boot` check of `cairn verify DISK`: when the signed provenance records
//! that the unified kernel image was signed for Secure Boot
//! (`internalParameters.vm.secure_boot.cert_sha256`), `\EFI\BOOT\BOOTX64.EFI` in the
//! EFI system partition carries an Authenticode signature by that certificate over
//! these very bytes, checked as firmware checks it
//! ([`crate::disk::authenticode::check`]). A disk whose provenance records no signing
//! and whose image is unsigned gets no `secure_boot` check; a signature the provenance
//! does not record fails it.

use crate::attest::intoto::Provenance;
use crate::disk::authenticode::check::{self, Signature, SignatureProblem};
use crate::verify::Checks;
use std::fmt;

const IMAGE: &str = "the unified kernel image \\EFI\\BOOT\\BOOTX64.EFI";

/// The certificate the provenance records, as it names it.
struct Recorded<'a> {
    /// Lower-case hex SHA-256 of the certificate's DER bytes.
    cert_sha256: &'a str,
    subject: &'a str,
}

impl fmt::Display for Recorded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{} ({})", self.cert_sha256, self.subject)
    }
}

pub(super) fn check_secure_boot(uki: Option<&[u8]>, provenance: &Provenance, checks: &mut Checks) {
    let recorded = provenance
        .build_definition
        .internal_parameters
        .get("vm")
        .map(|vm| &vm["secure_boot"])
        .filter(|s| !s.is_null());
    let recorded = match recorded {
        None => None,
        Some(s) => match (s["cert_sha256"].as_str(), s["cert_subject"].as_str()) {
            (Some(cert_sha256), subject) => Some(Recorded {
                cert_sha256,
                subject: subject.unwrap_or("no subject recorded"),
            }),
            (None, _) => {
                return checks.fail(
                    "secure_boot",
                    format!("the provenance's `secure_boot` records no `cert_sha256`: {s}"),
                )
            }
        },
    };
    match verdict(uki, recorded.as_ref()) {
        None => {}
        Some(Ok(detail)) => checks.pass("secure_boot", detail),
        Some(Err(detail)) => checks.fail("secure_boot", detail),
    }
}

/// The check's outcome for the image `uki` (if the disk has one) and the certificate
/// the provenance records (if any); `None` when there is nothing to check.
fn verdict(uki: Option<&[u8]>, recorded: Option<&Recorded>) -> Option<Result<String, String>> {
    let Some(uki) = uki else {
        return recorded.map(|r| {
            Err(format!(
                "the provenance records a Secure Boot signature by certificate {r}, but the disk has no {IMAGE} to check"
            ))
        });
    };
    let signed = match check::signatures(uki) {
        Ok(signed) => signed,
        // An image that is not PE32+ fails the `boot` check; with a recorded
        // signature it fails here too, as no firmware would run it.
        Err(e) => {
            return recorded.map(|r| {
                Err(format!(
                "{IMAGE} cannot carry the signature by certificate {r} the provenance records: {e}"
            ))
            })
        }
    };
    let Some(recorded) = recorded else {
        if signed.signatures.is_empty() {
            return None;
        }
        let signers: Vec<String> = signed
            .signatures
            .iter()
            .map(|s| match s {
                Ok(s) => format!("{} (sha256:{})", s.subject, s.cert_sha256.hex()),
                Err(e) => e.to_string(),
            })
            .collect();
        return Some(Err(format!(
            "{IMAGE} carries Authenticode signatures ({}), but the signed provenance records no Secure Boot signing: the image was signed after the build",
            signers.join("; ")
        )));
    };
    if signed.signatures.is_empty() {
        return Some(Err(format!(
            "{IMAGE} is not signed (its certificate table is empty), although the provenance records it signed by certificate {recorded}, so firmware with Secure Boot on refuses to run it"
        )));
    }
    let mut by_recorded: Vec<Vec<SignatureProblem>> = Vec::new();
    let mut by_others: Vec<&Signature> = Vec::new();
    let mut unreadable = Vec::new();
    for signature in &signed.signatures {
        match signature {
            Ok(s) if s.cert_sha256.hex() == recorded.cert_sha256 => {
                let problems = s.problems(signed.image_hash);
                if problems.is_empty() {
                    return Some(Ok(format!(
                        "{IMAGE} is signed by the recorded certificate {recorded}: the signature covers its Authenticode image hash {} and its RSA PKCS#1 v1.5 SHA-256 signature verifies",
                        signed.image_hash
                    )));
                }
                by_recorded.push(problems);
            }
            Ok(s) => by_others.push(s),
            Err(e) => unreadable.push(e.to_string()),
        }
    }
    let mut detail = if let Some(problems) = by_recorded.first() {
        let changed_image = problems
            .iter()
            .any(|p| matches!(p, SignatureProblem::ImageHash { .. }));
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        format!(
            "{IMAGE}'s signature by the recorded certificate {recorded} does not hold: {}; {}, so firmware refuses it",
            problems.join("; "),
            if changed_image {
                "the image was changed after it was signed"
            } else {
                "the signature was changed after it was made"
            }
        )
    } else if !by_others.is_empty() {
        let signers: Vec<String> = by_others
            .iter()
            .map(|s| format!("{} (sha256:{})", s.subject, s.cert_sha256.hex()))
            .collect();
        format!(
            "{IMAGE}'s signature is not by the recorded certificate {recorded} but by {}, so firmware that trusts only the recorded certificate refuses it",
            signers.join(" and ")
        )
    } else {
        format!(
            "{IMAGE} carries no signature that can be read, so firmware refuses it, whatever certificate it trusts"
        )
    };
    for e in unreadable {
        detail.push_str("; ");
        detail.push_str(&e);
    }
    Some(Err(detail))
}

#[cfg(test)]
mod tests;
