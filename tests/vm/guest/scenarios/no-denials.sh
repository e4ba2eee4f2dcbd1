# shellcheck shell=bash
# vm: needs=deb after=install boot=2 order=90 dists=all qemu=1
# 6b. No apparmor="DENIED" in the kernel log across all scenarios and boots. The audit
#     path is proven to work by the profile load messages (apparmor="STATUS").
j="$(journalctl --no-pager -o cat _TRANSPORT=kernel)
$(journalctl --no-pager -o cat _TRANSPORT=audit)
$(dmesg 2>/dev/null)"
grep 'apparmor="STATUS"' <<<"$j" | grep 'name="\(oneiric-service\|oneiric\|/usr/bin/oneiric\)"' >/dev/null \
  || fail "no apparmor=\"STATUS\" record for the oneiric profile: kernel audit messages do not reach the journal, the DENIED check would prove nothing"
# security.sh provokes two denials on purpose (its oneiric-aa-probe directories).
d=$(grep 'apparmor="DENIED"' <<<"$j" | grep -v 'name="/\(root\|etc\)/oneiric-aa-probe' || true)
[ -z "$d" ] || fail "apparmor=\"DENIED\" in the kernel log: $(head -n 5 <<<"$d")"
