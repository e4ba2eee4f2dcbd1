# shellcheck shell=bash
# vm: needs=deb after=install boot=1 order=70 dists=all qemu=1
# 6. `systemd-analyze security` at or below 1.5; AppArmor profile loaded in enforce
#    mode, the service confined, no apparmor="DENIED" so far.
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
prof=$(grep -E '^(oneiric|/usr/bin/oneiric) \((enforce|complain|kill|unconfined)\)$' /sys/kernel/security/apparmor/profiles | head -n1)
[ -n "$prof" ] || fail "no AppArmor profile for /usr/bin/oneiric loaded"
name=${prof% (*}
expect_eq "mode of profile $name" "$prof" "$name (enforce)"
awk '/profiles are in enforce mode/ { f=1; next } /profiles are in/ { f=0 } f' "$STATE/aa-status.txt" | grep -E "^[[:space:]]*$name\$" >/dev/null \
  || fail "aa-status does not list $name among enforce-mode profiles"
pid=$(main_pid)
expect_eq "AppArmor label of the main process" "$(tr -d '\0' <"/proc/$pid/attr/current")" "$name (enforce)"
awk '/processes are in enforce mode/ { f=1; next } /processes are/ { f=0 } f' "$STATE/aa-status.txt" | grep "($pid)" >/dev/null \
  || fail "aa-status does not list the main process $pid as enforced"
d=$(journalctl -k --no-pager -o cat | grep 'apparmor="DENIED"' || true)
[ -z "$d" ] || fail "apparmor=\"DENIED\" in the kernel log: $(head -n 3 <<<"$d" | sed 's/.*apparmor=/apparmor=/' | tr '\n' ' ')"
