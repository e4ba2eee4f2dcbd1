# shellcheck shell=bash
# Helpers for the scenarios, sourced inside the guest (bash). No python: curl + shell.
# Guest side only: the host's PASS/FAIL/summary helpers are tests/lib.sh; here a scenario
# only fails (with a reason for the host to print) or returns.
#
# A scenario is a bash file run by suite.sh in its own process with `set -euo pipefail`
# and xtrace to its log. It fails by calling `fail "reason"` (or by any command failing,
# in which case the failing command is the reason). Anything it prints goes to its log.
# Under pipefail never end a pipeline with `grep -q`: the writer may die of SIGPIPE and
# fail the pipeline although grep matched; use `grep PATTERN >/dev/null`.

VMTEST=/vmtest
PKGS=$VMTEST/pkgs
STATE=/var/lib/vmtest          # survives the reboot
# shellcheck disable=SC2034 # used by suite.sh and the scenarios that source this file
RESULTS=$STATE/results
UNIT=oneiric.service
# The packaged manifest (ExecStart= --manifest) and settings directory.
# shellcheck disable=SC2034 # used by the scenarios
MANIFEST=/etc/oneiric/manifest.yaml
CONF=/etc/oneiric
HTTP=http://127.0.0.1:9090
# Slack for software emulation on top of what systemd's timers promise.
SLACK=${SLACK:-25}

export SYSTEMD_PAGER='' SYSTEMD_COLORS=0 PAGER=cat DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

fail() {
  # The first reason wins; a later one (e.g. from cleanup) is appended.
  if [ -s "$REASON_FILE" ]; then echo "; then: $*" >>"$REASON_FILE"; else echo "$*" >"$REASON_FILE"; fi
  echo "FAIL: $*" >&2
  exit 1
}

note() { echo "# $*" >&2; }

# expect_eq WHAT ACTUAL EXPECTED
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; }

# wait_for SECONDS DESCRIPTION CMD... : polls CMD every second.
wait_for() {
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || fail "timed out after ${t}s waiting for: $what"
    sleep 1
  done
}

prop() { systemctl show -P "$1" "$UNIT"; }

is_active() { [ "$(systemctl is-active "$UNIT" 2>/dev/null)" = active ]; }

main_pid() { prop MainPID; }

# Seconds from a systemd *USec property (e.g. WatchdogUSec=30s -> 30).
usec_prop_seconds() {
  local v; v=$(systemctl show -p "$1" --value "$UNIT")
  case "$v" in
    *min*) echo $(( ${v%%min*} * 60 ));;
    *ms) echo 1;;
    *s) echo "${v%s}";;
    infinity|0|'') echo 0;;
    *) echo "$(( v / 1000000 ))";;
  esac
}

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$HTTP$1" || true; }
http_get() { curl -fsS --max-time 10 "$HTTP$1"; }

# Writes $1 with stdin, keeping the file's owner and mode when it exists.
rewrite() { cat >"$1"; }

# The service is up: active, MainPID set, and the HTTP listener answers.
service_healthy() { is_active && [ "$(main_pid)" != 0 ] && [ "$(http_code /healthz)" = 200 ]; }

wait_healthy() { wait_for "${1:-90}" "oneiric.service active and /healthz 200" service_healthy; }

# Snapshot of /etc/oneiric right after install; restore_config puts it back and restarts
# the service, so a scenario that broke something leaves the next one a working service.
snapshot_config() { rm -rf "$STATE/etc-oneiric"; cp -a "$CONF" "$STATE/etc-oneiric"; }
restore_config() {
  if [ -d "$STATE/etc-oneiric" ]; then
    rm -rf "$CONF" && cp -a "$STATE/etc-oneiric" "$CONF"
  fi
  systemctl reset-failed "$UNIT" 2>/dev/null || true
  systemctl restart "$UNIT" || true
  wait_healthy 120
}

installed_version() { dpkg-query -W -f '${Status} ${Version}\n' oneiric 2>/dev/null | awk '$3 == "installed" { print $4 }'; }

# Journal of the unit since a unix timestamp.
unit_journal_since() { journalctl --no-pager -o short-precise -u "$UNIT" --since "@$1"; }

# JSON string field (flat, first occurrence) without jq: json_field NAME < doc
json_field() { grep -o "\"$1\"[[:space:]]*:[[:space:]]*\"[^\"]*\"" | head -n1 | sed 's/.*:[[:space:]]*"\(.*\)"/\1/'; }

deb_path() { ls "$PKGS"/oneiric.deb 2>/dev/null || fail "no .deb given to the guest (see run.sh: DEB=... or packaging/build-deb.sh)"; }

# --- the signed repositories (issue 17) ------------------------------------------------
# run.sh puts the trees of tests/packaging/repos.sh in /vmtest/repos. /srv/oneiric stands
# for the project's web server: a symlink to the tree being "published"; the user's
# source and .repo file name file:///srv/oneiric/... and never change.
REPOS=$VMTEST/repos
SERVED=/srv/oneiric
publish_tree() { # publish_tree NAME|PATH: what the "server" serves from now on
  local t=$1
  case "$t" in /*) ;; *) t=$REPOS/$t ;; esac
  [ -d "$t" ] || fail "no repository tree $t"
  mkdir -p /srv
  ln -sfn "$t" "$SERVED"
}
# The guests have no network: the image's Debian sources are set aside while a scenario
# uses apt with the project's repository only (restored by only_project_sources_end).
only_project_sources() {
  mkdir -p "$STATE/apt-sources-aside"
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do
    [ -e "$f" ] || continue
    case "$f" in */oneiric.sources) continue ;; esac
    mv "$f" "$STATE/apt-sources-aside/"
  done
}
only_project_sources_end() {
  local f
  for f in "$STATE"/apt-sources-aside/*; do
    [ -e "$f" ] || continue
    case "${f##*/}" in sources.list) mv "$f" /etc/apt/ ;; *) mv "$f" /etc/apt/sources.list.d/ ;; esac
  done
}
# apt_update_clean: `apt-get update` that must succeed without any warning.
apt_update_clean() {
  local out
  out=$(apt-get update 2>&1) || { echo "$out"; fail "apt-get update failed: $(grep -E '^(E|W): ' <<<"$out" | head -n 2 | tr '\n' ' ')"; }
  echo "$out"
  if grep -E '^(W|E|N): ' <<<"$out"; then fail "apt-get update printed warnings: $(grep -E '^(W|E|N): ' <<<"$out" | head -n 2 | tr '\n' ' ')"; fi
}
# The upgrade a user runs, without prompts (README "Upgrades"): keep edited conffiles,
# take the new default of the unedited ones.
# shellcheck disable=SC2034 # used by the scenarios
APT_UPGRADE=(apt-get -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
entry_flag() { # entry_flag KEY FLAG -> true if status shows FLAG true for KEY
  oneiric status --json | tr -d ' \n' | grep "\"key\":\"$1\"[^}]*\"$2\":true" >/dev/null
}
repo_version() { # repo_version TREE: the oneiric version that tree's APT repository has
  awk '/^Package: / { p = ($2 == "oneiric") } p && /^Version: / { print $2; exit }' "$REPOS/$1/apt/dists/stable/main/binary-amd64/Packages"
}
# apt_update_refused WHAT PATTERN: `apt-get update` refuses the served tree and says why
# (PATTERN). A repository whose lists verified before keeps its previous lists and apt
# only warns ("The repository is not updated and the previous index files will be
# used", exit 0; an expired Release is an error, exit 100), so this also checks that
# `apt-get update --error-on=any`, what a script runs (README), exits non-zero.
apt_update_refused() {
  local what=$1 pat=$2 out rc=0
  out=$(apt-get update 2>&1) || rc=$?
  echo "$out"
  grep -E "$pat" <<<"$out" >/dev/null || fail "$what: apt-get update does not say '$pat'"
  grep -E '^(W|E): ' <<<"$out" >/dev/null || fail "$what: apt-get update printed no W:/E: line"
  note "$what: apt-get update exited $rc: $(grep -E '^(E|W): ' <<<"$out" | head -n 1)"
  rc=0
  out=$(apt-get update --error-on=any 2>&1) || rc=$?
  echo "$out"
  if grep -i 'not understood' <<<"$out"; then fail "this apt has no --error-on=any"; fi
  [ "$rc" != 0 ] || fail "$what: apt-get update --error-on=any exited 0"
}

# --- clients through restarts, crashes and upgrades (issue 18) -------------------------
# Two clients at once, from the moment both are answered until the event is over:
# - curl asking /v1/resolve/... over and over (URL globbing: sequential requests on a
#   kept-alive connection, a new connection when the server closes it, and one retry when a
#   reused connection dies before answering, as HTTP clients do), one line per request:
#   status code and seconds. Connection errors go to .err, one `curl: (N) ...` line per
#   failed request (7: refused). The glob is in the fragment, which curl never sends: every
#   request is the same path (a query string would be a 400, the API refuses unknown
#   parameters).
# - wrk on LOAD_CONNECTIONS kept-alive connections, which never retries: it is the load (one
#   curl under emulation asks 70-170 a second, the issue asks for 200) and the strict count.
#   Its summary, printed when it is interrupted, counts refused connections (connect), requests
#   whose connection closed before the answer (read), timeouts and non-2xx answers.
LOAD_URL=$HTTP/v1/resolve/adapter/cache
LOAD_CONNECTIONS=4
# shellcheck disable=SC2034 # read by the host (run.sh prints it): one line per measured event
FIGURES=$RESULTS/figures
load_start() { # load_start NAME
  local f=$STATE/load-$1
  rm -f "$f".*
  curl -sS --max-time 120 -o /dev/null -w '%{http_code} %{time_total}\n' "$LOAD_URL#[1-999999999]" \
    >"$f.out" 2>"$f.err" </dev/null &
  echo $! >"$f.pid"
  wrk -t1 -c"$LOAD_CONNECTIONS" -d1h --timeout 120s "$LOAD_URL" >"$f.wrk" 2>&1 </dev/null &
  echo $! >"$f.wrkpid"
  date +%s.%N >"$f.t0"
  # Answered before the event, or the event would be measured against a client still starting.
  wait_for 30 "the client loop ($1) to get answers" grep -m1 '^200 ' "$f.out"
}
# wrk's time with its unit (750.00us, 12.30ms, 2.05s, 1.10m) in seconds.
wrk_seconds() {
  awk -v t="$1" 'BEGIN { v = t + 0; u = t; sub(/^[0-9.]+/, "", u)
    f = (u == "us") ? 1e-6 : (u == "ms") ? 1e-3 : (u == "s") ? 1 : (u == "m") ? 60 : (u == "h") ? 3600 : -1
    if (f < 0) exit 1; printf "%.3f", v * f }'
}
# load_stop NAME EVENT [KILLED]: stops both clients, records their figures in $FIGURES and
# fails unless every curl request was answered 200 and wrk saw no refused connection, no
# timeout, no write error and no answer other than 2xx. Requests whose connection closed
# unanswered fail it too, except, with KILLED=killed, at most one per wrk connection: those
# the killed process had accepted and was answering when it died (no server can answer
# them; curl's retry shows a client that retries, as HTTP clients do, is answered).
load_stop() {
  local f=$STATE/load-$1 event=$2 killed=${3:-} pid t0 t1 n failed refused errors worst rate up
  pid=$(cat "$f.pid")
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  kill -INT "$(cat "$f.wrkpid")" 2>/dev/null || true
  wait "$(cat "$f.wrkpid")" 2>/dev/null || true
  t0=$(cat "$f.t0"); t1=$(date +%s.%N)
  # A line cut off by the kill is not a request.
  grep -E '^[0-9]{3} [0-9.]+$' "$f.out" >"$f.done" || true
  n=$(wc -l <"$f.done")
  failed=$(awk '$1 != 200' "$f.done" | wc -l)
  refused=$(grep -c '^curl: (7)' "$f.err" || true)
  errors=$(grep -c '^curl: ' "$f.err" || true)
  worst=$(awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { printf "%.3f", m }' "$f.done")
  rate=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
  # A sequential client asks nothing while its one request waits out the event: the rate
  # while the service answers leaves that wait out.
  up=$(awk -v n="$n" -v a="$t0" -v b="$t1" -v w="$worst" 'BEGIN { d = b - a - w; printf "%.0f", (d > 0 ? (n - 1) / d : 0) }')

  local w=$f.wrk wn wsecs wmax wconnect=0 wread=0 wwrite=0 wtimeout=0 wnon2xx=0 wrate wup
  cat "$w"
  wn=$(sed -nE 's/^ *([0-9]+) requests in ([0-9.]+[a-z]+),.*/\1/p' "$w")
  wsecs=$(sed -nE 's/^ *([0-9]+) requests in ([0-9.]+[a-z]+),.*/\2/p' "$w")
  wmax=$(awk '$1 == "Latency" { print $4; exit }' "$w")
  if [ -z "$wn" ] || [ -z "$wsecs" ] || [ -z "$wmax" ]; then fail "$event: wrk printed no summary: $(head -c 300 "$w")"; fi
  wsecs=$(wrk_seconds "$wsecs") || fail "$event: wrk's run time '$wsecs' has an unknown unit"
  wmax=$(wrk_seconds "$wmax") || fail "$event: wrk's longest wait '$wmax' has an unknown unit"
  local errline
  errline=$(grep -E '^ *Socket errors:' "$w" || true)
  if [ -n "$errline" ]; then
    wconnect=$(sed -nE 's/.*connect ([0-9]+).*/\1/p' <<<"$errline")
    wread=$(sed -nE 's/.*read ([0-9]+).*/\1/p' <<<"$errline")
    wwrite=$(sed -nE 's/.*write ([0-9]+).*/\1/p' <<<"$errline")
    wtimeout=$(sed -nE 's/.*timeout ([0-9]+).*/\1/p' <<<"$errline")
  fi
  wnon2xx=$(sed -nE 's/^ *Non-2xx or 3xx responses: ([0-9]+).*/\1/p' "$w")
  wnon2xx=${wnon2xx:-0}
  wrate=$(awk -v n="$wn" -v d="$wsecs" 'BEGIN { printf "%.0f", (d > 0 ? n / d : 0) }')
  # wrk's connections all wait out the event together: its rate outside that wait.
  wup=$(awk -v n="$wn" -v d="$wsecs" -v w="$wmax" 'BEGIN { d -= w; printf "%.0f", (d > 0 ? n / d : 0) }')

  local together line
  together=$(awk -v n=$((n + wn)) -v d="$wsecs" 'BEGIN { printf "%.0f", (d > 0 ? n / d : 0) }')
  line="$event: curl $n requests, $failed failed, $refused refused, worst ${worst} s, ${rate}/s (${up}/s outside the longest wait); wrk $wn requests on $LOAD_CONNECTIONS connections, $wnon2xx non-2xx, $wconnect refused, $wread closed unanswered, $wtimeout timed out, worst ${wmax} s, ${wrate}/s (${wup}/s outside the longest wait); together $((n + wn)) requests, ${together}/s"
  note "$line"
  echo "$line" >>"$FIGURES"
  [ "$errors" -eq 0 ] || { head -n 5 "$f.err" >&2; fail "$event: $errors request(s) failed in the client loop ($refused refused): $(head -n 1 "$f.err")"; }
  [ "$failed" -eq 0 ] || fail "$event: $failed request(s) answered other than 200: $(awk '$1 != 200 { print $1 }' "$f.done" | sort | uniq -c | tr '\n' ' ')"
  [ "$n" -gt 0 ] || fail "$event: the client loop made no request"
  [ "$wn" -gt 0 ] || fail "$event: wrk made no request"
  [ "$wconnect" -eq 0 ] || fail "$event: wrk: $wconnect connection(s) refused"
  [ "$wtimeout" -eq 0 ] || fail "$event: wrk: $wtimeout request(s) timed out"
  [ "$wwrite" -eq 0 ] || fail "$event: wrk: $wwrite request(s) could not be sent"
  [ "$wnon2xx" -eq 0 ] || fail "$event: wrk: $wnon2xx answer(s) other than 2xx"
  if [ "$killed" = killed ]; then
    [ "$wread" -le "$LOAD_CONNECTIONS" ] || fail "$event: wrk: $wread request(s) closed unanswered, more than the $LOAD_CONNECTIONS the killed process can have held"
  else
    [ "$wread" -eq 0 ] || fail "$event: wrk: $wread request(s) met a connection closed without an answer"
  fi
}
