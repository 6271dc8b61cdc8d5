#!/bin/sh
# Builds the example images' entrypoints (../bin/hello-amd64, ../bin/hello-arm64) from
# the assembly beside this script, with GNU binutils only (Debian: binutils, and
# binutils-aarch64-linux-gnu for arm64). The output is the same bytes on every run:
# no build id, no symbols, no timestamps. `tools::recipes_run` rebuilds both and
# compares them with the checked-in files.
#   sh recipes/src/build.sh [OUT_DIR]    (default: recipes/bin)
set -eu
src=$(cd "$(dirname "$0")" && pwd)
out=${1:-$src/../bin}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
as -o "$tmp/hello-amd64.o" "$src/hello-amd64.S"
ld -static -s --build-id=none -z max-page-size=4096 -z noexecstack -o "$out/hello-amd64" "$tmp/hello-amd64.o"
aarch64-linux-gnu-as -o "$tmp/hello-arm64.o" "$src/hello-arm64.S"
aarch64-linux-gnu-ld -static -s --build-id=none -z max-page-size=4096 -z noexecstack -o "$out/hello-arm64" "$tmp/hello-arm64.o"
