#!/bin/sh
# The declared rust-version is the one that builds (issue 21): `cargo check --all-targets`
# with Debian 13's rustc/cargo (the `msrv` chroot of packaging/chroot.sh, cached under
# /var/tmp/oneiric-chroot), offline against the crates of Cargo.lock vendored by the host.
# Fails when that rustc is not the version Cargo.toml declares, so the two cannot drift
# apart: raising rust-version means choosing a Debian toolchain of that version here.
# As root (debootstrap, chroot). Prints PASS/FAIL lines and `N passed, N failed`.
set -u
cd "$(dirname "$0")/../.." || exit 1
T_LOG_TAG=msrv
# shellcheck source=tests/lib.sh
. ./tests/lib.sh
LOG=target/msrv.log
mkdir -p target
: >"$LOG"

declared=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
if [ -n "$declared" ]; then
	t_pass "rust-version declared ($declared)"
else
	t_fail "rust-version declared" "no rust-version in Cargo.toml"
	t_finish
fi

if [ "$(id -u)" != 0 ]; then
	t_fail msrv-chroot "needs root (debootstrap, chroot)"
	t_finish
fi
t0=$(date +%s)
if root=$(packaging/chroot.sh path msrv 2>>"$LOG"); then
	t_pass "msrv-chroot ($(($(date +%s) - t0)) s)"
else
	t_fail msrv-chroot "$(tail -n 1 "$LOG")"
	t_finish
fi

# "1.85" matches rustc 1.85.x; "1.85.1" only 1.85.1.
have=$(chroot "$root" rustc --version 2>>"$LOG" | awk '{ print $2 }')
case "$have" in
"$declared" | "$declared".*) t_pass "chroot rustc $have is rust-version $declared" ;;
*)
	t_fail "chroot rustc is rust-version" "chroot has rustc '${have:-none}', Cargo.toml declares $declared"
	t_finish
	;;
esac

t0=$(date +%s)
if packaging/chroot.sh run msrv . env CARGO_TARGET_DIR=/build/oneiric/target/msrv \
	cargo check --all-targets --locked --offline >>"$LOG" 2>&1; then
	t_pass "cargo $have check --all-targets --locked --offline ($(($(date +%s) - t0)) s)"
else
	t_fail "cargo $have check --all-targets" "$(grep -m 1 '^error' "$LOG" || tail -n 1 "$LOG") (see $LOG)"
	grep -A 6 '^error' "$LOG" | head -n 60 | sed 's/^/    /'
fi
t_finish
