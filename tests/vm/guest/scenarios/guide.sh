# shellcheck shell=bash
# vm: needs=deb after=install boot=1 order=20 dists=all
# 2. The deployment guide's checks, on the packaged paths.
ver=$(installed_version); upstream=${ver%%-*}; upstream=${upstream%%~*}
# `sudo -u oneiric oneiric health --probe`
runuser -u oneiric -- oneiric health --probe || fail "health --probe as user oneiric exited $?"
oneiric health --probe || fail "health --probe as root exited $?"
expect_eq "oneiric --version" "$(oneiric --version)" "oneiric $upstream"
oneiric check || fail "oneiric check exited $?"

# journalctl -u oneiric, queried by a structured field (native journald, not stdout).
journalctl -u oneiric -n 20 --no-pager
journalctl -u oneiric -F ONEIRIC_EVENT
[ -n "$(journalctl -u oneiric ONEIRIC_EVENT=ready _TRANSPORT=journal -o cat --no-pager)" ] \
  || fail "journalctl -u oneiric ONEIRIC_EVENT=ready _TRANSPORT=journal found nothing"
journalctl -u oneiric ONEIRIC_EVENT=ready -o json --no-pager | grep '"SYSLOG_IDENTIFIER":"oneiric"' >/dev/null \
  || fail "ready record has no SYSLOG_IDENTIFIER=oneiric"
[ -z "$(journalctl -u oneiric ONEIRIC_EVENT=no-such-event -o cat --no-pager)" ] || fail "field query matched a non-existent value"

# Metrics on 127.0.0.1:9090/metrics (Prometheus text format).
m=$(http_get /metrics) || fail "GET /metrics failed"
grep -q '^# TYPE oneiric_' <<<"$m" || fail "/metrics has no oneiric_ metric family"
grep -qx 'oneiric_ready 1' <<<"$m" || fail "/metrics: oneiric_ready is not 1"
grep -q "^oneiric_build_info{version=\"$upstream\"} 1" <<<"$m" || fail "/metrics: no oneiric_build_info for $upstream"

# HTTP API.
expect_eq "GET /healthz" "$(http_code /healthz)" 200
expect_eq "GET /readyz" "$(http_code /readyz)" 200
s=$(http_get /v1/status) || fail "GET /v1/status failed"
grep -q '"ready":true' <<<"$s" || fail "/v1/status not ready: ${s:0:300}"
expect_eq "/v1/status version" "$(json_field version <<<"$s")" "$upstream"
# The packaged default manifest: adapter/cache -> memory.
r=$(http_get /v1/resolve/adapter/cache) || fail "GET /v1/resolve/adapter/cache failed"
expect_eq "/v1/resolve/adapter/cache provider" "$(json_field provider <<<"$r")" memory
expect_eq "oneiric resolve adapter cache" "$(oneiric resolve adapter cache)" memory
expect_eq "GET /v1/explain/adapter/cache" "$(http_code /v1/explain/adapter/cache)" 200
expect_eq "GET /v1/resolve/adapter/no-such-key" "$(http_code /v1/resolve/adapter/no-such-key)" 404
expect_eq "POST /v1/status" "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$HTTP/v1/status")" 405
# Listens on loopback only.
ss -Hltn 'sport = :9090' | tee "$STATE/ss.txt"
grep -q '127.0.0.1:9090' "$STATE/ss.txt" || fail "not listening on 127.0.0.1:9090"
if grep -qv '127.0.0.1:9090' "$STATE/ss.txt"; then fail "listening on more than 127.0.0.1:9090"; fi
