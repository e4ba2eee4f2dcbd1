#!/usr/bin/env bash
# The fuzz stage (tests/fuzz/README.md): installs cargo-fuzz when missing, builds the targets
# of fuzz/ from its committed Cargo.lock, and runs each one for a few seconds over its
# committed corpus with the limits of the long runs.
#
#   bash tests/fuzz/run.sh                      every target, 10 s each
#   ONEIRIC_FUZZ_SECONDS=60 bash tests/fuzz/run.sh canonical settings
#
# New inputs go to a temporary directory, never into fuzz/corpus/; a crash, timeout or
# out-of-memory input is kept in fuzz/artifacts/<target>/ and named in the FAIL line.
# Prints PASS/FAIL/SKIP lines and `N passed, N failed` (tests/lib.sh); exit 1 on a failure.
set -u
cd "$(dirname "$0")/../.." || exit 1
REPO=$(pwd)
T_LOG_TAG=fuzz
# shellcheck source=tests/lib.sh
. "$REPO/tests/lib.sh"
export PATH="$HOME/.cargo/bin:$PATH"

SECONDS_EACH=${ONEIRIC_FUZZ_SECONDS:-10}
LIMITS=(-rss_limit_mb=512 -timeout=1)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/oneiric-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

targets=("$@")
if [ ${#targets[@]} = 0 ]; then
	mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^oneiric-fuzz$')
fi

# cargo fuzz passes -Z flags (sanitizer, coverage) to rustc: the nightly toolchain when rustup
# has one, else the stable one with RUSTC_BOOTSTRAP=1 (no other toolchain can be fetched).
if rustup run nightly rustc --version >/dev/null 2>&1; then
	TOOLCHAIN=nightly
else
	TOOLCHAIN=stable
	export RUSTC_BOOTSTRAP=1
	t_log "no nightly toolchain: building with stable and RUSTC_BOOTSTRAP=1"
fi
t_log "$(rustup run "$TOOLCHAIN" rustc --version)"

# step NAME CMD...: PASS, or FAIL with the end of the command's output and the stage ends.
step() {
	local name=$1 log
	shift
	log="$WORK/step.log"
	if "$@" >"$log" 2>&1; then
		t_pass "$name"
	else
		# A compiler's first error says more than the backtrace cargo fuzz ends with.
		t_fail "$name" "$(grep -m 1 '^error' "$log" || grep -v '^$' "$log" | tail -n 1)"
		tail -n 30 "$log" | sed 's/^/    /'
		t_finish
	fi
}
step "cargo-fuzz (packaging/tools.sh)" sh packaging/tools.sh cargo-fuzz
# cargo fuzz has no --locked: fetching with it first fails if fuzz/Cargo.lock is stale, and the
# build then uses the lock file as it is.
step "fuzz/Cargo.lock up to date" \
	cargo "+$TOOLCHAIN" fetch --locked --manifest-path fuzz/Cargo.toml
step "cargo fuzz build" cargo "+$TOOLCHAIN" fuzz build

for t in "${targets[@]}"; do
	if [ ! -d "fuzz/corpus/$t" ]; then
		t_fail "fuzz $t" "no corpus in fuzz/corpus/$t"
		continue
	fi
	mkdir -p "$WORK/$t" "fuzz/artifacts/$t"
	log="$WORK/$t.log"
	# The first corpus directory receives new inputs; the committed one is only read.
	if cargo "+$TOOLCHAIN" fuzz run "$t" "$WORK/$t" "fuzz/corpus/$t" -- \
		"${LIMITS[@]}" -max_total_time="$SECONDS_EACH" >"$log" 2>&1; then
		t_pass "fuzz $t (${SECONDS_EACH} s, $(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log") runs)"
	else
		artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
		t_fail "fuzz $t" "$(grep -m 1 -E '^==[0-9]+== ERROR|panicked at|^SUMMARY' "$log" || tail -n 1 "$log"); input: ${artifact:-none}"
		tail -n 30 "$log" | sed 's/^/    /'
	fi
done
t_finish
