# shellcheck shell=bash
# vm: needs=deb repos=1 after=install boot=2 order=40 dists=all
# 10. apt from the signed repository (issue 17), exactly the README's steps, over file://:
#     keyring into /usr/share/keyrings, a deb822 source with Signed-By, apt-get update
#     (no warning), apt-get install oneiric -> running; then the next release is
#     published and `apt-get upgrade` (noninteractive, --force-confdef --force-confold)
#     restarts the service exactly once, keeps its state (pin, pause, drain, state and
#     cache files) and the admin's edited app.yml, with the new default beside it as
#     app.yml.dpkg-dist, while the unedited tasks.yml takes the new default; finally
#     apt-get update fails, and says why, on a tampered InRelease and on an expired one.
trap 'only_project_sources_end' EXIT
if dpkg-query -W oneiric >/dev/null 2>&1; then apt-get purge -y oneiric </dev/null; fi
rm -f /etc/apt/sources.list.d/oneiric.sources /usr/share/keyrings/oneiric-archive-keyring.gpg
only_project_sources
publish_tree r1
r1v=$(repo_version r1)
r2v=$(repo_version r2)

# README, "Debian and Ubuntu" (curl -fsSLo from the server; here cp from the file:// tree).
cp "$SERVED/keys/oneiric-archive-keyring.gpg" /usr/share/keyrings/oneiric-archive-keyring.gpg
cat >/etc/apt/sources.list.d/oneiric.sources <<EOM
Types: deb
URIs: file://$SERVED/apt
Suites: stable
Components: main
Signed-By: /usr/share/keyrings/oneiric-archive-keyring.gpg
EOM
apt_update_clean
apt-get install -y oneiric oneiric-archive-keyring </dev/null || fail "apt-get install oneiric exited $?"
expect_eq "installed version" "$(installed_version)" "$r1v"
dpkg-query -S /usr/share/keyrings/oneiric-archive-keyring.gpg | grep '^oneiric-archive-keyring:' >/dev/null ||
  fail "the keyring file is not owned by oneiric-archive-keyring"
wait_healthy 90

# State to keep: a local candidate and a pin on it (admin-edited adapters.yml), pause,
# drain, an edited app.yml; the state and cache files.
rewrite /etc/oneiric/adapters.yml <<'EOM'
# edited by the VM test (apt-repo): a second cache provider, pinned below
selections: {}
provider_settings: {}
options: {}
candidates:
  - {key: cache, provider: alt, factory: "builtin:memory", priority: -10}
EOM
sed -i 's/^environment: production$/environment: staging   # edited by the VM test/' /etc/oneiric/app.yml
systemctl reload oneiric || fail "reload after the edits exited $?"
oneiric swap adapter cache alt || fail "oneiric swap adapter cache alt exited $?"
oneiric pause adapter cache || fail "pause exited $?"
oneiric drain service status || fail "drain exited $?"
expect_eq "pinned provider" "$(http_get /v1/resolve/adapter/cache | json_field provider)" alt
mkdir -p /var/cache/oneiric/remote
echo "vmtest cached manifest stand-in" >/var/cache/oneiric/remote/vmtest-marker
state_sum() { (cd /var/lib/oneiric && find . -type f -name '*.json' -exec sha256sum {} + | sort; cd /var/cache/oneiric && find . -type f -exec sha256sum {} + | sort); }
before=$(state_sum)
inv=$(prop InvocationID)
n0=$(prop NRestarts)

# The next release is published; the user upgrades.
publish_tree r2
t0=$(date +%s)
sleep 1
apt_update_clean
# A client keeps asking through the upgrade (issue 18): oneiric.socket stays up, only
# the service is restarted, so nothing is refused.
load_start upgrade
out=$(timeout 300 "${APT_UPGRADE[@]}" upgrade </dev/null 2>&1) || { echo "$out"; fail "apt-get upgrade exited non-zero"; }
echo "$out"
expect_eq "installed version after upgrade" "$(installed_version)" "$r2v"
wait_healthy 90
sleep 2
load_stop upgrade "apt-get upgrade ($r1v -> $r2v)"
[ "$(prop InvocationID)" != "$inv" ] || fail "not restarted by the upgrade (InvocationID unchanged)"
expect_eq "NRestarts (no crash restarts)" "$(prop NRestarts)" "$n0"
j=$(unit_journal_since "$t0")
echo "$j"
expect_eq "starts of oneiric.service during the upgrade" "$(grep -c ' Started ' <<<"$j" || true)" 1
expect_eq "stops of oneiric.service during the upgrade" "$(grep -c ' Stopping ' <<<"$j" || true)" 1
grep -q '^environment: staging   # edited by the VM test' /etc/oneiric/app.yml || fail "the upgrade replaced the edited app.yml"
[ -f /etc/oneiric/app.yml.dpkg-dist ] || fail "no app.yml.dpkg-dist beside the edited app.yml: $(ls /etc/oneiric)"
grep -q '^# New in the next release' /etc/oneiric/app.yml.dpkg-dist || fail "app.yml.dpkg-dist is not the new default"
grep -q '^# New in the next release' /etc/oneiric/tasks.yml || fail "the unedited tasks.yml did not take the new default"
if [ -e /etc/oneiric/tasks.yml.dpkg-dist ] || [ -e /etc/oneiric/tasks.yml.dpkg-old ]; then fail "dpkg kept copies of the unedited tasks.yml"; fi
grep -q 'provider: alt' /etc/oneiric/adapters.yml || fail "the upgrade lost the edited adapters.yml"
expect_eq "pinned provider after the upgrade" "$(http_get /v1/resolve/adapter/cache | json_field provider)" alt
entry_flag cache paused || fail "pause of adapter/cache lost across the upgrade"
entry_flag status draining || fail "drain of service/status lost across the upgrade"
[ -f /var/cache/oneiric/remote/vmtest-marker ] || fail "the upgrade emptied /var/cache/oneiric/remote"
after=$(state_sum)
note "state and cache files before: $before"
note "after: $after"
grep -F "$(grep vmtest-marker <<<"$before")" <<<"$after" >/dev/null || fail "cache file changed across the upgrade"
oneiric pause adapter cache --resume
oneiric drain service status --clear

# Tampered InRelease: one hash changed in the signed text.
rm -rf /srv/tampered && cp -a "$REPOS/r2" /srv/tampered
sed -i '0,/^ [0-9a-f]\{64\} /s/^ \([0-9a-f]\)[0-9a-f]/ \1x/' /srv/tampered/apt/dists/stable/InRelease
cmp -s "$REPOS/r2/apt/dists/stable/InRelease" /srv/tampered/apt/dists/stable/InRelease && fail "tampering changed nothing"
publish_tree /srv/tampered
apt_update_refused "tampered InRelease" 'BADSIG|signatures were invalid|manipulated|signature verification failed'
expect_eq "candidate after the refused update" "$(apt-cache policy oneiric | sed -n 's/^ *Candidate: //p')" "$r2v"

# Expired: published on 2026-01-01 with Valid-Until 7 days later.
publish_tree expired
apt_update_refused "expired InRelease" 'no longer valid|expired'
expect_eq "candidate after the refused update" "$(apt-cache policy oneiric | sed -n 's/^ *Candidate: //p')" "$r2v"

publish_tree r2
apt_update_clean
rm -rf /srv/tampered
