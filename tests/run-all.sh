#!/usr/bin/env bash
# The one test command (README "Test", and .ci/run). Runs every stage, each reporting its own
# checks, then prints one line per stage and a plain `N passed, N failed` over the stages.
#
#   bash tests/run-all.sh                   all stages
#   ONEIRIC_TEST_STAGES="rust nix" bash tests/run-all.sh
#
# As root on a fresh Debian 12 it installs what it needs with apt-get (each stage its own tools).
set -u
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
STAGES=${ONEIRIC_TEST_STAGES:-"rust bench packaging nix vm"}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	# gcc links the binary (and builds mimalloc); libsqlite3-dev and pkg-config are how it
	# finds the system SQLite. The rest are the stages' own business.
	if ! command -v cc >/dev/null || ! command -v pkg-config >/dev/null ||
		! dpkg -s libsqlite3-dev >/dev/null 2>&1; then
		apt-get update -q && apt-get install -y -q build-essential libsqlite3-dev pkg-config
	fi
fi

stage_rust() {
	cargo fmt --check &&
		cargo clippy --all-targets --locked -- -D warnings &&
		cargo test --locked
}
# Benchmarks in smoke mode (tiny sizes, no time judgement) so they cannot rot; the figures
# themselves come from `bash tests/bench/run.sh` (BENCHMARKS.md).
stage_bench() { bash tests/bench/run.sh --smoke; }
stage_packaging() { bash tests/packaging/run.sh; }
stage_nix() { sh tests/nix/run.sh; }
stage_vm() { bash tests/vm/run.sh; }

passed=0
failed=0
summary=""
for s in $STAGES; do
	echo "=== stage $s ==="
	start=$(date +%s)
	if "stage_$s"; then
		r=PASS
		passed=$((passed + 1))
	else
		r=FAIL
		failed=$((failed + 1))
	fi
	summary="$summary$r stage $s ($(($(date +%s) - start)) s)\n"
done
printf "=== summary ===\n%b" "$summary"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
