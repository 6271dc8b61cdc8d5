//! Integration tests that drive the tools `cargo xtask test` installs: a real
//! registry, a signed apt repository, qemu, skopeo, umoci, runc, podman, busybox,
//! squashfs-tools and the Python validators.

mod base_image;
mod debian;
mod debian_mirror;
mod dsse_interop;
mod formats;
mod interop;
mod registry;
mod vm;
