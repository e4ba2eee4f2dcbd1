# shellcheck shell=bash
# vm: needs=deb after=install boot=2 reboot=1 order=10 dists=all
# 7. Reboot: the service comes back at boot by itself.
before=$(cat "$STATE/boot-before-reboot")
now=$(cat /proc/sys/kernel/random/boot_id)
[ "$before" != "$now" ] || fail "no reboot happened (same boot id)"
expect_eq "is-enabled" "$(systemctl is-enabled oneiric)" enabled
wait_healthy 60
[ -n "$(journalctl -b 0 -u oneiric ONEIRIC_EVENT=ready -o cat --no-pager)" ] || fail "no ONEIRIC_EVENT=ready in this boot's journal"
expect_eq "NRestarts this boot" "$(prop NRestarts)" 0
expect_eq "/v1/resolve/adapter/cache" "$(http_get /v1/resolve/adapter/cache | json_field provider)" memory
