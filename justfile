# Thin aliases; the real logic lives in cargo and xtask/.

# Build the example recipe with a release binary.
build:
    cargo run --release -- build recipes/hello.yaml

# The whole test suite, installing the tools it needs when run as root.
test *ARGS:
    cargo xtask test {{ARGS}}

# Time cairn against `tar | gzip` on a generated tree (e.g. `just bench --size-mb 20`).
bench *ARGS:
    cargo xtask bench {{ARGS}}

lint:
    cargo fmt --check && cargo clippy --all-targets -- -D warnings

fmt:
    cargo fmt

# Append and verify speed of an N-entry audit ledger (default 1,000,000).
bench-ledger *ARGS:
    cargo xtask bench-ledger {{ARGS}}

# Build time of recipes/distroless.yaml from the host's Debian mirror, cold and warm.
bench-debian:
    cargo xtask bench-debian

# cairn serve under load: 200 concurrent admission requests, each recorded once; RSS.
bench-serve:
    cargo xtask bench-serve
