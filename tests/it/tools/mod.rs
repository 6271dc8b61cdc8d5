//! Integration tests that drive the tools `cargo xtask test` installs: a real
//! registry, a signed apt repository, qemu, skopeo, umoci, runc, podman, busybox,
//! squashfs-tools, PostgreSQL, openssl, curl and the Python validators. `cargo xtask
//! test --fast` skips this module (`--skip tools::`); the full tier runs it.

mod attest;
mod base_image;
mod crash;
mod debian;
mod debian_accounts;
mod debian_base;
mod debian_ca;
mod debian_dpkg_database;
mod debian_ldcache;
mod debian_mirror;
mod debian_multiarch;
mod disk_full;
mod dsse_interop;
mod formats;
mod interop;
mod layer_cache;
mod ledger_postgres;
mod ledger_tiles_http;
mod ledger_unreachable;
mod multiarch;
mod push_hook;
mod recipes_run;
mod registry;
mod sbom_validation;
mod secure_boot;
mod serve;
mod vm;
mod vm_cache;
mod vm_immutable;
mod vm_verity;
