# shellcheck shell=bash
# vm: needs=deb after=install boot=1 order=66 dists=all
# Issue 15: the three local users of the README's "Control socket" on the packaged units. Root
# changes; a member of group oneiric reads and is refused every change; a member of group
# oneiric-admin (created by sysusers, empty) changes through /run/oneiric/admin.sock
# (oneiric-admin.socket, kernel-checked group); anyone else reaches neither socket. The
# journal record of each change names the peer's pid and the socket it came through.
wait_healthy 60
expect_eq "oneiric-admin.socket" "$(systemctl is-active oneiric-admin.socket)" active
expect_eq "oneiric-admin.socket triggers" "$(systemctl show -P Triggers oneiric-admin.socket)" oneiric.service
expect_eq "group oneiric-admin members" "$(getent group oneiric-admin | cut -d: -f4)" ""
expect_eq "admin.sock" "$(stat -c '%a %U %G %F' /run/oneiric/admin.sock)" "660 root oneiric-admin socket"
expect_eq "control.sock" "$(stat -c '%a %U %G' /run/oneiric/control.sock)" "660 oneiric oneiric"
expect_eq "/run/oneiric" "$(stat -c '%a %U %G' /run/oneiric)" "751 oneiric oneiric"
journalctl --no-pager -o cat -b -u oneiric.service | grep -F 'admin from the socket unit' >/dev/null \
  || fail "the service did not take admin.sock from oneiric-admin.socket"

for u in oneiric-t-reader oneiric-t-admin oneiric-t-other; do
  id "$u" >/dev/null 2>&1 || useradd --no-create-home --shell /bin/sh "$u"
done
usermod -aG oneiric oneiric-t-reader
usermod -aG oneiric-admin oneiric-t-admin
# as USER ARGS...: the CLI as a login of USER (its groups from /etc/group); its pid (the shell
# execs the CLI) in $PIDS/USER, a directory the users can write to ($STATE is root's).
PIDS=$(mktemp -d)
chmod 1777 "$PIDS"
as() {
  local u=$1
  shift
  # shellcheck disable=SC2016 # expanded by the inner shell
  runuser -u "$u" -- sh -c 'echo $$ >"$0" || exit 99; exec /usr/bin/oneiric "$@"' "$PIDS/$u" "$@"
}
t0=$(date +%s)

# Group oneiric: reads, every change refused (exit 6), nothing changed.
as oneiric-t-reader status >"$STATE/out" 2>&1 || fail "status as a member of group oneiric exited $?: $(cat "$STATE/out")"
for args in "pause adapter cache" "drain adapter cache" "swap adapter cache memory" "reload"; do
  # shellcheck disable=SC2086 # ARGS are words
  if as oneiric-t-reader $args >"$STATE/out" 2>&1; then
    fail "'oneiric $args' by a member of group oneiric was allowed"
  else
    rc=$?
  fi
  expect_eq "exit of '$args' by a member of group oneiric" "$rc" 6
  grep -q 'permission denied' "$STATE/out" || fail "'$args' by group oneiric: $(cat "$STATE/out")"
done
! entry_flag cache paused || fail "a refused pause paused adapter/cache"

# Group oneiric-admin alone: changes through admin.sock (control.sock is not its group's; the
# settings, 0640 root:oneiric, are not its to read, so `status` takes group oneiric as well).
as oneiric-t-admin pause adapter cache >"$STATE/out" 2>&1 || fail "pause by a member of oneiric-admin exited $?: $(cat "$STATE/out")"
grep -q 'via running service' "$STATE/out" || fail "pause by oneiric-admin did not reach the service: $(cat "$STATE/out")"
admin_pid=$(cat "$PIDS/oneiric-t-admin")
entry_flag cache paused || fail "the admin group's pause did not pause adapter/cache"
as oneiric-t-admin pause adapter cache --resume >"$STATE/out" 2>&1 || fail "resume by oneiric-admin exited $?: $(cat "$STATE/out")"
as oneiric-t-admin reload >"$STATE/out" 2>&1 || fail "reload by oneiric-admin exited $?: $(cat "$STATE/out")"

# Anyone else: neither socket; a clear error, not "no service" (which would act offline).
if as oneiric-t-other pause adapter cache >"$STATE/out" 2>&1; then
  fail "a user in neither group paused adapter/cache"
fi
grep -q 'cannot be reached' "$STATE/out" || fail "a user in neither group: $(cat "$STATE/out")"
! entry_flag cache paused || fail "adapter/cache paused by a user in neither group"

# Root, through the socket too.
oneiric pause adapter cache || fail "root's pause exited $?"
oneiric pause adapter cache --resume || fail "root's resume exited $?"

# The journal: the admin's change with its pid and socket; the refusals; root's.
j=$(journalctl --no-pager -o cat -u oneiric.service --since "@$t0")
grep -F "control: pause adapter/cache by uid" <<<"$j" | grep -F "(pid $admin_pid" | grep -F "via admin.sock: ok" >/dev/null \
  || fail "no journal record of the admin group's pause naming pid $admin_pid and admin.sock: $(grep -F 'control:' <<<"$j" | tail -n 5 | tr '\n' ';')"
grep -F "via control.sock refused" <<<"$j" >/dev/null || fail "no journal record of a refused change"
grep -F "control: pause adapter/cache by uid 0 " <<<"$j" >/dev/null || fail "no journal record of root's pause"
fields=$(journalctl --no-pager -o verbose -u oneiric.service --since "@$t0" ONEIRIC_EVENT=control_change ONEIRIC_PEER_PID="$admin_pid")
grep -q '^ *ONEIRIC_SOCKET=admin.sock$' <<<"$fields" || fail "the admin's change has no ONEIRIC_SOCKET=admin.sock field: $(head -c 600 <<<"$fields")"
oneiric activity --changes >"$STATE/changes" || fail "activity --changes exited $?"
note "$(head -n 4 "$STATE/changes" | tr '\n' ';')"
for u in oneiric-t-reader oneiric-t-admin oneiric-t-other; do userdel "$u" 2>/dev/null || true; done
rm -rf "$PIDS"
