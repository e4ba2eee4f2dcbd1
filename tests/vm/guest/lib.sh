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
