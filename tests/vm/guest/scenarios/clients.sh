# shellcheck shell=bash
# vm: needs=deb after=install boot=1 order=35 dists=all
# 3b. Socket activation (issue 18): oneiric.socket holds the listeners, so a client loop
#     sees no refused connection and no failed request across `systemctl restart` and
#     `systemctl reload`; a stopped service is started again by a client's connection. The
#     restarted process answers from the state the previous one saved.
systemctl reset-failed oneiric
wait_healthy 60
expect_eq "oneiric.socket enabled" "$(systemctl is-enabled oneiric.socket)" enabled
expect_eq "oneiric.socket active" "$(systemctl is-active oneiric.socket)" active
# The listener is systemd's (pid 1) as well as the service's.
ss -ltnpH 'sport = :9090' | grep '"systemd",pid=1,' >/dev/null ||
  fail "127.0.0.1:9090 is not held by systemd: $(ss -ltnpH 'sport = :9090')"
[ -S /run/oneiric/control.sock ] || fail "no control socket"
expect_eq "control socket mode and owner" "$(stat -c '%a %U %G' /run/oneiric/control.sock)" "660 oneiric oneiric"

pid=$(main_pid)
t0=$(date +%s)
load_start restart
systemctl restart oneiric || fail "systemctl restart oneiric exited $?"
new_pid_up() { p=$(main_pid); [ "$p" != 0 ] && [ "$p" != "$pid" ] && service_healthy; }
wait_for 90 "a new main process after systemctl restart" new_pid_up
sleep 2
load_stop restart "systemctl restart"
journalctl --no-pager -o cat -u oneiric --since "@$t0" | grep 'listening on sockets passed by systemd: http from the socket unit, control from the socket unit' >/dev/null ||
  fail "the restarted service does not say it serves the socket unit's listeners"
# The new process found the state the previous one saved good, and answered from it
# before its first load. Which of the two finishes first is a race (six candidates load in
# about the time the saved state takes to check): a first load that won is said, and
# counted as a pass only because the state was checked good; a state refused or not found
# fails. tests/service.rs makes the first load slow and requires the answers.
restart_log=$(journalctl --no-pager -o cat -u oneiric --since "@$t0")
if line=$(grep -m1 'answering from the state saved at' <<<"$restart_log"); then
  note "restart: $line"
elif line=$(grep -m1 'the saved state was good but not needed' <<<"$restart_log"); then
  note "restart: $line"
else
  fail "the restarted service did not find its saved state good: $(grep -m1 'saved state' <<<"$restart_log")"
fi
[ -s /var/lib/oneiric/served_snapshot.json ] || fail "no /var/lib/oneiric/served_snapshot.json"

pid=$(main_pid)
load_start reload
systemctl reload oneiric || fail "systemctl reload oneiric exited $?"
sleep 2
load_stop reload "systemctl reload"
expect_eq "MainPID (a reload is not a restart)" "$(main_pid)" "$pid"

# Stopped, the socket still listens; a client's connection starts the service again.
systemctl stop oneiric
if is_active; then fail "still active after systemctl stop oneiric"; fi
expect_eq "oneiric.socket active while the service is stopped" "$(systemctl is-active oneiric.socket)" active
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 90 "$HTTP/healthz" || true)
expect_eq "GET /healthz to a stopped service (started by the socket)" "$code" 200
wait_healthy 60
