# shellcheck shell=bash
# vm: needs=deb after=install boot=1 order=30 dists=all
# 3. Reload: new manifest -> `systemctl reload` succeeds and the new resolution is served;
#    broken manifest -> `systemctl reload` fails, the service stays up and serves the old one.
pid=$(main_pid)
t0=$(date +%s)
cp -a "$MANIFEST" "$STATE/manifest.orig"
trap 'cat "$STATE/manifest.orig" >"$MANIFEST"; systemctl reload oneiric || true' EXIT

manifest() { # manifest ALPHA-PRIORITY BETA-PRIORITY
  rewrite "$MANIFEST" <<EOM
source: vmtest
entries:
  - {domain: adapter, key: vmtest, provider: alpha, factory: "builtin:memory", priority: $1}
  - {domain: adapter, key: vmtest, provider: beta, factory: "builtin:memory", priority: $2}
EOM
}
served() { http_get /v1/resolve/adapter/vmtest | json_field provider; }

manifest 10 5
systemctl reload oneiric || fail "systemctl reload with a good manifest exited $?"
expect_eq "served after reload 1" "$(served)" alpha
manifest 1 5
systemctl reload oneiric || fail "systemctl reload with a changed manifest exited $?"
expect_eq "served after reload 2" "$(served)" beta
expect_eq "oneiric resolve adapter vmtest" "$(oneiric resolve adapter vmtest)" beta

rewrite "$MANIFEST" <<'EOM'
source: vmtest
entries:
  - {domain: adapter, key: vmtest, provider: [broken
EOM
if systemctl reload oneiric; then fail "systemctl reload with a broken manifest succeeded"; fi
sleep 1
is_active || fail "service not active after a rejected reload: $(systemctl is-active oneiric)"
expect_eq "MainPID (no restart across reloads)" "$(main_pid)" "$pid"
expect_eq "served after the rejected reload" "$(served)" beta
expect_eq "GET /readyz after the rejected reload" "$(http_code /readyz)" 200
[ -n "$(journalctl -u oneiric --since "@$t0" ONEIRIC_EVENT=reload_failed -o cat --no-pager)" ] \
  || fail "no ONEIRIC_EVENT=reload_failed in the journal"
[ -n "$(journalctl -u oneiric --since "@$t0" ONEIRIC_EVENT=reload -o cat --no-pager)" ] \
  || fail "no ONEIRIC_EVENT=reload in the journal"

trap - EXIT
cat "$STATE/manifest.orig" >"$MANIFEST"
systemctl reload oneiric || fail "reload back to the packaged manifest failed"
expect_eq "served after restoring the manifest" "$(http_get /v1/resolve/adapter/cache | json_field provider)" memory
