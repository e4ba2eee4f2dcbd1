# shellcheck shell=bash
# vm: needs=rpm repos=1 boot=2 order=45 dists=trixie
# 13. dnf from the signed dnf repository (issue 17), in the Debian 13 guest with
#     Debian's dnf. TEST-ONLY STAND-IN: the rpm database here knows no system package,
#     so `oneiric-vmtest-system-provides` (made by tests/packaging/repos.sh, installed
#     with rpm -i, never published) provides what the .rpm requires (glibc's libc.so.6
#     symbols, libsqlite3.so.0, systemd, /bin/sh, ...), which Debian has as .debs.
#     The README's steps: the .repo file (gpgcheck=1, repo_gpgcheck=1, gpgkey=) into
#     /etc/yum.repos.d, `dnf install oneiric` (the key is imported from gpgkey= after
#     the repository metadata verifies), `systemctl enable --now oneiric`; then the next
#     release and `dnf upgrade`: restarted exactly once, the edited app.yml kept and
#     the new default as app.yml.rpmnew. A tampered repomd.xml and an unsigned package
#     are refused.
command -v dnf >/dev/null || fail "no dnf in the guest image (build-image.sh installs it on trixie)"
if dpkg-query -W oneiric >/dev/null 2>&1; then apt-get purge -y oneiric </dev/null; fi
if rpm -q oneiric >/dev/null 2>&1; then rpm -e oneiric; fi
rpm -q oneiric-vmtest-system-provides >/dev/null 2>&1 || rpm -i "$REPOS/vmtest-system-provides.rpm"
reposdir=/etc/yum.repos.d
mkdir -p "$reposdir"
trap 'rm -f "$reposdir/oneiric.repo"; rm -rf /srv/tampered-rpm' EXIT
# --releasever: dnf reads it from the package providing system-release, which no Debian has.
DNF=(dnf -y --releasever=13 --setopt=install_weak_deps=False "--setopt=reposdir=$reposdir")
publish_tree r1
# README, "Fedora, RHEL": the .repo file from the server.
cp "$SERVED/oneiric.repo" "$reposdir/oneiric.repo"
sed -i "s|^baseurl=.*|baseurl=file://$SERVED/rpm|; s|^gpgkey=.*|gpgkey=file://$SERVED/keys/oneiric-archive-keyring.asc|" "$reposdir/oneiric.repo"
cat "$reposdir/oneiric.repo"
grep -qx 'gpgcheck=1' "$reposdir/oneiric.repo" || fail "the .repo file has no gpgcheck=1"
grep -qx 'repo_gpgcheck=1' "$reposdir/oneiric.repo" || fail "the .repo file has no repo_gpgcheck=1"
"${DNF[@]}" --disablerepo='*' --enablerepo=oneiric install oneiric </dev/null || fail "dnf install oneiric exited $?"
r1v=$(rpm -q --qf '%{VERSION}' oneiric)
rpm -q gpg-pubkey >/dev/null || fail "dnf did not import the repository key"
systemctl enable --now oneiric || fail "systemctl enable --now oneiric exited $?"
wait_healthy 90
# enable took the socket unit along (Also=), and --now started it with the service.
expect_eq "oneiric.socket enabled" "$(systemctl is-enabled oneiric.socket)" enabled
expect_eq "oneiric.socket active" "$(systemctl is-active oneiric.socket)" active
sed -i 's/^environment: production$/environment: staging   # edited by the VM test/' /etc/oneiric/app.yml
inv=$(prop InvocationID)
t0=$(date +%s)
sleep 1

publish_tree r2
# A client keeps asking through the upgrade (issue 18): %postun try-restarts the service
# only; oneiric.socket keeps the listeners.
load_start upgrade
"${DNF[@]}" --disablerepo='*' --enablerepo=oneiric --refresh upgrade </dev/null || fail "dnf upgrade exited $?"
r2v=$(rpm -q --qf '%{VERSION}' oneiric)
[ "$r2v" != "$r1v" ] || fail "dnf upgrade did not change the version ($r1v)"
wait_healthy 90
sleep 2
load_stop upgrade "dnf upgrade ($r1v -> $r2v)"
[ "$(prop InvocationID)" != "$inv" ] || fail "not restarted by dnf upgrade"
expect_eq "starts during the upgrade" "$(unit_journal_since "$t0" | grep -c ' Started ' || true)" 1
grep -q '^environment: staging   # edited by the VM test' /etc/oneiric/app.yml || fail "dnf upgrade replaced the edited app.yml"
grep -q '^# New in the next release' /etc/oneiric/app.yml.rpmnew || fail "no app.yml.rpmnew with the new default"
grep -q '^# New in the next release' /etc/oneiric/tasks.yml || fail "the unedited tasks.yml did not take the new default"

# A tampered repomd.xml: refused.
rm -rf /srv/tampered-rpm && cp -a "$REPOS/r2" /srv/tampered-rpm
sed -i 's|<revision>|<revision>1|' /srv/tampered-rpm/rpm/repodata/repomd.xml
publish_tree /srv/tampered-rpm
if "${DNF[@]}" --disablerepo='*' --enablerepo=oneiric --refresh makecache </dev/null >/tmp/dnf.out 2>&1; then
  cat /tmp/dnf.out; fail "dnf accepted a tampered repomd.xml"
fi
cat /tmp/dnf.out
grep -E 'GPG signature verification error|Bad GPG signature|signature' /tmp/dnf.out >/dev/null || fail "dnf does not say the repomd.xml signature is bad"
# An unsigned package (R3, not signed) in a correctly signed repository (the tree
# "unsigned" of tests/packaging/repos.sh): refused by gpgcheck=1.
publish_tree unsigned
if "${DNF[@]}" --disablerepo='*' --enablerepo=oneiric --refresh upgrade </dev/null >/tmp/dnf.out 2>&1; then
  cat /tmp/dnf.out; fail "dnf installed an unsigned package"
fi
cat /tmp/dnf.out
expect_eq "version still" "$(rpm -q --qf '%{VERSION}' oneiric)" "$r2v"
rpm -e oneiric || fail "rpm -e oneiric exited $?"
rpm -e oneiric-vmtest-system-provides
