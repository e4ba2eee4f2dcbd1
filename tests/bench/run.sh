#!/bin/bash
# Service-level benchmarks of issue 8 on the real binary, each figure printed next to its target
# with MET/MISSED (BENCHMARKS.md has the results and the machine they came from).
#
#   tests/bench/run.sh                 release binary, full sizes (a few minutes, 2 cores busy)
#   tests/bench/run.sh --criterion     also runs `cargo bench` first (in-process figures)
#   tests/bench/run.sh --no-deb        skips building the .deb (packaging/build-deb.sh)
#   tests/bench/run.sh --smoke         tiny sizes, debug binary, nothing judged (< 1 minute):
#                                      runs the criterion benches once each in test mode and
#                                      every service measurement, so none of them can rot
#
# Prints `PASS step` / `FAIL step: reason` per step and `N passed, N failed` (tests/lib.sh).
# Exit: 0 all targets met (or smoke passed), 2 a target missed, 1 a measurement failed.
# Needs python3 and wrk (installed with apt-get when missing and running as root; without it
# the HTTP figures are skipped).
set -euo pipefail

cd "$(dirname "$0")/../.." || exit 1
repo=$(pwd)
T_LOG_TAG=bench
# shellcheck source=tests/lib.sh
. "$repo/tests/lib.sh"

smoke=0 criterion=0 deb=1
for arg in "$@"; do
	case "$arg" in
	--smoke) smoke=1 ;;
	--criterion) criterion=1 ;;
	--no-deb) deb=0 ;;
	-h | --help)
		sed -n '2,15p' "$0"
		exit 0
		;;
	*)
		echo "run.sh: unknown argument $arg" >&2
		exit 1
		;;
	esac
done

if ! command -v wrk >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	t_log "installing wrk"
	t_apt_install wrk || t_log "could not install wrk; HTTP figures will be skipped"
fi

smoke_args=()
[ "$smoke" = 1 ] && smoke_args=(--smoke)

out=$(mktemp -d /tmp/oneiric-bench-results.XXXXXX)
trap 'rm -rf "$out"' EXIT

if [ "$smoke" = 1 ]; then
	t_log "criterion benches, once each, smallest size (ONEIRIC_BENCH_SMOKE=1)"
	ONEIRIC_BENCH_SMOKE=1 cargo test -q --bench resolver --bench manifest
	t_pass criterion-smoke
	cargo build -q --bin oneiric
	bin=target/debug/oneiric
	deb=0
else
	if [ "$criterion" = 1 ]; then
		t_log "cargo bench"
		cargo bench --bench resolver --bench manifest
		t_pass criterion
	fi
	t_log "release binary"
	cargo build -q --release --bin oneiric
	bin=target/release/oneiric
fi

t_log "service benchmarks ($bin)"
python3 tests/bench/service.py --bin "$repo/$bin" --repo "$repo" --out "$out/service.json" \
	"${smoke_args[@]}"
t_pass service-measurements

deb_args=()
if [ "$deb" = 1 ]; then
	t_log ".deb (packaging/build-deb.sh)"
	deb_file=$(packaging/build-deb.sh | tail -n 1)
	installed=$(dpkg-deb -f "$deb_file" Installed-Size)
	t_log "$deb_file: Installed-Size ${installed} KiB, file $(stat -c %s "$deb_file") bytes"
	deb_args=(--deb-installed-kib "$installed")
fi

rc=0
python3 tests/bench/report.py --service "$out/service.json" --criterion target/criterion \
	"${deb_args[@]}" "${smoke_args[@]}" || rc=$?
case $rc in
0) t_pass report ;;
2) t_fail report "a target was missed (MISSED above)" ;;
*) t_fail report "report.py exited $rc" ;;
esac
t_summary || true
exit "$rc"
