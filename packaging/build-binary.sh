#!/bin/sh
# Build the release binary that both packages ship, for the glibc baseline:
#   packaging/build-binary.sh [amd64|x86_64|arm64|aarch64]   prints the binary's path (last line)
# (default: the host's architecture).
#
# x86_64: cargo-zigbuild with Zig (both installed by packaging/tools.sh when
# missing, at pinned versions) for the target x86_64-unknown-linux-gnu.2.28, so
# no symbol newer than GLIBC_2.28 is needed (RHEL 8, Debian 11, Ubuntu 20.04 and
# newer). It still links the system SQLite (libsqlite3.so.0) through pkg-config.
# aarch64: Debian's own cross toolchain in the `arm64` chroot of packaging/chroot.sh
# (Debian 12: rustc-web 1.96 with libstd-rust-web-dev:arm64, gcc-aarch64-linux-gnu,
# libsqlite3-dev:arm64; cached under /var/tmp/oneiric-chroot), offline against the
# crates of Cargo.lock vendored on the host (as root). It links against Debian 12's
# glibc 2.36, which sets the baseline GLIBC_BASELINE_AARCH64: every glibc linked since
# 2.34 (where libpthread moved into libc) makes the binary need __libc_start_main@GLIBC_2.34
# (RHEL 9, Ubuntu 22.04, Debian 12 and newer); see packaging/README.md.
#
# Reproducible: SOURCE_DATE_EPOCH defaults to the commit time (git), and paths of
# this checkout and of the cargo home are remapped, so two checkouts of one commit
# in two directories give the same binary (tests/packaging/run.sh checks it).
# Run by build-deb.sh and build-rpm.sh (the path tells them the target triple).
set -eu

cd "$(dirname "$0")/.."
GLIBC_BASELINE=2.28
# shellcheck disable=SC2034 # read (sed) by build-deb.sh and tests/packaging/run.sh
GLIBC_BASELINE_AARCH64=2.34

case "${1:-$(uname -m)}" in
amd64 | x86_64) ONEIRIC_TARGET=x86_64-unknown-linux-gnu ;;
arm64 | aarch64) ONEIRIC_TARGET=aarch64-unknown-linux-gnu ;;
*) echo "usage: $0 [amd64|x86_64|arm64|aarch64]" >&2; exit 2 ;;
esac

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null) ||
		{ echo "build-binary: not a git checkout; set SOURCE_DATE_EPOCH" >&2; exit 1; }
fi
export SOURCE_DATE_EPOCH

# Paths that end up in the binary (panic locations, debug info of dependencies):
# this checkout -> /build/oneiric, the cargo home -> /cargo.
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$(pwd)=/build/oneiric --remap-path-prefix=$CARGO_HOME=/cargo"
export RUSTFLAGS

case "$ONEIRIC_TARGET-$(uname -m)" in
x86_64-unknown-linux-gnu-x86_64)
	packaging/tools.sh cargo-zigbuild
	# Zig's linker searches no system library directory: give it the system SQLite
	# (and nothing else of the host's) through a directory of its own.
	libdir=$(pkg-config --variable=libdir sqlite3) ||
		{ echo "build-binary: no sqlite3.pc (apt-get install libsqlite3-dev pkg-config)" >&2; exit 1; }
	mkdir -p target/sqlite-link
	ln -sf "$libdir/libsqlite3.so" target/sqlite-link/libsqlite3.so
	SQLITE3_LIB_DIR=$(pwd)/target/sqlite-link
	export SQLITE3_LIB_DIR
	# The host's libsqlite3.so is only the link-time stand-in for libsqlite3.so.0 (its
	# sqlite3_* symbols are unversioned); its own references to the host's newer glibc
	# are not the binary's: at run time the target system's libsqlite3 is loaded, built
	# for that system's glibc. So lld must not check them (--allow-shlib-undefined);
	# the binary's own symbol versions are what the packaging test checks.
	RUSTFLAGS="$RUSTFLAGS -C link-arg=-Wl,--allow-shlib-undefined"
	cargo zigbuild --release --locked --target "$ONEIRIC_TARGET.$GLIBC_BASELINE" >&2
	;;
aarch64-unknown-linux-gnu-*)
	# In the chroot the checkout is /build/oneiric and the crates are /vendor: fixed paths,
	# so the binary does not depend on where this checkout is. Its own target directory:
	# the chroot's rustc is not the host's.
	[ "$(id -u)" = 0 ] || { echo "build-binary: the aarch64 build needs root (chroot)" >&2; exit 1; }
	packaging/chroot.sh run arm64 . sh -ec '
		export CARGO_TARGET_DIR=/build/oneiric/target/arm64-chroot
		export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
		export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
		export PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
		export SQLITE3_LIB_DIR=/usr/lib/aarch64-linux-gnu
		export RUSTFLAGS="--remap-path-prefix=/vendor=/cargo/vendor"
		rustc --version
		cargo build --release --locked --offline --target aarch64-unknown-linux-gnu' >&2
	mkdir -p "target/$ONEIRIC_TARGET/release"
	cp "target/arm64-chroot/$ONEIRIC_TARGET/release/oneiric" "target/$ONEIRIC_TARGET/release/oneiric"
	;;
*)
	echo "build-binary: $ONEIRIC_TARGET is built on an x86_64 host only" >&2
	exit 1
	;;
esac
ONEIRIC_BIN=target/$ONEIRIC_TARGET/release/oneiric
[ -x "$ONEIRIC_BIN" ] || { echo "build-binary: $ONEIRIC_BIN was not built" >&2; exit 1; }
echo "$ONEIRIC_BIN"
