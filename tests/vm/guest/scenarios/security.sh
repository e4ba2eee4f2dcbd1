# shellcheck shell=bash
# vm: needs=deb after=install boot=1 order=70 dists=all qemu=1
# 6. `systemd-analyze security` at or below 1.5; AppArmor profiles loaded in enforce
#    mode, the service confined by its own, no apparmor="DENIED" so far; the
#    service's profile refuses writes to /root and /etc that the CLI's allows.
wait_healthy 60
systemd-analyze security oneiric.service --no-pager >"$STATE/security.txt" 2>&1 || true
tail -n 5 "$STATE/security.txt"
level=$(sed -n 's/.*Overall exposure level for oneiric.service: \([0-9.]*\).*/\1/p' "$STATE/security.txt")
[ -n "$level" ] || fail "no exposure level in systemd-analyze security output"
note "exposure $level"
awk -v l="$level" 'BEGIN { exit !(l <= 1.5) }' || fail "exposure level $level > 1.5"

aa-enabled --quiet || fail "AppArmor not enabled"
aa-status >"$STATE/aa-status.txt" 2>&1 || true
cat "$STATE/aa-status.txt"
# Two profiles (apparmor/usr.bin.oneiric): the service's, entered by the unit's
# AppArmorProfile=, and the CLI's, attached to the binary's path.
for name in oneiric-service oneiric; do
  grep -qxF "$name (enforce)" /sys/kernel/security/apparmor/profiles \
    || fail "AppArmor profile $name not loaded in enforce mode: $(grep oneiric /sys/kernel/security/apparmor/profiles | tr '\n' ';')"
  awk '/profiles are in enforce mode/ { f=1; next } /profiles are in/ { f=0 } f' "$STATE/aa-status.txt" | grep -E "^[[:space:]]*$name\$" >/dev/null \
    || fail "aa-status does not list $name among enforce-mode profiles"
done
pid=$(main_pid)
expect_eq "AppArmor label of the main process" "$(tr -d '\0' <"/proc/$pid/attr/current")" "oneiric-service (enforce)"
awk '/processes are in enforce mode/ { f=1; next } /processes are/ { f=0 } f' "$STATE/aa-status.txt" | grep "($pid)" >/dev/null \
  || fail "aa-status does not list the main process $pid as enforced"
d=$(journalctl -k --no-pager -o cat | grep 'apparmor="DENIED"' || true)
[ -z "$d" ] || fail "apparmor=\"DENIED\" in the kernel log: $(head -n 3 <<<"$d" | sed 's/.*apparmor=/apparmor=/' | tr '\n' ' ')"

# The service's profile refuses what the CLI's allows root: a write under /root,
# and under /etc for both. Run as root under oneiric-service by systemd itself,
# the way the unit enters it. no-denials.sh leaves out these two names.
for dir in /root/oneiric-aa-probe /etc/oneiric-aa-probe; do
  rm -rf "$dir"
  if systemd-run --quiet --wait --pipe --collect -p AppArmorProfile=oneiric-service \
    /usr/bin/oneiric man --out-dir "$dir" >"$STATE/aa-probe.txt" 2>&1; then
    fail "under oneiric-service, root wrote $dir: $(cat "$STATE/aa-probe.txt")"
  fi
  [ ! -e "$dir" ] || fail "$dir was created under oneiric-service"
  found=
  for _ in $(seq 1 20); do
    if journalctl -k --no-pager -o cat | grep 'apparmor="DENIED"' | grep 'profile="oneiric-service"' | grep -qF "name=\"$dir"; then
      found=1
      break
    fi
    sleep 0.5
  done
  [ -n "$found" ] || fail "no apparmor=\"DENIED\" record for $dir under oneiric-service"
  note "oneiric-service refused $dir: $(tail -n 1 "$STATE/aa-probe.txt")"
done
/usr/bin/oneiric man --out-dir /root/oneiric-aa-cli || fail "the CLI's profile refused root's home"
rm -rf /root/oneiric-aa-cli
