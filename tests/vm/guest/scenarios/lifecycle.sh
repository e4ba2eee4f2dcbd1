# shellcheck shell=bash
# vm: needs=deb boot=2 order=20 dists=all
# 8. Lifecycle: install the previous version, edit a setting, upgrade (edit kept, service
#    restarted, state kept); remove (stopped, config kept); purge (config, state and
#    cache gone, AppArmor profile unloaded). Nothing makes /var/log/oneiric (journald has
#    the logs): checked absent throughout.
new=$(deb_path)
old=$PKGS/oneiric-old.deb
[ -f "$old" ] || fail "no lower-version .deb in the payload"
newv=$(dpkg-deb -f "$new" Version); oldv=$(dpkg-deb -f "$old" Version)
dpkg --compare-versions "$oldv" lt "$newv" || fail "$oldv is not lower than $newv"

# Start from nothing (earlier scenarios installed the package).
if dpkg-query -W oneiric >/dev/null 2>&1; then apt-get purge -y oneiric </dev/null; fi

apt-get install -y "$old" </dev/null || fail "installing $oldv failed"
expect_eq "installed version" "$(installed_version)" "$oldv"
wait_healthy 90

# Edit a setting (a conffile): a local candidate in adapters.yml, then reload.
conffiles=$(dpkg-query -W -f '${Conffiles}\n' oneiric)
grep -q ' /etc/oneiric/adapters.yml ' <<<"$conffiles" || fail "/etc/oneiric/adapters.yml is not a conffile: $conffiles"
rewrite /etc/oneiric/adapters.yml <<'EOM'
# edited by the VM test
selections: {}
provider_settings: {}
options: {}
candidates:
  - {key: vmtest-edit, provider: edited, factory: "builtin:memory", priority: 1}
EOM
systemctl reload oneiric || fail "reload after editing adapters.yml exited $?"
expect_eq "served local candidate" "$(http_get /v1/resolve/adapter/vmtest-edit | json_field provider)" edited
# State: a paused key.
oneiric pause adapter cache || fail "pause exited $?"
pid=$(main_pid)

apt-get install -y "$new" </dev/null || fail "upgrading to $newv failed"
expect_eq "installed version after upgrade" "$(installed_version)" "$newv"
wait_healthy 90
[ "$(main_pid)" != "$pid" ] || fail "service not restarted by the upgrade (MainPID $pid unchanged)"
grep -q '^# edited by the VM test' /etc/oneiric/adapters.yml || fail "upgrade replaced the edited adapters.yml"
ls /etc/oneiric/
copies=$(find /etc/oneiric -maxdepth 1 -regextype posix-extended -regex '.*\.dpkg-(dist|new|old)$')
[ -z "$copies" ] || fail "dpkg left conffile copies in /etc/oneiric: $copies"
expect_eq "served local candidate after upgrade" "$(http_get /v1/resolve/adapter/vmtest-edit | json_field provider)" edited
oneiric status --json | tr -d ' \n' | grep '"key":"cache"[^}]*"paused":true' >/dev/null || fail "pause of adapter/cache lost across the upgrade"

apt-get remove -y oneiric </dev/null || fail "apt-get remove failed"
if is_active; then fail "service still active after remove"; fi
if pgrep -x oneiric; then fail "oneiric process left after remove"; fi
[ ! -e /usr/bin/oneiric ] || fail "/usr/bin/oneiric still there after remove"
expect_eq "dpkg status after remove" "$(dpkg-query -W -f '${Status}' oneiric)" "deinstall ok config-files"
grep -q '^# edited by the VM test' /etc/oneiric/adapters.yml || fail "remove lost the edited adapters.yml"
[ -f "$MANIFEST" ] || fail "remove deleted $MANIFEST"

apt-get purge -y oneiric </dev/null || fail "apt-get purge failed"
if dpkg-query -W oneiric >/dev/null 2>&1; then fail "package still known to dpkg after purge"; fi
for d in /etc/oneiric /var/lib/oneiric /var/cache/oneiric; do
  [ ! -e "$d" ] || fail "$d still there after purge: $(find "$d" -maxdepth 1 | head -n 5 | tr '\n' ' ')"
done
[ ! -e /var/log/oneiric ] || fail "/var/log/oneiric exists (nothing should create it)"
[ ! -e /usr/lib/systemd/system/oneiric.service.d ] || fail "oneiric.service.d left after purge: $(ls /usr/lib/systemd/system/oneiric.service.d)"
if grep -E '^(oneiric|oneiric-service|/usr/bin/oneiric) \(' /sys/kernel/security/apparmor/profiles; then fail "AppArmor profile still loaded after purge"; fi
[ ! -e /etc/apparmor.d/usr.bin.oneiric ] || fail "/etc/apparmor.d/usr.bin.oneiric still there after purge"
if systemctl cat oneiric.service >/dev/null 2>&1; then fail "unit file still there after purge"; fi
true
