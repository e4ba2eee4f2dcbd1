#!/bin/bash
# The fleet test of issue 19: one nginx origin and N Oneiric services on loopback, one signed
# manifest, a publish; convergence, the origin's load with and without splay, 304 share, bytes,
# the fleet's memory; the origin-down alert and the dashboard's metrics (tests/fleet/fleet.py).
#
#   tests/fleet/run.sh            N = 200, release binary (about 3 minutes; BENCHMARKS.md)
#   tests/fleet/run.sh --smoke    N = 50, debug binary, the Done-when assertions (the bench
#                                 stage of tests/run-all.sh; about a minute)
#   tests/fleet/run.sh -n N       another fleet size (with either)
#
# Prints `PASS name` / `FAIL name: reason` and `N passed, N failed` (tests/lib.sh). Needs
# nginx (Debian's package, installed with apt-get when missing and running as root) and
# python3. Every process it starts is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/../.." || exit 1
repo=$(pwd)
T_LOG_TAG=fleet
# shellcheck source=tests/lib.sh
. "$repo/tests/lib.sh"

smoke=0 n=""
while [ $# -gt 0 ]; do
	case "$1" in
	--smoke) smoke=1 ;;
	-n)
		n=$2
		shift
		;;
	-h | --help)
		sed -n '2,13p' "$0"
		exit 0
		;;
	*)
		echo "run.sh: unknown argument $1" >&2
		exit 1
		;;
	esac
	shift
done

if ! command -v nginx >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		t_log "installing nginx"
		t_apt_install nginx
	fi
fi
if ! command -v nginx >/dev/null 2>&1; then
	t_fail fleet "nginx is not installed (apt-get install nginx)"
	t_summary || true
	exit 1
fi

if [ "$smoke" = 1 ]; then
	cargo build -q --bin oneiric
	bin=target/debug/oneiric
	n=${n:-50}
else
	cargo build -q --release --bin oneiric
	bin=target/release/oneiric
	n=${n:-200}
fi

out=$(mktemp /tmp/oneiric-fleet-results.XXXXXX.json)
report=$(mktemp /tmp/oneiric-fleet-report.XXXXXX)
py=""
stop() {
	# fleet.py stops its own processes on SIGTERM; this is for the harness being stopped.
	if [ -n "$py" ] && kill -0 "$py" 2>/dev/null; then
		kill -TERM "$py" 2>/dev/null || true
		wait "$py" 2>/dev/null || true
	fi
	rm -f "$report"
}
trap stop EXIT
trap 'exit 130' INT TERM

t_log "fleet of $n on $bin (figures: $out)"
t0=$SECONDS
rc=0
python3 tests/fleet/fleet.py --bin "$repo/$bin" --repo "$repo" -n "$n" --out "$out" \
	--assert >"$report" &
py=$!
wait "$py" || rc=$?
py=""
t_absorb "$report"
t_log "fleet of $n: $((SECONDS - t0)) s"
[ "$rc" = 0 ] || [ "$T_FAILED" -gt 0 ] || t_fail fleet "fleet.py exited $rc"
t_summary || true
[ "$T_FAILED" = 0 ]
