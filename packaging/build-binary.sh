#!/bin/sh
# Build the release binary that both packages ship, for the glibc baseline:
#   packaging/build-binary.sh        prints the binary's path (last line)
#
# x86_64: cargo-zigbuild with Zig (PyPI `ziglang`, both installed here when
# missing, at pinned versions) for the target x86_64-unknown-linux-gnu.2.28, so
# no symbol newer than GLIBC_2.28 is needed (RHEL 8, Debian 11, Ubuntu 20.04 and
# newer). It still links the system SQLite (libsqlite3.so.0) through pkg-config.
# Other architectures: a plain `cargo build --release` (no baseline promised).
#
# Reproducible: SOURCE_DATE_EPOCH defaults to the commit time (git), and paths of
# this checkout and of the cargo home are remapped, so two checkouts of one commit
# in two directories give the same binary (tests/packaging/run.sh checks it).
# Run by build-deb.sh and build-rpm.sh (the path tells them the target triple).
set -eu

cd "$(dirname "$0")/.."
CARGO_ZIGBUILD_VERSION=0.24.1
ZIGLANG_VERSION=0.17.1
GLIBC_BASELINE=2.28

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

case "$(uname -m)" in
x86_64)
	ONEIRIC_TARGET=x86_64-unknown-linux-gnu
	if ! cargo zigbuild --version 2>/dev/null | grep -q " $CARGO_ZIGBUILD_VERSION"; then
		cargo install --locked "cargo-zigbuild@$CARGO_ZIGBUILD_VERSION" >&2
	fi
	if ! python3 -m ziglang version >/dev/null 2>&1 ||
		[ "$(python3 -m pip show ziglang 2>/dev/null | sed -n 's/^Version: //p')" != "$ZIGLANG_VERSION" ]; then
		python3 -m pip install --quiet "ziglang==$ZIGLANG_VERSION" >&2
	fi
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
*)
	ONEIRIC_TARGET=$(rustc -vV | sed -n 's/^host: //p')
	cargo build --release --locked --target "$ONEIRIC_TARGET" >&2
	;;
esac
ONEIRIC_BIN=target/$ONEIRIC_TARGET/release/oneiric
[ -x "$ONEIRIC_BIN" ] || { echo "build-binary: $ONEIRIC_BIN was not built" >&2; exit 1; }
echo "$ONEIRIC_BIN"
