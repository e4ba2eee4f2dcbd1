#!/usr/bin/env bash
# The one test command (README "Test", and .ci/run). Runs every stage, each reporting its own
# checks, then prints one line per stage and a plain `N passed, N failed` over the stages.
#
#   bash tests/run-all.sh                   all stages
#   ONEIRIC_TEST_STAGES="rust nix" bash tests/run-all.sh
#   ONEIRIC_TEST_STAGES=arm64 bash tests/run-all.sh      on demand, not in the default list:
#                                           the arm64 packages and the arm64 guest (~1 h here)
#
# As root on a fresh Debian 12 it installs what it needs with apt-get (each stage its own tools).
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
STAGES=${ONEIRIC_TEST_STAGES:-"shell rust msrv bench fuzz packaging nix vm"}
T_LOG_TAG=run-all
# shellcheck source=tests/lib.sh
. "$REPO/tests/lib.sh"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	# gcc links the binary (and builds mimalloc); libsqlite3-dev and pkg-config are how it
	# finds the system SQLite. The rest are the stages' own business.
	if ! command -v cc >/dev/null || ! command -v pkg-config >/dev/null ||
		! dpkg -s libsqlite3-dev >/dev/null 2>&1; then
		apt-get update -q && apt-get install -y -q build-essential libsqlite3-dev pkg-config
	fi
fi

# Every shell script of the repository, one path a line: *.sh, files with an sh/bash
# shebang, the .deb maintainer scripts and the .rpm scriptlets (plain sh, no shebang: each
# says `# shellcheck shell=sh`), and the VM scenarios (bash files sourced by the guest suite,
# each with a `# shellcheck shell=bash` line).
# shellcheck disable=SC2317 # used by stage_shell
shell_scripts() {
	local f
	{ git ls-files --cached --others --exclude-standard 2>/dev/null || find . -path ./target -prune -o -path ./.git -prune -o -type f -print | sed 's|^\./||'; } |
		sort -u | while IFS= read -r f; do
		[ -f "$f" ] || continue
		case "$f" in
		target/*) continue ;;
		*.sh | debian/preinst | debian/postinst | debian/prerm | debian/postrm | rpm/*) echo "$f" ;;
		*) head -n 1 "$f" 2>/dev/null | grep -Eq '^#!.*[/ ](ba|da)?sh([[:space:]]|$)' && echo "$f" ;;
		esac
	done
}
# Runs Debian's shellcheck over every shell script, one check per file; the findings
# of a failing file follow its FAIL line. Targeted `# shellcheck disable=` lines carry
# their reason in the file.
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_shell() (
	T_LOG_TAG=shell
	if ! command -v shellcheck >/dev/null; then
		[ "$(id -u)" = 0 ] && t_apt_install shellcheck
		command -v shellcheck >/dev/null || { t_fail shellcheck "not installed and apt-get install shellcheck failed"; t_finish; }
	fi
	t_log "$(shellcheck --version | sed -n 's/^version: /shellcheck /p')"
	local f out n=0
	while IFS= read -r f; do
		n=$((n + 1))
		# -x: follow `source=` directives; -S style: every finding, notes included.
		if out=$(shellcheck -x -S style -f gcc "$f" 2>&1); then
			t_pass "shellcheck $f"
		else
			t_fail "shellcheck $f" "$(printf '%s\n' "$out" | grep -c ': \(error\|warning\|note\|style\):') finding(s)"
			printf '%s\n' "$out" | sed 's/^/    /'
		fi
	done < <(shell_scripts)
	[ "$n" -gt 0 ] || t_fail shellcheck "no shell scripts found"
	t_summary
)
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_rust() {
	# The cross-implementation vectors are optional (beside the checkout, not in it): say
	# plainly whether tests/conformance.rs checked them or passed without checking anything.
	if [ -d ../shared/testdata ]; then
		t_log "conformance: tests/conformance.rs runs against ../shared/testdata"
	else
		t_log "conformance: SKIPPED, ../shared/testdata is absent (tests/conformance.rs checks nothing; tests/fixtures cover the same paths)"
	fi
	cargo fmt --check &&
		cargo clippy --all-targets --locked -- -D warnings &&
		cargo test --locked
}
# Benchmarks in smoke mode (tiny sizes, no time judgement) so they cannot rot; the figures
# themselves come from `bash tests/bench/run.sh` (BENCHMARKS.md). Then the fleet test at
# N = 50 (tests/fleet/run.sh --smoke), whose assertions are issue 19's Done-when.
# The declared rust-version, built with Debian's rustc of that version in a cached chroot.
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_msrv() { sh tests/msrv/run.sh; }
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_bench() {
	local rc=0
	bash tests/bench/run.sh --smoke || rc=1
	bash tests/fleet/run.sh --smoke || rc=1
	return "$rc"
}
# The cargo-fuzz targets of fuzz/, each run a few seconds over its committed corpus
# (tests/fuzz/README.md has the long runs).
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_fuzz() { bash tests/fuzz/run.sh; }
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_packaging() { bash tests/packaging/run.sh; }
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_nix() { sh tests/nix/run.sh; }
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_vm() { bash tests/vm/run.sh; }
# On demand (ONEIRIC_TEST_STAGES=arm64): the arm64 .deb and .rpm built in the arm64 chroot and
# checked against the x86_64 ones, then the Debian 13 arm64 guest (qemu-system-aarch64, TCG)
# with that .deb. Not in the default list: the arm64 release build (~11 min), the guest
# image's second debootstrap stage under qemu-user (~19 min, cached) and the scenarios under
# aarch64 emulation do not fit CI's 60 minutes beside the other stages.
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_arm64() {
	local rc=0 deb
	bash tests/packaging/arm64.sh || rc=1
	deb=$REPO/target/debian/oneiric_$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)-1_arm64.deb
	if [ -f "$deb" ]; then export DEB_ARM64=$deb; fi
	bash tests/vm/run.sh --dist trixie-arm64 || rc=1
	return "$rc"
}

results=()
for s in $STAGES; do
	if ! declare -F "stage_$s" >/dev/null; then
		results+=("FAIL|stage $s|no such stage (known: shell rust msrv bench fuzz packaging nix vm arm64)")
		continue
	fi
	echo "=== stage $s ==="
	start=$(date +%s)
	if "stage_$s"; then r=PASS; else r=FAIL; fi
	results+=("$r|stage $s ($(($(date +%s) - start)) s)|stage failed")
done
echo "=== summary ==="
for r in "${results[@]}"; do
	IFS='|' read -r st name why <<<"$r"
	if [ "$st" = PASS ]; then t_pass "$name"; else t_fail "$name" "$why"; fi
done
t_finish
