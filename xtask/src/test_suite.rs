//! `cargo xtask test`: the one command that runs the whole test suite, and its fast tier.
//!
//! The full tier (`cargo xtask test`, what CI runs): the integration tests drive real
//! tools (principle 5), so a missing tool is an error, never a silent skip: as root we
//! install the Debian packages, otherwise we name them and the exact `apt-get` command,
//! and fail. Then `cargo test --workspace --locked` runs with the caller's extra
//! arguments and its exit status becomes ours.
//!
//! The fast tier (`cargo xtask test --fast`) installs nothing: it runs the unit tests of
//! the workspace and the integration tests outside `tests/it/tools/`, which need only
//! the [`FAST_TIER_COMMANDS`]. Every other test tool is shadowed on its `PATH` by a
//! script that fails, so a test that needs one and is not under `tools` fails loudly
//! instead of slowing the tier down or depending on what happens to be installed.
//!
//! Both tiers print how long they took, after cargo's own summary lines.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Debian package and the command it provides, for every tool the integration tests run.
/// `busybox-static` rather than `busybox`: a static binary runs inside a test image that
/// has no shared libraries.
const TEST_TOOLS: &[(&str, &str)] = &[
    ("skopeo", "skopeo"),
    ("podman", "podman"),
    ("umoci", "umoci"),
    ("runc", "runc"),
    ("busybox-static", "busybox"),
    ("pigz", "pigz"),
    ("gzip", "gzip"),
    ("tar", "tar"),
    ("openssl", "openssl"),
    ("openssh-client", "ssh-keygen"),
    ("zstd", "zstd"),
    ("docker-registry", "docker-registry"),
    ("apache2-utils", "htpasswd"),
    ("e2fsprogs", "mke2fs"),
    ("qemu-utils", "qemu-img"),
    ("qemu-system-x86", "qemu-system-x86_64"),
    ("ovmf", "/usr/share/OVMF/OVMF_CODE.fd"),
    // Checks the Authenticode signatures of Secure Boot disks (tests/it/tools/secure_boot.rs).
    ("sbsigntool", "sbverify"),
    // Writes a changed unified kernel image into a disk's ESP (`mcopy -i disk@@OFFSET`).
    ("mtools", "mcopy"),
    ("squashfs-tools", "mksquashfs"),
    // Checks the dm-verity trees of verity roots (`veritysetup verify`, `dump`).
    ("cryptsetup-bin", "veritysetup"),
    // Reads back the initrds cairn builds (`cpio -t`, `cpio -idm`: tools::vm_immutable).
    ("cpio", "cpio"),
    // Kills a build at a chosen system call (fault injection): the crash tests.
    ("strace", "strace"),
    // The Debian package tests: a signed apt repository made and served by the test.
    ("gpg", "gpg"),
    ("gpg-agent", "gpg-agent"),
    ("gpgconf", "gpgconf"),
    ("dpkg", "dpkg-deb"),
    ("python3", "python3"),
    // The real-mirror test verifies with the Debian archive keyring (a data package;
    // `gpgv` only stands in for a command on hosts without dpkg).
    ("debian-archive-keyring", "gpgv"),
    // The ledger's database store: a throwaway PostgreSQL 15 cluster per test.
    ("postgresql", "/usr/lib/postgresql/15/bin/initdb"),
    // The example recipes' arm64 image runs under runc through QEMU's user-mode
    // emulation, registered with binfmt_misc; its entrypoints are rebuilt from
    // assembly (recipes/src/build.sh; `as` and `ld` for amd64 come with the C
    // toolchain Rust links with) to check the checked-in binaries.
    ("qemu-user-static", "qemu-aarch64-static"),
    ("binfmt-support", "update-binfmts"),
    ("binutils-aarch64-linux-gnu", "aarch64-linux-gnu-ld"),
];

/// Where binfmt_misc lists the interpreter of arm64 executables once it is enabled.
const BINFMT_AARCH64: &str = "/proc/sys/fs/binfmt_misc/qemu-aarch64";

/// Packages built from one source that must be installed at the same version: Debian
/// 12's `qemu-system-x86` removes a `qemu-utils` taken from another release (the
/// machines' preinstalled one comes from bookworm-backports).
const SAME_VERSION: &[&str] = &["qemu-system-x86", "qemu-utils"];

/// Independent validators the attestation tests check cairn's output with (SPDX, the
/// official CycloneDX schemas, a second DSSE implementation) and the Secure Boot
/// tests' firmware variable store writer, pinned so that a new
/// release cannot change what the suite accepts.
const PYTHON_TOOLS: &[&str] = &[
    "spdx-tools==0.8.5",
    "cyclonedx-python-lib[json-validation]==11.12.0",
    "securesystemslib[crypto]==1.6.0",
    // `virt-fw-vars`: enrolls the test certificate into OVMF's variable store.
    "virt-firmware==26.10",
];

/// Commands of [`TEST_TOOLS`] the fast tier lets tests run: the library's own unit tests
/// run the first five, and cairn itself runs e2fsprogs (from the system directories,
/// never `PATH`) for `build_errors`' disk that is too small. Base tools of a Debian
/// machine, unlike the rest of the list.
const FAST_TIER_COMMANDS: &[&str] = &["tar", "gzip", "zstd", "openssl", "ssh-keygen", "mke2fs"];

/// The integration-test module the fast tier skips: `tests/it/tools/`, the tests that
/// need a tool beyond [`FAST_TIER_COMMANDS`]. libtest's `--skip` matches anywhere in a
/// test's name, so no other module of `tests/it` may be named `tools`, and the filter
/// is given only to the `it` binary (the library has a `disk::tools` module).
const TOOLS_MODULE_FILTER: &str = "tools::";

/// Commands shadowed in the fast tier besides those of [`TEST_TOOLS`]: the package
/// manager, which the VM tests use to fetch a kernel.
const FAST_TIER_APT_COMMANDS: &[&str] = &["apt-get", "apt-cache"];

/// `cargo xtask test [ARGS...]`: installs what is missing, runs everything.
pub fn run(cargo_test_args: &[String]) -> Result<ExitCode> {
    let started = Instant::now();
    ensure_test_tools()?;
    ensure_binfmt_aarch64()?;
    let venv = ensure_python_tools()?;
    let mut command = crate::cargo();
    command
        .env("CAIRN_TEST_VENV", &venv)
        .args(["test", "--workspace", "--locked"])
        .args(cargo_test_args);
    let status = run_cargo_test(&mut command)?;
    println!(
        "xtask: full tier took {}",
        minutes_seconds(started.elapsed())
    );
    Ok(crate::exit_code(status))
}

/// `cargo xtask test --fast [ARGS...]`: the workspace's unit tests, then the integration
/// tests outside `tools`, with every tool outside [`FAST_TIER_COMMANDS`] shadowed. ARGS
/// go to both `cargo test` runs.
pub fn run_fast(cargo_test_args: &[String]) -> Result<ExitCode> {
    let started = Instant::now();
    let missing = missing_packages(
        TEST_TOOLS
            .iter()
            .filter(|(_, command)| FAST_TIER_COMMANDS.contains(command)),
    );
    if !missing.is_empty() {
        bail!("{}", missing_tools_message(&missing));
    }
    let guard = crate::target_dir().join("fast-tier-guard");
    write_tool_guard(&guard)?;
    let path = std::env::join_paths(
        std::iter::once(guard.join("bin")).chain(
            std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths),
        ),
    )
    .context("building the fast tier's PATH")?;

    let mut unit = crate::cargo();
    unit.env("PATH", &path)
        .args(["test", "--workspace", "--locked", "--lib", "--bins"])
        .args(cargo_test_args);
    let mut status = run_cargo_test(&mut unit)?;
    if status.success() {
        let mut integration = crate::cargo();
        integration
            .env("PATH", &path)
            // The Python validators resolve into the guard directory: its `python3`
            // fails, the other tools are missing, and either way the test says where
            // a test that needs them belongs.
            .env("CAIRN_TEST_VENV", &guard)
            .args(["test", "--package", "cairn", "--locked", "--test", "it"])
            .args(with_libtest_args(
                cargo_test_args,
                &["--skip", TOOLS_MODULE_FILTER],
            ));
        status = run_cargo_test(&mut integration)?;
    }
    println!(
        "xtask: fast tier took {}",
        minutes_seconds(started.elapsed())
    );
    Ok(crate::exit_code(status))
}

/// Runs a prepared `cargo test` command, showing it first and passing its output on;
/// reports a failure, with why each test failed in short ([`crate::failures`]).
fn run_cargo_test(command: &mut Command) -> Result<std::process::ExitStatus> {
    use std::io::{BufRead, Write};
    let shown: Vec<String> = command
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    println!("xtask: running cargo {}", shown.join(" "));
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {command:?}"))?;
    let mut failures = crate::failures::Failures::default();
    let mut stdout = std::io::stdout().lock();
    let mut line = Vec::new();
    let mut output = std::io::BufReader::new(child.stdout.take().expect("piped"));
    while output
        .read_until(b'\n', &mut line)
        .context("reading cargo test's output")?
        > 0
    {
        stdout.write_all(&line)?;
        failures.line(String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']));
        line.clear();
    }
    drop(stdout);
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        print!("{}", failures.digest());
        eprintln!("xtask: cargo test failed: {status}");
    }
    Ok(status)
}

/// `cargo_args` with `libtest_args` added after its `--` (adding one if it has none).
fn with_libtest_args(cargo_args: &[String], libtest_args: &[&str]) -> Vec<String> {
    let mut args = cargo_args.to_vec();
    if !args.iter().any(|a| a == "--") {
        args.push("--".to_string());
    }
    args.extend(libtest_args.iter().map(|a| a.to_string()));
    args
}

/// Writes `GUARD/bin/<command>` for every test tool the fast tier must not run: a
/// script that fails, saying where a test that needs the tool belongs.
fn write_tool_guard(guard: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let bin = guard.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    let shadowed = TEST_TOOLS
        .iter()
        .map(|(_, command)| *command)
        // OVMF is a firmware file, not a command.
        .filter(|command| !command.contains('/') && !FAST_TIER_COMMANDS.contains(command))
        .chain(FAST_TIER_APT_COMMANDS.iter().copied());
    for command in shadowed {
        let script = bin.join(command);
        std::fs::write(&script, tool_guard_script(command))
            .with_context(|| format!("writing {}", script.display()))?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", script.display()))?;
    }
    Ok(())
}

fn tool_guard_script(command: &str) -> String {
    format!(
        "#!/bin/sh\n\
         echo 'cargo xtask test --fast: a test ran `{command}`, which the fast tier does not \
         provide; a test that needs it belongs under tests/it/tools/' >&2\n\
         exit 127\n"
    )
}

/// `1m05s`, or `42s` under a minute.
fn minutes_seconds(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    match seconds / 60 {
        0 => format!("{seconds}s"),
        minutes => format!("{minutes}m{:02}s", seconds % 60),
    }
}

fn ensure_test_tools() -> Result<()> {
    let missing = missing_packages(TEST_TOOLS);
    if missing.is_empty() {
        println!("xtask: test tools present: {}", package_names().join(" "));
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let is_root = unsafe { libc::geteuid() } == 0;
    if !is_root {
        bail!("{}", missing_tools_message(&missing));
    }
    println!(
        "xtask: installing missing test tools: {}",
        missing.join(" ")
    );
    crate::run_checked(Command::new("apt-get").arg("update"))?;
    crate::run_checked(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args([
                "install",
                "-y",
                "--no-install-recommends",
                "--allow-downgrades",
            ])
            .args(install_arguments(&missing)?),
    )?;
    let still_missing = missing_packages(TEST_TOOLS);
    if !still_missing.is_empty() {
        bail!(
            "apt-get install succeeded but these are still missing: {}",
            still_missing.join(" ")
        );
    }
    println!("xtask: installed {}", missing.join(" "));
    Ok(())
}

/// Registers QEMU as the interpreter of arm64 executables (binfmt_misc mounted, the
/// `qemu-aarch64` entry enabled), so that runc runs arm64 images; as root only.
fn ensure_binfmt_aarch64() -> Result<()> {
    let enabled =
        || std::fs::read_to_string(BINFMT_AARCH64).is_ok_and(|s| s.starts_with("enabled"));
    if enabled() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("arm64 executables have no interpreter ({BINFMT_AARCH64} is not enabled): as root, run `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64`");
    }
    if !std::path::Path::new("/proc/sys/fs/binfmt_misc/register").exists() {
        crate::run_checked(Command::new("mount").args([
            "-t",
            "binfmt_misc",
            "binfmt_misc",
            "/proc/sys/fs/binfmt_misc",
        ]))?;
    }
    crate::run_checked(Command::new("update-binfmts").args(["--enable", "qemu-aarch64"]))?;
    if !enabled() {
        bail!("update-binfmts --enable qemu-aarch64 ran, but {BINFMT_AARCH64} is not enabled");
    }
    println!("xtask: arm64 executables run through qemu-aarch64 (binfmt_misc)");
    Ok(())
}

/// A virtualenv under the target directory with `PYTHON_TOOLS`, created once and
/// re-created when the list changes.
fn ensure_python_tools() -> Result<std::path::PathBuf> {
    let venv = crate::target_dir().join("test-venv");
    let stamp = venv.join("cairn-requirements.txt");
    let wanted = PYTHON_TOOLS.join("\n");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        println!("xtask: python validators present in {}", venv.display());
        return Ok(venv);
    }
    println!(
        "xtask: installing python validators into {}",
        venv.display()
    );
    if venv.exists() {
        std::fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    crate::run_checked(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    crate::run_checked(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(PYTHON_TOOLS),
    )?;
    std::fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(venv)
}

/// `missing`, with every package of [`SAME_VERSION`] pinned to the candidate version of
/// the first one when any of them is missing.
fn install_arguments(missing: &[&str]) -> Result<Vec<String>> {
    let mut args: Vec<String> = missing
        .iter()
        .filter(|p| !SAME_VERSION.contains(p))
        .map(|p| p.to_string())
        .collect();
    if missing.iter().any(|p| SAME_VERSION.contains(p)) {
        let output = Command::new("apt-cache")
            .args(["policy", SAME_VERSION[0]])
            .output()
            .context("running apt-cache policy")?;
        let text = String::from_utf8_lossy(&output.stdout);
        let version = candidate_version(&text)
            .with_context(|| format!("apt-cache knows no candidate for {}", SAME_VERSION[0]))?;
        args.extend(SAME_VERSION.iter().map(|p| format!("{p}={version}")));
    }
    Ok(args)
}

fn candidate_version(apt_cache_policy: &str) -> Option<&str> {
    apt_cache_policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| *v != "(none)")
}

fn package_names() -> Vec<&'static str> {
    TEST_TOOLS.iter().map(|(package, _)| *package).collect()
}

/// The packages of `tools` (package, command) that are not installed. Asks dpkg; on a
/// host without dpkg, a package counts as present when its command is on `PATH`.
fn missing_packages<'a>(
    tools: impl IntoIterator<Item = &'a (&'static str, &'static str)>,
) -> Vec<&'static str> {
    let mut missing = Vec::new();
    for &(package, command) in tools {
        let installed = match dpkg_says_installed(package) {
            Some(installed) => installed,
            None => command_on_path(command),
        };
        if !installed {
            missing.push(package);
        }
    }
    missing
}

/// `Some(installed)` from dpkg's status database, `None` if dpkg-query cannot run.
fn dpkg_says_installed(package: &str) -> Option<bool> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .ok()?;
    // dpkg-query exits 1 for a package it has never heard of: not installed.
    Some(output.status.success() && output.stdout == b"install ok installed")
}

fn command_on_path(command: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| dir.join(command).is_file())
}

fn missing_tools_message(missing: &[&str]) -> String {
    let packages = missing.join(" ");
    format!(
        "the integration tests need these Debian packages, which are not installed: \
         {packages}\n  install them as root, then run `cargo xtask test` again:\n    \
         apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
         --no-install-recommends {packages}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_message_names_packages_and_install_command() {
        let message = missing_tools_message(&["umoci", "busybox-static"]);
        assert!(message.contains("not installed: umoci busybox-static\n"));
        assert!(message.contains(
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
             --no-install-recommends umoci busybox-static"
        ));
    }

    #[test]
    fn candidate_version_is_read_from_apt_cache_policy() {
        let policy = "qemu-system-x86:\n  Installed: (none)\n  Candidate: 1:7.2+dfsg-7+deb12u18+b3\n  Version table:\n";
        assert_eq!(candidate_version(policy), Some("1:7.2+dfsg-7+deb12u18+b3"));
        assert_eq!(candidate_version("x:\n  Candidate: (none)\n"), None);
    }

    #[test]
    fn durations_read_as_minutes_and_seconds() {
        assert_eq!(minutes_seconds(Duration::from_millis(42_900)), "42s");
        assert_eq!(minutes_seconds(Duration::from_secs(372)), "6m12s");
        assert_eq!(minutes_seconds(Duration::from_secs(65)), "1m05s");
    }

    #[test]
    fn the_tools_filter_goes_after_the_callers_libtest_arguments() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            with_libtest_args(&args(&["-q"]), &["--skip", "tools::"]),
            args(&["-q", "--", "--skip", "tools::"])
        );
        assert_eq!(
            with_libtest_args(&args(&["--", "golden"]), &["--skip", "tools::"]),
            args(&["--", "golden", "--skip", "tools::"])
        );
    }

    #[test]
    fn the_fast_tier_shadows_every_heavy_tool_and_no_allowed_one() {
        let guard = fresh_dir();
        write_tool_guard(&guard).unwrap();
        for command in [
            "skopeo",
            "umoci",
            "runc",
            "podman",
            "docker-registry",
            "python3",
        ]
        .into_iter()
        .chain(["qemu-system-x86_64", "qemu-img", "apt-get", "gpg"])
        {
            assert!(
                guard.join("bin").join(command).is_file(),
                "{command} is not shadowed"
            );
        }
        for command in FAST_TIER_COMMANDS {
            assert!(
                !guard.join("bin").join(command).exists(),
                "{command} is shadowed"
            );
        }
        let out = Command::new(guard.join("bin/skopeo")).output().unwrap();
        assert_eq!(out.status.code(), Some(127));
        assert!(String::from_utf8_lossy(&out.stderr).contains("tests/it/tools/"));
        std::fs::remove_dir_all(&guard).unwrap();
    }

    /// A fresh directory under the target directory (xtask has no tempfile dependency).
    fn fresh_dir() -> std::path::PathBuf {
        let dir = crate::target_dir().join(format!("xtask-test-guard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn tool_commands_are_found_by_path_lookup() {
        // `sh` is on every PATH the test suite can run under.
        assert!(command_on_path("sh"));
        assert!(!command_on_path("cairn-no-such-tool"));
    }
}
