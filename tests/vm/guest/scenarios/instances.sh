# shellcheck shell=bash
# vm: needs=deb after=install boot=1 order=65 dists=all
# Instances (issue 18): oneiric@staging and oneiric@production side by side with the default
# service, each with its own settings, port, state, cache and control socket, addressed by the
# CLI with --instance / ONEIRIC_INSTANCE. A reload of one leaves the others untouched, and a
# restart of one refuses none of its clients (its HTTP listener comes back from the fd store).
INSTANCES="staging production"
cleanup() {
  local i
  for i in $INSTANCES; do
    systemctl stop "oneiric@$i.socket" "oneiric@$i.service" || true
    systemctl reset-failed "oneiric@$i.service" "oneiric@$i.socket" 2>/dev/null || true
    rm -rf "/etc/oneiric/$i" "/var/lib/oneiric/$i" "/var/cache/oneiric/$i" "/run/oneiric/$i"
  done
}
trap cleanup EXIT

instance_conf() { # instance_conf NAME PORT PROVIDER
  # The settings directory is the admin's to create (the template has no
  # ConfigurationDirectory=: systemd would make it root-only).
  install -d -m 0750 -o root -g oneiric "/etc/oneiric/$1"
  printf 'port: %s\n' "$2" >"/etc/oneiric/$1/http.yml"
  instance_manifest "$1" "$3"
  chown root:oneiric "/etc/oneiric/$1/http.yml"
  chmod 0640 "/etc/oneiric/$1/http.yml"
}
instance_manifest() { # instance_manifest NAME PROVIDER
  cat >"/etc/oneiric/$1/manifest.yaml" <<EOM
source: vmtest-$1
entries:
  - {domain: adapter, key: vmtest, provider: $2, factory: "builtin:memory", priority: 10}
EOM
  chown root:oneiric "/etc/oneiric/$1/manifest.yaml"
  chmod 0640 "/etc/oneiric/$1/manifest.yaml"
}
served() { curl -fsS --max-time 10 "http://127.0.0.1:$1/v1/resolve/adapter/vmtest" | json_field provider; }
both_healthy() {
  curl -fsS --max-time 5 -o /dev/null http://127.0.0.1:9101/healthz &&
    curl -fsS --max-time 5 -o /dev/null http://127.0.0.1:9102/healthz
}
ipid() { systemctl show -P MainPID "oneiric@$1.service"; }

wait_healthy 60
default_pid=$(main_pid)
instance_conf staging 9101 alpha
instance_conf production 9102 beta
systemctl start oneiric@staging.service oneiric@production.service ||
  fail "systemctl start of the instances exited $?: $(journalctl -u 'oneiric@*' -n 20 --no-pager -o cat)"
wait_for 90 "both instances answer /healthz" both_healthy

# Each its own: port, answer, directories, control socket, sockets unit.
expect_eq "staging on :9101" "$(served 9101)" alpha
expect_eq "production on :9102" "$(served 9102)" beta
expect_eq "the default service on :9090" "$(http_get /v1/resolve/adapter/cache | json_field provider)" memory
expect_eq "oneiric --instance staging resolve" "$(oneiric --instance staging resolve adapter vmtest)" alpha
expect_eq "ONEIRIC_INSTANCE=production oneiric resolve" "$(ONEIRIC_INSTANCE=production oneiric resolve adapter vmtest)" beta
for i in $INSTANCES; do
  expect_eq "oneiric@$i.socket" "$(systemctl is-active "oneiric@$i.socket")" active
  expect_eq "/run/oneiric/$i/control.sock" "$(stat -c '%F %a %U:%G' "/run/oneiric/$i/control.sock")" "socket 660 oneiric:oneiric"
  expect_eq "/var/lib/oneiric/$i" "$(stat -c '%U %a' "/var/lib/oneiric/$i")" "oneiric 750"
  expect_eq "/var/cache/oneiric/$i" "$(stat -c '%U %a' "/var/cache/oneiric/$i")" "oneiric 750"
  oneiric --instance "$i" status >/dev/null || fail "oneiric --instance $i status exited $?"
  # The template's hardening is the unit's (derived from it, see packaging/instance-units.sh).
  expect_eq "oneiric@$i ProtectSystem" "$(systemctl show -P ProtectSystem "oneiric@$i.service")" strict
done

# A reload of staging: staging serves its new manifest; production and the default service
# keep their process, their answer, and log no reload.
prod_pid=$(ipid production)
stag_pid=$(ipid staging)
t1=$(date +%s)
sleep 1
instance_manifest staging gamma
systemctl reload oneiric@staging.service || fail "systemctl reload oneiric@staging exited $?"
expect_eq "staging after its reload" "$(served 9101)" gamma
expect_eq "staging MainPID across its reload" "$(ipid staging)" "$stag_pid"
expect_eq "production after staging's reload" "$(served 9102)" beta
expect_eq "production MainPID" "$(ipid production)" "$prod_pid"
expect_eq "default MainPID" "$(main_pid)" "$default_pid"
[ -n "$(journalctl -u oneiric@staging.service --since "@$t1" ONEIRIC_EVENT=reload -o cat --no-pager)" ] ||
  fail "no ONEIRIC_EVENT=reload of oneiric@staging in the journal"
[ -z "$(journalctl -u oneiric@production.service --since "@$t1" ONEIRIC_EVENT=reload -o cat --no-pager)" ] ||
  fail "oneiric@production logged a reload when only staging was reloaded"
# Through its control socket, as an admin would.
instance_manifest staging delta
oneiric --instance staging reload || fail "oneiric --instance staging reload exited $?"
expect_eq "staging after oneiric --instance staging reload" "$(served 9101)" delta
expect_eq "production still" "$(served 9102)" beta

# A restart of staging: its HTTP listener (bound by the service, the template's socket unit
# holds only the control socket) comes back from the fd store; no client is refused.
LOAD_URL=http://127.0.0.1:9101/v1/resolve/adapter/vmtest load_start staging
systemctl restart oneiric@staging.service
wait_for 60 "oneiric@staging answers after its restart" curl -fsS --max-time 5 -o /dev/null http://127.0.0.1:9101/healthz
sleep 2
load_stop staging "instance restart (systemctl restart oneiric@staging, HTTP from the fd store)"
[ "$(ipid staging)" != "$stag_pid" ] || fail "oneiric@staging has the same MainPID after a restart"
journalctl -u oneiric@staging.service --since "@$t1" -o cat --no-pager | grep 'from the fd store' >/dev/null ||
  fail "oneiric@staging did not take its HTTP listener from the fd store after the restart"
expect_eq "production MainPID after staging's restart" "$(ipid production)" "$prod_pid"
