#!/bin/bash
# Static test of the .deb and .rpm packages (issue 5).
#
#   tests/packaging/run.sh            build the packages (x86_64 and arm64), then check them
#   tests/packaging/run.sh DEB RPM [DEB_ARM64 RPM_ARM64]    check already built packages
#
# The arm64 .deb and .rpm (issue 21) are built from the same packaging/ files, the binary
# in the arm64 chroot of packaging/chroot.sh (Debian's cross toolchain, offline), checked by
# tests/packaging/arm64.sh against the x86_64 ones, and published beside them in the
# repositories. ONEIRIC_PKG_ARM64=0 leaves them out (the check prints SKIP); =later (the
# default plan of tests/run-all.sh) leaves them to its packaging-arm64 stage.
#
# Runs as root on a fresh Debian 12: installs its tools with apt-get when they
# are missing (lintian, rpm, rpmlint, apparmor, systemd, cpio, dpkg-dev; repos.sh: reprepro,
# createrepo-c, gnupg, faketime; sbom.sh: cargo-cyclonedx from crates.io). Needs no running
# systemd: systemd-analyze runs offline against the extracted packages.
# Prints `PASS name` / `FAIL name: reason` per check, then `N passed, N failed`
# (tests/lib.sh); exits non-zero if any check failed.
set -u
set -o pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
ARGS=()
for a in "$@"; do ARGS+=("$(realpath "$a")"); done
set -- "${ARGS[@]}"
cd "$REPO" || exit 1
HERE=tests/packaging
WORK=$REPO/target/packaging-test
T_LOG_TAG=packaging
# shellcheck source=tests/lib.sh
. "$REPO/tests/lib.sh"

# --- tools --------------------------------------------------------------------
# command -> Debian 12 package (all in bookworm main; checked with apt-cache policy)
declare -A TOOLS=(
	[lintian]=lintian [rpm]=rpm [rpm2cpio]=rpm [rpmlint]=rpmlint
	[apparmor_parser]=apparmor [systemd-analyze]=systemd [systemd-sysusers]=systemd
	[systemd-tmpfiles]=systemd [cpio]=cpio [dpkg-deb]=dpkg [dpkg-shlibdeps]=dpkg-dev
	[promtool]=prometheus [objdump]=binutils
)
mkdir -p "$REPO/target"
missing=()
for cmd in "${!TOOLS[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${TOOLS[$cmd]}")
done
[ -f /usr/share/apparmor-features/features ] || missing+=(apparmor)
if [ ${#missing[@]} -gt 0 ]; then
	pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		t_log "installing: $pkgs"
		# shellcheck disable=SC2086 # one word per package name
		if T_APT_LOG=$REPO/target/packaging-apt.log t_apt_install $pkgs; then
			t_pass tools
		else
			t_fail tools "apt-get install $pkgs failed (see target/packaging-apt.log)"
			t_finish
		fi
	else
		t_fail tools "missing $pkgs and cannot apt-get install (not root)"
		t_finish
	fi
else
	t_pass tools
fi

rm -rf "$WORK"
mkdir -p "$WORK"

# --- build --------------------------------------------------------------------
BUILT_HERE=0
DEB_ARM64=${3:-}
RPM_ARM64=${4:-}
if [ $# -ge 2 ]; then
	DEB=$1
	RPM=$2
else
	BUILT_HERE=1
	if DEB=$(packaging/build-deb.sh 2>"$WORK/build-deb.log" | tail -n 1) && [ -f "$DEB" ]; then
		t_pass build-deb
	else
		t_fail build-deb "$(tail -n 1 "$WORK/build-deb.log")"
		t_finish
	fi
	if RPM=$(packaging/build-rpm.sh 2>"$WORK/build-rpm.log" | tail -n 1) && [ -f "$RPM" ]; then
		t_pass build-rpm
	else
		t_fail build-rpm "$(tail -n 1 "$WORK/build-rpm.log")"
		t_finish
	fi
fi
echo "deb: $DEB"
echo "rpm: $RPM"
if [ "$BUILT_HERE" = 1 ] && [ "${ONEIRIC_PKG_ARM64:-1}" = 1 ]; then
	t0=$SECONDS
	if DEB_ARM64=$(packaging/build-deb.sh arm64 2>"$WORK/build-deb-arm64.log" | tail -n 1) && [ -f "$DEB_ARM64" ] &&
		RPM_ARM64=$(packaging/build-rpm.sh aarch64 2>"$WORK/build-rpm-arm64.log" | tail -n 1) && [ -f "$RPM_ARM64" ]; then
		t_pass "build-arm64 ($((SECONDS - t0)) s)"
		echo "deb (arm64): $DEB_ARM64"
		echo "rpm (arm64): $RPM_ARM64"
	else
		t_fail build-arm64 "$(tail -q -n 1 "$WORK"/build-*-arm64.log | tail -n 1)"
		DEB_ARM64="" RPM_ARM64=""
	fi
fi

# --- extract ------------------------------------------------------------------
DEBROOT=$WORK/deb-root
RPMROOT=$WORK/rpm-root
DEBCTL=$WORK/deb-control
mkdir -p "$DEBROOT" "$RPMROOT"
case "$DEB" in /*) ;; *) DEB=$REPO/$DEB ;; esac
case "$RPM" in /*) ;; *) RPM=$REPO/$RPM ;; esac
dpkg-deb -x "$DEB" "$DEBROOT"
dpkg-deb -e "$DEB" "$DEBCTL"
(cd "$RPMROOT" && rpm2cpio "$RPM" | cpio -idm --quiet)

# --- lintian ------------------------------------------------------------------
# No errors, no warnings: every accepted finding is an override with a reason in
# debian/oneiric.lintian-overrides (shipped in the package).
lintian --no-cfg --display-level '>=warning' --show-overrides "$DEB" >"$WORK/lintian.txt" 2>&1
if grep -Eq '^[EW]: ' "$WORK/lintian.txt"; then
	t_fail lintian "$(grep -E '^[EW]: ' "$WORK/lintian.txt" | head -n 3 | tr '\n' ';')"
elif grep -q '^O: ' "$WORK/lintian.txt" && ! awk '
	/^#/ { reason = 1; next }
	/^[[:space:]]*$/ { reason = 0; next }
	{ if (!reason) { print "override without a reason: " $0; bad = 1 } }
	END { exit bad }' debian/oneiric.lintian-overrides >"$WORK/lintian-reasons.txt"; then
	t_fail lintian "$(head -n 1 "$WORK/lintian-reasons.txt")"
else
	t_pass lintian
fi

# --- rpmlint ------------------------------------------------------------------
# Findings accepted in tests/packaging/rpmlint.toml, each with its reason.
rpmlint -c "$HERE/rpmlint.toml" "$RPM" >"$WORK/rpmlint.txt" 2>&1
if grep -Eq '[1-9][0-9]* (errors|warnings)|: [EW]: ' "$WORK/rpmlint.txt" ||
	! grep -q '0 errors, 0 warnings' "$WORK/rpmlint.txt"; then
	t_fail rpmlint "$(grep -E ': [EW]: ' "$WORK/rpmlint.txt" | head -n 3 | tr '\n' ';')$(tail -n 1 "$WORK/rpmlint.txt")"
else
	t_pass rpmlint
fi

# --- systemd ------------------------------------------------------------------
# verify needs the standard targets: copy the host's units (not over ours).
for root in "$DEBROOT" "$RPMROOT"; do
	mkdir -p "$root/usr/lib/systemd/system"
	for d in /usr/lib/systemd/system /lib/systemd/system; do
		[ -d "$d" ] && cp -an "$d/." "$root/usr/lib/systemd/system/" 2>/dev/null
	done
done
# shellcheck disable=SC2317 # run through t_check
sa_verify() {
	local out
	# --man=no: Documentation= pages are checked against the package below.
	# oneiric@vmtest.*: an instance of each template, as `systemctl start oneiric@NAME` loads it.
	out=$(systemd-analyze verify --man=no --root="$1" oneiric.service oneiric.socket oneiric-admin.socket \
		oneiric@vmtest.service oneiric@vmtest.socket oneiric-admin@vmtest.socket 2>&1) || { echo "$out"; return 1; }
	# Any output (unknown key, bad value, missing binary) is a finding.
	[ -z "$out" ] || { echo "$out"; return 1; }
}
t_check systemd-verify-deb sa_verify "$DEBROOT"
t_check systemd-verify-rpm sa_verify "$RPMROOT"

# shellcheck disable=SC2317 # run through t_check
sa_security() {
	local out
	# Issue 15: the exposure stays at or below 1.1.
	out=$(systemd-analyze security --offline=true --root="$1" --threshold=11 oneiric.service 2>&1)
	local rc=$?
	echo "$out" | tail -n 1
	[ "$rc" -eq 0 ]
}
t_check systemd-security-deb sa_security "$DEBROOT"
echo "  $(systemd-analyze security --offline=true --root="$DEBROOT" oneiric.service 2>&1 | tail -n 1)"

# shellcheck disable=SC2317 # run through t_check
drop_in_loaded() {
	systemd-analyze cat-config --root="$DEBROOT" systemd/system/oneiric.service.d/journald.conf 2>/dev/null |
		grep -q '^LogRateLimitIntervalSec=' &&
		grep -q '^LogLevelMax=' "$DEBROOT/usr/lib/systemd/system/oneiric.service.d/journald.conf" &&
		! grep -rqs 'oneiric' "$DEBROOT/etc/systemd" "$DEBROOT/usr/lib/systemd/journald.conf.d"
}
t_check journald-scoped drop_in_loaded

# Directives newer than systemd 247 (Debian 11) only as "#systemd>=N" lines, which
# postinst / %post turn into oneiric.service.d/50-systemd-N.conf where systemd >= N: run
# that function of the packaged postinst against the extracted tree with this host's
# systemd, then verify the unit with the generated drop-in.
# shellcheck disable=SC2317 # run through t_check
newer_directives_ok() {
	local u=$DEBROOT/usr/lib/systemd/system/oneiric.service d=$DEBROOT/usr/lib/systemd/system/oneiric.service.d bad
	# Known to be newer than 247 (systemd NEWS): must not be active lines.
	bad=$(grep -E '^(PrivateIPC|RestrictFileSystems|PrivatePIDs|MemoryZSwapMax|ProtectHostname=private|ProtectControlGroups=(private|strict)|PrivateUsers=(identity|full)|ExitType|RuntimeRandomizedExtraSec|BindLogSockets|MemoryKSM)\b' "$u" || true)
	[ -z "$bad" ] || { echo "directives newer than systemd 247 outside a #systemd>=N line: $bad"; return 1; }
	grep -q '^#systemd>=248 PrivateIPC=yes$' "$u" || { echo "no '#systemd>=248 PrivateIPC=yes'"; return 1; }
	sed -n '/^newer_directives() {/,/^}/p' "$DEBCTL/postinst" >"$WORK/newer-directives.sh"
	cmp -s <(sed -n '/^newer_directives() {/,/^}/p' rpm/post) "$WORK/newer-directives.sh" ||
		{ echo "newer_directives differs between debian/postinst and rpm/post"; return 1; }
	(
		# shellcheck disable=SC2034 # read by the sourced newer_directives
		SD_UNIT=$u SD_DROPINS=$d
		# shellcheck source=/dev/null
		. "$WORK/newer-directives.sh" && newer_directives
	) || { echo "newer_directives failed"; return 1; }
	grep -qx 'PrivateIPC=yes' "$d/50-systemd-248.conf" || { echo "no PrivateIPC=yes in the generated 50-systemd-248.conf"; return 1; }
	sa_verify "$DEBROOT" || return 1
	[ "$(systemd-analyze cat-config --root="$DEBROOT" systemd/system/oneiric.service.d/50-systemd-248.conf 2>/dev/null | grep -c '^PrivateIPC=yes')" = 1 ] ||
		{ echo "systemd does not read the generated drop-in"; return 1; }
	rm -f "$d/50-systemd-248.conf"
}
t_check systemd-newer-directives newer_directives_ok

# Unit directives required by issue 5 and the deployment guide.
# shellcheck disable=SC2317 # run through t_check
unit_has() {
	local u=$DEBROOT/usr/lib/systemd/system/oneiric.service missing=()
	while IFS= read -r line; do
		[ -n "$line" ] && ! grep -qxF "$line" "$u" && missing+=("$line")
	done <<'EOF'
Type=notify
ExecStartPre=/usr/bin/oneiric health --pre-start
ExecStart=/usr/bin/oneiric orchestrate --manifest /etc/oneiric/manifest.yaml --refresh-interval 120
ExecReload=/usr/bin/oneiric reload
WatchdogSec=30s
Restart=on-failure
RestartSec=10s
StartLimitBurst=5
StartLimitIntervalSec=300s
TimeoutStartSec=60s
TimeoutStopSec=30s
Environment=ONEIRIC_CONFIG=/etc/oneiric
Environment=LOG_LEVEL=INFO
Environment=ONEIRIC_LOG_FORMAT=json
Environment=OTEL_SERVICE_NAME=oneiric
Environment=PROMETHEUS_METRICS_PORT=9090
EnvironmentFile=-/etc/oneiric/environment
User=oneiric
Group=oneiric
StateDirectory=oneiric
CacheDirectory=oneiric
RuntimeDirectory=oneiric
RuntimeDirectoryMode=0751
ConfigurationDirectory=oneiric
LimitNOFILE=65536
LimitNPROC=4096
MemoryMax=2G
CPUQuota=200%
Nice=-5
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ProtectHome=yes
PrivateDevices=yes
ProtectClock=yes
ProtectHostname=yes
ProtectKernelLogs=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
ProtectProc=invisible
ProcSubset=pid
PrivateUsers=yes
RestrictSUIDSGID=yes
RemoveIPC=yes
UMask=0077
SystemCallArchitectures=native
CapabilityBoundingSet=
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallFilter=@system-service
WantedBy=multi-user.target
EOF
	[ ${#missing[@]} -eq 0 ] || { echo "missing: ${missing[*]}"; return 1; }
}
t_check unit-directives unit_has

# Documentation=man:X(1) pages exist in the package.
# shellcheck disable=SC2317 # run through t_check
unit_man_pages() {
	local page missing=()
	for page in $(sed -n 's/^Documentation=//p' "$DEBROOT/usr/lib/systemd/system/oneiric.service" |
		tr ' ' '\n' | sed -n 's/^man:\(.*\)(1)$/\1/p'); do
		[ -f "$DEBROOT/usr/share/man/man1/$page.1.gz" ] || missing+=("$page")
	done
	[ ${#missing[@]} -eq 0 ] || { echo "no man page for: ${missing[*]}"; return 1; }
}
t_check unit-man-pages unit_man_pages

# sysusers + tmpfiles applied offline to the extracted tree give the modes and
# owners of issue 5 (what postinst/%post do on a real system).
# shellcheck disable=SC2317 # run through t_check
sysusers_tmpfiles() {
	local root=$1 bad=() f
	systemd-sysusers --root="$root" oneiric.conf >/dev/null 2>&1 || { echo "systemd-sysusers failed"; return 1; }
	grep -q '^oneiric:x:[0-9]*:[0-9]*:[^:]*:/var/lib/oneiric:/usr/sbin/nologin$' "$root/etc/passwd" ||
		{ echo "user oneiric not as expected: $(grep oneiric "$root/etc/passwd")"; return 1; }
	systemd-tmpfiles --root="$root" --create oneiric.conf >/dev/null 2>&1 || { echo "systemd-tmpfiles failed"; return 1; }
	local gid
	gid=$(awk -F: '$1 == "oneiric" { print $3 }' "$root/etc/group")
	[ "$(stat -c '%a %u %g' "$root/etc/oneiric")" = "750 0 $gid" ] || bad+=("/etc/oneiric")
	for f in "$root"/etc/oneiric/*.yml "$root"/etc/oneiric/*.yaml; do
		[ "$(stat -c '%a %u %g' "$f")" = "640 0 $gid" ] || bad+=("${f#"$root"}")
	done
	[ "$(stat -c '%a %u %g' "$root/etc/oneiric/environment")" = "600 0 0" ] || bad+=("/etc/oneiric/environment")
	# Group oneiric-admin (admin.sock's) exists, empty; /run/oneiric lets its members through.
	grep -q '^oneiric-admin:x:[0-9]*:$' "$root/etc/group" ||
		{ echo "group oneiric-admin not as expected: $(grep oneiric-admin "$root/etc/group")"; return 1; }
	[ "$(stat -c '%a %u %g' "$root/run/oneiric")" = "751 $(awk -F: '$1 == "oneiric" { print $3 }' "$root/etc/passwd") $gid" ] ||
		bad+=("/run/oneiric")
	[ ${#bad[@]} -eq 0 ] || { echo "wrong mode/owner: ${bad[*]}"; return 1; }
}
t_check sysusers-tmpfiles-deb sysusers_tmpfiles "$DEBROOT"
t_check sysusers-tmpfiles-rpm sysusers_tmpfiles "$RPMROOT"

# --- AppArmor -----------------------------------------------------------------
# shellcheck disable=SC2317 # run through t_check
aa_check() {
	local p=$DEBROOT/etc/apparmor.d/usr.bin.oneiric
	apparmor_parser -QTK -M /usr/share/apparmor-features/features "$p" || return 1
	grep -Eq '^profile oneiric /usr/bin/oneiric \{' "$p" || { echo "profile header"; return 1; }
	! grep -Eq 'flags=\([^)]*complain' "$p" || { echo "profile is in complain mode"; return 1; }
	[ "$(grep -v '^[[:space:]]*$' "$p" | tail -n 2 | head -n 1 | sed 's/^[[:space:]]*//')" = \
		"include if exists <local/usr.bin.oneiric>" ] || { echo "does not end with the local include"; return 1; }
	# The unit enters the service's profile by name; that profile exists, grants no
	# capability and no home directory, and shares its common rules with the CLI's.
	local want
	want=$(sed -n 's/^AppArmorProfile=-\{0,1\}//p' packaging/oneiric.service)
	[ "$want" = oneiric-service ] || { echo "unit: AppArmorProfile=$want"; return 1; }
	local svc
	svc=$(awk -v h="profile $want {" '$0 == h { f = 1 } f { print } f && /^}/ { exit }' "$p")
	[ -n "$svc" ] || { echo "no profile $want"; return 1; }
	! grep -Eq '^[[:space:]]*(capability|owner @\{HOME\}|/srv/)' <<<"$svc" ||
		{ echo "the service profile grants: $(grep -E '^[[:space:]]*(capability|owner @\{HOME\}|/srv/)' <<<"$svc" | tr -s ' ' | tr '\n' ';')"; return 1; }
	local blocks
	rm -f "$WORK"/common.*
	awk '/# --- common rules: begin ---/ { n++; f = 1; next } /# --- common rules: end ---/ { f = 0 } f { print > (dir "/common." n) }' dir="$WORK" "$p"
	blocks=$(find "$WORK" -maxdepth 1 -name 'common.*' | wc -l)
	[ "$blocks" = 2 ] || { echo "expected 2 common-rules blocks, found $blocks"; return 1; }
	diff -u "$WORK/common.1" "$WORK/common.2" || { echo "the profiles' common rules differ"; return 1; }
}
t_check apparmor-profile aa_check

# --- identical copies of packaging/ -------------------------------------------
# "source|installed path (deb)|installed path (rpm)"
SAME_FILES="packaging/oneiric.service|usr/lib/systemd/system/oneiric.service
packaging/oneiric.socket|usr/lib/systemd/system/oneiric.socket
packaging/oneiric-admin.socket|usr/lib/systemd/system/oneiric-admin.socket
packaging/oneiric-admin@.socket|usr/lib/systemd/system/oneiric-admin@.socket
packaging/oneiric.service.d/journald.conf|usr/lib/systemd/system/oneiric.service.d/journald.conf
packaging/oneiric@.service|usr/lib/systemd/system/oneiric@.service
packaging/oneiric@.socket|usr/lib/systemd/system/oneiric@.socket
packaging/oneiric.service.d/journald.conf|usr/lib/systemd/system/oneiric@.service.d/journald.conf
packaging/oneiric.sysusers|usr/lib/sysusers.d/oneiric.conf
packaging/oneiric.tmpfiles|usr/lib/tmpfiles.d/oneiric.conf
apparmor/usr.bin.oneiric|etc/apparmor.d/usr.bin.oneiric
packaging/etc/oneiric/app.yml|etc/oneiric/app.yml
packaging/etc/oneiric/adapters.yml|etc/oneiric/adapters.yml
packaging/etc/oneiric/services.yml|etc/oneiric/services.yml
packaging/etc/oneiric/tasks.yml|etc/oneiric/tasks.yml
packaging/etc/oneiric/events.yml|etc/oneiric/events.yml
packaging/etc/oneiric/workflows.yml|etc/oneiric/workflows.yml
packaging/etc/oneiric/actions.yml|etc/oneiric/actions.yml
packaging/etc/oneiric/manifest.yaml|etc/oneiric/manifest.yaml
packaging/etc/oneiric/environment|etc/oneiric/environment
packaging/examples/oneiric-alerts.yml|usr/share/doc/oneiric/examples/oneiric-alerts.yml
packaging/examples/oneiric-fleet-dashboard.json|usr/share/doc/oneiric/examples/oneiric-fleet-dashboard.json
packaging/examples/journald-oneiric.conf.example|usr/share/doc/oneiric/examples/journald-oneiric.conf.example"
# shellcheck disable=SC2317 # run through t_check
identical() {
	local root=$1 src dst bad=()
	while IFS='|' read -r src dst; do
		cmp -s "$src" "$root/$dst" || bad+=("$dst")
	done <<<"$SAME_FILES"
	[ ${#bad[@]} -eq 0 ] || { echo "differs from source: ${bad[*]}"; return 1; }
}
t_check identical-deb identical "$DEBROOT"
t_check identical-rpm identical "$RPMROOT"
# The instance templates are derived from the one unit and socket (packaging/instance-units.sh):
# a template that is stale, or a rule whose line the unit no longer has, fails here.
t_check instance-templates-derived sh packaging/instance-units.sh --check

# --- .deb file list, modes, owners, conffiles, scripts -------------------------
# Expected: "mode owner path" for every regular file except man pages (checked
# by pattern: oneiric.1.gz plus one page per subcommand).
DEB_EXPECTED="-rwxr-xr-x root/root ./usr/bin/oneiric
-rw-r--r-- root/root ./usr/lib/systemd/system/oneiric.service
-rw-r--r-- root/root ./usr/lib/systemd/system/oneiric.service.d/journald.conf
-rw-r--r-- root/root ./usr/lib/systemd/system/oneiric.socket
-rw-r--r-- root/root ./usr/lib/systemd/system/oneiric-admin.socket
-rw-r--r-- root/root ./usr/lib/systemd/system/oneiric-admin@.socket
-rw-r--r-- root/root ./usr/lib/systemd/system/oneiric@.service
-rw-r--r-- root/root ./usr/lib/systemd/system/oneiric@.service.d/journald.conf
-rw-r--r-- root/root ./usr/lib/systemd/system/oneiric@.socket
-rw-r--r-- root/root ./usr/lib/sysusers.d/oneiric.conf
-rw-r--r-- root/root ./usr/lib/tmpfiles.d/oneiric.conf
-rw-r----- root/root ./etc/oneiric/app.yml
-rw-r----- root/root ./etc/oneiric/adapters.yml
-rw-r----- root/root ./etc/oneiric/services.yml
-rw-r----- root/root ./etc/oneiric/tasks.yml
-rw-r----- root/root ./etc/oneiric/events.yml
-rw-r----- root/root ./etc/oneiric/workflows.yml
-rw-r----- root/root ./etc/oneiric/actions.yml
-rw-r----- root/root ./etc/oneiric/manifest.yaml
-rw------- root/root ./etc/oneiric/environment
-rw-r--r-- root/root ./etc/apparmor.d/usr.bin.oneiric
-rw-r--r-- root/root ./usr/share/bash-completion/completions/oneiric
-rw-r--r-- root/root ./usr/share/zsh/vendor-completions/_oneiric
-rw-r--r-- root/root ./usr/share/fish/vendor_completions.d/oneiric.fish
-rw-r--r-- root/root ./usr/share/doc/oneiric/README.md
-rw-r--r-- root/root ./usr/share/doc/oneiric/changelog.gz
-rw-r--r-- root/root ./usr/share/doc/oneiric/changelog.Debian.gz
-rw-r--r-- root/root ./usr/share/doc/oneiric/copyright
-rw-r--r-- root/root ./usr/share/doc/oneiric/examples/journald-oneiric.conf.example
-rw-r--r-- root/root ./usr/share/doc/oneiric/examples/oneiric-alerts.yml
-rw-r--r-- root/root ./usr/share/doc/oneiric/examples/oneiric-fleet-dashboard.json
-rw-r--r-- root/root ./usr/share/lintian/overrides/oneiric"
# cargo-deb writes numeric owners: 0/0 is root/root.
dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ { o = $2; if (o == "0/0") o = "root/root"; print $1, o, $6 }' | sort >"$WORK/deb-files.txt"
# shellcheck disable=SC2317 # run through t_check
deb_files() {
	local got want
	got=$(grep -v ' ./usr/share/man/man1/' "$WORK/deb-files.txt")
	want=$(sort <<<"$DEB_EXPECTED")
	if [ "$got" != "$want" ]; then
		diff <(echo "$want") <(echo "$got") | grep '^[<>]' | tr '\n' ' '
		return 1
	fi
	grep -q '^-rw-r--r-- root/root ./usr/share/man/man1/oneiric.1.gz$' "$WORK/deb-files.txt" ||
		{ echo "no oneiric.1.gz"; return 1; }
	! grep ' ./usr/share/man/man1/' "$WORK/deb-files.txt" | grep -Ev '^-rw-r--r-- root/root ./usr/share/man/man1/oneiric(-[a-z-]+)?\.1\.gz$' ||
		{ echo "unexpected man page entry"; return 1; }
	[ "$(grep -c ' ./usr/share/man/man1/' "$WORK/deb-files.txt")" -ge 5 ] || { echo "fewer than 5 man pages"; return 1; }
}
t_check deb-files deb_files

# shellcheck disable=SC2317 # run through t_check
deb_conffiles() {
	local want got
	want=$(sed -n 's| ./etc/| /etc/|p' <<<"$DEB_EXPECTED" | awk '{ print $3 }' | sort)
	got=$(sort "$DEBCTL/conffiles" 2>/dev/null)
	[ "$got" = "$want" ] || { diff <(echo "$want") <(echo "$got") | grep '^[<>]' | tr '\n' ' '; return 1; }
}
t_check deb-conffiles deb_conffiles

# shellcheck disable=SC2317 # run through t_check
deb_control() {
	local c=$DEBCTL/control dep
	for dep in 'libc6' 'libsqlite3-0' 'passwd' 'init-system-helpers'; do
		grep -Eq "^Depends:.*\\b$dep\\b" "$c" || { echo "Depends lacks $dep"; return 1; }
	done
	{ grep -q '^Package: oneiric$' "$c" && grep -q '^Section: admin$' "$c"; } || { echo "Package/Section"; return 1; }
	grep -q '^Version: [0-9][0-9.]*-1$' "$c" || { echo "Version"; return 1; }
}
t_check deb-control deb_control

# Maintainer scripts: the ones in debian/, executable, and doing what issue 5 says.
# shellcheck disable=SC2317,SC2016 # run through t_check; the quoted patterns are literal script text
deb_scripts() {
	local s
	for s in postinst prerm postrm; do
		cmp -s "debian/$s" "$DEBCTL/$s" || { echo "$s differs from debian/$s"; return 1; }
		[ "$(stat -c '%a' "$DEBCTL/$s")" = 755 ] || { echo "$s not 0755"; return 1; }
		sh -n "$DEBCTL/$s" || return 1
		grep -q '^set -e$' "$DEBCTL/$s" || { echo "$s lacks set -e"; return 1; }
	done
	[ ! -e "$DEBCTL/preinst" ] || { echo "unexpected preinst"; return 1; }
	local p=$DEBCTL/postinst r=$DEBCTL/prerm m=$DEBCTL/postrm
	grep -q 'systemd-sysusers .*oneiric.conf' "$p" || { echo "postinst: no systemd-sysusers"; return 1; }
	grep -q 'useradd --system' "$p" || { echo "postinst: no useradd fallback"; return 1; }
	grep -q 'systemd-tmpfiles .*--create oneiric.conf' "$p" || { echo "postinst: no tmpfiles"; return 1; }
	grep -q 'apparmor_parser -r' "$p" || { echo "postinst: no apparmor load"; return 1; }
	grep -q 'deb-systemd-helper enable' "$p" || { echo "postinst: no enable"; return 1; }
	grep -q 'deb-systemd-invoke start' "$p" || { echo "postinst: no start on install"; return 1; }
	grep -q 'deb-systemd-invoke try-restart' "$p" || { echo "postinst: no try-restart on upgrade"; return 1; }
	grep -q '\[ -d /run/systemd/system \]' "$p" || { echo "postinst: not chroot-safe"; return 1; }
	{ grep -q '"$1" = remove' "$r" && grep -q 'deb-systemd-invoke stop oneiric.socket oneiric-admin.socket oneiric.service' "$r"; } || { echo "prerm: no stop of the three units on remove"; return 1; }
	grep -q 'groupadd --system oneiric-admin' "$p" || { echo "postinst: no groupadd fallback for oneiric-admin"; return 1; }
	grep -q 'rm -rf /var/lib/oneiric /var/cache/oneiric' "$m" || { echo "postrm: purge does not clean"; return 1; }
	{ grep -q 'apparmor_parser -R' "$m" && grep -q 'rm -f /etc/apparmor.d/local/usr.bin.oneiric' "$m"; } ||
		{ echo "postrm: no apparmor unload/cleanup"; return 1; }
	# Every systemctl/deb-systemd-invoke call that needs a running systemd is guarded.
	if grep -n 'systemctl \|deb-systemd-invoke ' "$p" "$r" "$m" | grep -v '^[^:]*:[0-9]*:[[:space:]]*#' >"$WORK/sd-calls.txt"; then
		awk -F: '{ print $1 }' "$WORK/sd-calls.txt" | sort -u | while read -r f; do
			grep -q '\[ -d /run/systemd/system \]' "$f" || { echo "$f calls systemd unguarded"; exit 1; }
		done || return 1
	fi
}
t_check deb-scripts deb_scripts

# --- .rpm file list, modes, owners, config flags, scriptlets, requires ----------
# rpm --dump: path size mtime digest mode owner group isconfig isdoc rdev symlink
rpm -qp --dump "$RPM" 2>/dev/null | awk '{ printf "%s %s %s %s %s %s\n", $5, $6, $7, $8, $9, $1 }' | sort -k6 >"$WORK/rpm-files.txt"
RPM_EXPECTED="0100755 root root 0 0 /usr/bin/oneiric
0100644 root root 0 0 /usr/lib/systemd/system/oneiric.service
0100644 root root 0 0 /usr/lib/systemd/system/oneiric.service.d/journald.conf
0100644 root root 0 0 /usr/lib/systemd/system/oneiric.socket
0100644 root root 0 0 /usr/lib/systemd/system/oneiric-admin.socket
0100644 root root 0 0 /usr/lib/systemd/system/oneiric-admin@.socket
0100644 root root 0 0 /usr/lib/systemd/system/oneiric@.service
0100644 root root 0 0 /usr/lib/systemd/system/oneiric@.service.d/journald.conf
0100644 root root 0 0 /usr/lib/systemd/system/oneiric@.socket
0100644 root root 0 0 /usr/lib/sysusers.d/oneiric.conf
0100644 root root 0 0 /usr/lib/tmpfiles.d/oneiric.conf
0100640 root oneiric 1 0 /etc/oneiric/app.yml
0100640 root oneiric 1 0 /etc/oneiric/adapters.yml
0100640 root oneiric 1 0 /etc/oneiric/services.yml
0100640 root oneiric 1 0 /etc/oneiric/tasks.yml
0100640 root oneiric 1 0 /etc/oneiric/events.yml
0100640 root oneiric 1 0 /etc/oneiric/workflows.yml
0100640 root oneiric 1 0 /etc/oneiric/actions.yml
0100640 root oneiric 1 0 /etc/oneiric/manifest.yaml
0100600 root root 1 0 /etc/oneiric/environment
0100644 root root 1 0 /etc/apparmor.d/usr.bin.oneiric
0100644 root root 0 0 /usr/share/bash-completion/completions/oneiric
0100644 root root 0 0 /usr/share/zsh/site-functions/_oneiric
0100644 root root 0 0 /usr/share/fish/vendor_completions.d/oneiric.fish
0100644 root root 0 1 /usr/share/doc/oneiric/README.md
0100644 root root 0 1 /usr/share/doc/oneiric/CHANGELOG.md
0100644 root root 0 1 /usr/share/doc/oneiric/copyright
0100644 root root 0 1 /usr/share/doc/oneiric/examples/journald-oneiric.conf.example
0100644 root root 0 1 /usr/share/doc/oneiric/examples/oneiric-alerts.yml
0100644 root root 0 1 /usr/share/doc/oneiric/examples/oneiric-fleet-dashboard.json"
# shellcheck disable=SC2317 # run through t_check
rpm_files() {
	local got want
	got=$(grep -v ' /usr/share/man/man1/' "$WORK/rpm-files.txt")
	want=$(sort -k6 <<<"$RPM_EXPECTED")
	if [ "$got" != "$want" ]; then
		diff <(echo "$want") <(echo "$got") | grep '^[<>]' | tr '\n' ' '
		return 1
	fi
	! grep ' /usr/share/man/man1/' "$WORK/rpm-files.txt" | grep -Ev '^0100644 root root 0 1 /usr/share/man/man1/oneiric(-[a-z-]+)?\.1\.gz$' ||
		{ echo "unexpected man page entry"; return 1; }
	grep -q ' /usr/share/man/man1/oneiric.1.gz$' "$WORK/rpm-files.txt" || { echo "no oneiric.1.gz"; return 1; }
}
t_check rpm-files rpm_files

# shellcheck disable=SC2317 # run through t_check
rpm_config() {
	local got want
	got=$(rpm -qp --configfiles "$RPM" 2>/dev/null | sort)
	want=$(awk '$4 == 1 { print $6 }' <<<"$RPM_EXPECTED" | sort)
	[ "$got" = "$want" ] || { echo "config files differ"; return 1; }
	# %config(noreplace): RPMFILE_CONFIG (1) | RPMFILE_NOREPLACE (16) in FILEFLAGS.
	rpm -qp --qf '[%{FILEFLAGS} %{FILENAMES}\n]' "$RPM" 2>/dev/null | awk '
		$2 ~ /^\/etc\// { if ($1 % 2 != 1 || int($1 / 16) % 2 != 1) { print "not %config(noreplace): " $2; bad = 1 } }
		END { exit bad }'
}
t_check rpm-config-noreplace rpm_config

# shellcheck disable=SC2317,SC2016 # run through t_check; the quoted patterns are literal script text
rpm_scripts() {
	local tag file body pair
	for pair in PREIN:pre POSTIN:post PREUN:preun POSTUN:postun; do
		tag=${pair%%:*}
		file=rpm/${pair#*:}
		body=$(rpm -qp --qf "%{$tag}" "$RPM" 2>/dev/null)
		[ "$body" = "$(cat "$file")" ] || { echo "%${pair#*:} differs from $file"; return 1; }
		sh -n "$file" || return 1
	done
	# Fedora/RHEL semantics (%sysusers_create_compat, %tmpfiles_create, %systemd_post,
	# %systemd_preun, %systemd_postun_with_restart written out).
	# Every line of packaging/oneiric.sysusers, and no other, is what %pre gives systemd-sysusers.
	local given
	given=$(sed -n "s/^[[:space:]]*\(printf '%s\\\\n' \)\{0,1\}'\([ug] [^']*\)'.*/\2/p" rpm/pre)
	[ "$given" = "$(grep -E '^[ug] ' packaging/oneiric.sysusers)" ] ||
		{ echo "%pre gives systemd-sysusers: [$given], packaging/oneiric.sysusers has: [$(grep -E '^[ug] ' packaging/oneiric.sysusers)]"; return 1; }
	grep -q 'systemd-sysusers --replace=/usr/lib/sysusers.d/oneiric.conf -' rpm/pre ||
		{ echo "%pre: no systemd-sysusers --replace"; return 1; }
	{ grep -q 'useradd --system' rpm/pre && grep -q 'groupadd --system oneiric-admin' rpm/pre; } ||
		{ echo "%pre: no useradd/groupadd fallback"; return 1; }
	grep -q 'systemd-tmpfiles --create oneiric.conf' rpm/post || { echo "%post: no tmpfiles"; return 1; }
	{ grep -q '"$1" -eq 1' rpm/post && grep -q 'systemctl --no-reload preset oneiric.service' rpm/post; } ||
		{ echo "%post: no preset on first install"; return 1; }
	! grep -v '^[[:space:]]*#' rpm/post | grep -Eq 'systemctl .*(start|enable|restart)' ||
		{ echo "%post: starts or enables (presets decide; the admin starts)"; return 1; }
	{ grep -q '"$1" -eq 0' rpm/preun && grep -q 'systemctl --no-reload disable oneiric.service' rpm/preun &&
		grep -q 'systemctl stop oneiric.socket oneiric-admin.socket oneiric.service' rpm/preun; } || { echo "%preun: no disable+stop of the units on erase"; return 1; }
	# Upgrades restart the service only: a restarted socket unit refuses clients (issue 18).
	! grep -hv '^[[:space:]]*#' rpm/postun debian/postinst | grep -Eq 'restart[^#]*oneiric(-admin)?\.socket|restart[^#]*\$SOCKETS' ||
		{ echo "an upgrade path restarts oneiric.socket"; return 1; }
	grep -q 'systemctl daemon-reload' rpm/postun || { echo "%postun: no daemon-reload"; return 1; }
	{ grep -q '"$1" -ge 1' rpm/postun && grep -q 'systemctl try-restart oneiric.service' rpm/postun; } ||
		{ echo "%postun: no try-restart on upgrade"; return 1; }
	! grep -hv '^[[:space:]]*#' rpm/post rpm/preun | grep -q 'restart' || { echo "restart outside %postun"; return 1; }
	{ grep -q 'apparmor_parser -r' rpm/post && grep -q 'apparmor_parser -R' rpm/preun; } || { echo "no apparmor load/unload"; return 1; }
	# Every call that needs a running systemd is guarded (preset/disable act on files).
	if grep -n 'systemctl \(start\|stop\|try-restart\|daemon-reload\)' rpm/* >"$WORK/rpm-sd-calls.txt"; then
		awk -F: '{ print $1 }' "$WORK/rpm-sd-calls.txt" | sort -u | while read -r f; do
			grep -q '\[ -d /run/systemd/system \]' "$f" || { echo "$f calls systemd unguarded"; exit 1; }
		done || return 1
	fi
}
t_check rpm-scripts rpm_scripts

# shellcheck disable=SC2317 # run through t_check
rpm_requires() {
	local req r
	req=$(rpm -qp --requires "$RPM" 2>/dev/null)
	for r in systemd /usr/bin/getent /usr/sbin/groupadd /usr/sbin/useradd /bin/sh 'libc.so.6' 'libsqlite3.so.0'; do
		grep -q "^$r" <<<"$req" || { echo "Requires lacks $r"; return 1; }
	done
}
t_check rpm-requires rpm_requires

# deb and rpm install the same paths, but for the documented distribution differences.
# shellcheck disable=SC2317 # run through t_check
same_assets() {
	local d r
	d=$(awk '{ print substr($3, 2) }' "$WORK/deb-files.txt" | sed \
		-e 's|^/usr/share/zsh/vendor-completions/|/usr/share/zsh/site-functions/|' \
		-e 's|^/usr/share/doc/oneiric/changelog.gz$|/usr/share/doc/oneiric/CHANGELOG.md|' \
		-e '\|^/usr/share/doc/oneiric/changelog.Debian.gz$|d' \
		-e '\|^/usr/share/lintian/overrides/oneiric$|d' | sort)
	r=$(awk '{ print $6 }' "$WORK/rpm-files.txt" | sort)
	[ "$d" = "$r" ] || { diff <(echo "$d") <(echo "$r") | grep '^[<>]' | tr '\n' ' '; return 1; }
}
t_check deb-rpm-same-assets same_assets

# Every file in packaging/, apparmor/, debian/ and rpm/ is used by the packages.
# shellcheck disable=SC2317 # run through t_check
no_unreferenced() {
	local f bad=()
	for f in $(find packaging apparmor debian rpm -type f | sort); do
		case "$f" in
		packaging/*.sh | packaging/README*) continue ;;
		debian/changelog | debian/postinst | debian/prerm | debian/postrm) continue ;;
		rpm/*) grep -q "\"$f\"" Cargo.toml || bad+=("$f") ;;
		*) grep -q "\"$f\"" Cargo.toml || grep -q "\"$(dirname "$f")/\*" Cargo.toml || bad+=("$f") ;;
		esac
	done
	[ ${#bad[@]} -eq 0 ] || { echo "not in any package: $(printf '%s\n' "${bad[@]}" | sort -u | tr '\n' ' ')"; return 1; }
}
t_check no-unreferenced-files no_unreferenced

# Nothing writes a logs directory (journald has the logs): no LogsDirectory=, no
# /var/log/oneiric in tmpfiles, AppArmor, the package scripts or the packages.
# shellcheck disable=SC2317 # run through t_check
no_logs_dir() {
	local hits
	hits=$(grep -n 'LogsDirectory\|/var/log/oneiric' packaging/oneiric.service packaging/oneiric.service.d/* \
		packaging/oneiric.tmpfiles apparmor/usr.bin.oneiric debian/postinst debian/prerm debian/postrm rpm/* 2>&1 |
		grep -v ':[0-9]*:[[:space:]]*#')
	[ -z "$hits" ] || { echo "logs directory still referenced: $(head -n 3 <<<"$hits" | tr '\n' ' ')"; return 1; }
	{ ! grep -q ' ./var/log/' "$WORK/deb-files.txt" && ! grep -q ' /var/log/' "$WORK/rpm-files.txt"; } ||
		{ echo "a package ships something under /var/log"; return 1; }
}
t_check no-logs-directory no_logs_dir

# --- glibc baseline -------------------------------------------------------------
# The binary in both packages needs no glibc symbol version above GLIBC_BASELINE, and
# the dependencies that dpkg-shlibdeps / rpm's automatic requires derived from it say so.
GLIBC_BASELINE=2.28
glibc_max() { # glibc_max BINARY -> the highest GLIBC_x.y the binary references
	objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -n 1
}
# shellcheck disable=SC2317 # called from checks run through t_check
ver_le() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -n 1)" = "$2" ]; }
# shellcheck disable=SC2317 # run through t_check
glibc_baseline() { # glibc_baseline ROOT
	local max above
	[ -x "$1/usr/bin/oneiric" ] || { echo "no usr/bin/oneiric"; return 1; }
	max=$(glibc_max "$1/usr/bin/oneiric")
	[ -n "$max" ] || { echo "objdump -T shows no GLIBC_ symbol versions"; return 1; }
	# objdump -T: "... DF *UND* 0000000000000000 (GLIBC_2.28) statx" (or without parentheses)
	above=$(objdump -T "$1/usr/bin/oneiric" | sed -n 's/.*[ (]GLIBC_\([0-9][0-9.]*\))\{0,1\}[[:space:]]\{1,\}\([^ ]*\)$/\1 \2/p' |
		while read -r v sym; do ver_le "$v" "$GLIBC_BASELINE" || echo "$sym@GLIBC_$v"; done | sort -u | head -n 5 | tr '\n' ' ')
	[ -z "$above" ] || { echo "symbols above GLIBC_$GLIBC_BASELINE: $above"; return 1; }
	echo "newest: GLIBC_$max"
}
t_check glibc-baseline-deb glibc_baseline "$DEBROOT"
t_check glibc-baseline-rpm glibc_baseline "$RPMROOT"
t_log "deb binary needs GLIBC_$(glibc_max "$DEBROOT/usr/bin/oneiric"), rpm binary GLIBC_$(glibc_max "$RPMROOT/usr/bin/oneiric")"
# shellcheck disable=SC2317 # run through t_check
libc_dependencies() {
	local dep v req
	dep=$(sed -n 's/^Depends: //p' "$DEBCTL/control" | tr ',' '\n' | sed 's/^ *//' | grep '^libc6 ')
	v=$(sed -n 's/^libc6 (>= \([0-9.]*\))$/\1/p' <<<"$dep")
	[ -n "$v" ] || { echo "Depends has no 'libc6 (>= X)' from dpkg-shlibdeps: '$dep'"; return 1; }
	ver_le "$v" "$GLIBC_BASELINE" || { echo ".deb: $dep is above the baseline $GLIBC_BASELINE"; return 1; }
	req=$(rpm -qp --requires "$RPM" 2>/dev/null | sed -n 's/^libc\.so\.6(GLIBC_\([0-9.]*\))(64bit)$/\1/p' | sort -V | tail -n 1)
	[ -n "$req" ] || { echo ".rpm requires no libc.so.6(GLIBC_x)(64bit) (automatic requires)"; return 1; }
	ver_le "$req" "$GLIBC_BASELINE" || { echo ".rpm requires libc.so.6(GLIBC_$req)(64bit), above the baseline"; return 1; }
	echo ".deb: $dep; .rpm: libc.so.6(GLIBC_$req)(64bit)"
}
t_check libc-dependencies libc_dependencies

# --- example alert rules ---------------------------------------------------------
# promtool (Debian's prometheus package, installed above) checks the rules, and unit
# tests in tests/packaging/oneiric-alerts.test.yml fire every alert of the file (and
# show a healthy instance firing none).
t_check alert-rules promtool check rules packaging/examples/oneiric-alerts.yml
# shellcheck disable=SC2317 # run through t_check
alert_tests_cover_all() {
	local a missing=()
	while read -r a; do
		# A block `alertname: A` whose exp_alerts is a non-empty list.
		grep -A3 -E "^[[:space:]]*(- )?alertname: *$a\$" "$HERE/oneiric-alerts.test.yml" | grep -q 'exp_alerts: *$' ||
			missing+=("$a")
	done < <(sed -n 's/^[[:space:]]*- alert: *//p' packaging/examples/oneiric-alerts.yml)
	[ ${#missing[@]} -eq 0 ] || { echo "no test case that fires: ${missing[*]}"; return 1; }
	promtool test rules "$HERE/oneiric-alerts.test.yml"
}
t_check alert-rules-tests alert_tests_cover_all

# --- arm64 packages (issue 21) ---------------------------------------------------
# tests/packaging/arm64.sh: lintian/rpmlint, the same file lists and bytes as the x86_64
# packages but the binary, an aarch64 ELF within GLIBC_BASELINE_AARCH64, the Depends and
# Requires, and the binary's --version under qemu-user.
if [ -n "$DEB_ARM64" ]; then
	bash "$HERE/arm64.sh" "$DEB" "$RPM" "$DEB_ARM64" "$RPM_ARM64" >"$WORK/arm64.txt" 2>"$WORK/arm64.log"
	t_absorb "$WORK/arm64.txt"
elif [ "${ONEIRIC_PKG_ARM64:-1}" = later ]; then
	echo "arm64 packages: built in the background, checked by the packaging-arm64 stage (tests/run-all.sh)"
elif [ "${ONEIRIC_PKG_ARM64:-1}" = 0 ]; then
	t_skip arm64-packages "ONEIRIC_PKG_ARM64=0"
elif [ "$BUILT_HERE" = 0 ]; then
	t_skip arm64-packages "no arm64 packages given on the command line"
fi

# --- signed repositories (issue 17) ----------------------------------------------
# The SBOM of this release (packaging/sbom.sh: cargo-cyclonedx from crates.io, pinned),
# then tests/packaging/repos.sh: R1 (these packages) and R2/R3 at higher versions,
# published with packaging/publish.sh under test keys made there, and checked: apt-get
# update against the trees with no warning, Valid-Until/Contents/signatures, a tampered
# and an expired InRelease refused, the key rotation, rpm -K of every .rpm, the signed
# repomd.xml and .repo file, signed SHA256SUMS, the keyring .deb (lintian), the SBOM.
t0=$SECONDS
if SBOM=$(packaging/sbom.sh "$WORK/sbom" 2>"$WORK/sbom.log" | tail -n 1) && [ -s "$SBOM" ]; then
	t_pass sbom
else
	t_fail sbom "packaging/sbom.sh failed: $(tail -n 1 "$WORK/sbom.log")"
	SBOM=""
fi
ARM64=()
[ -z "$DEB_ARM64" ] || ARM64=("$DEB_ARM64" "$RPM_ARM64")
ONEIRIC_SBOM=$SBOM bash "$HERE/repos.sh" check "$WORK/repos" "$DEB" "$RPM" ${ARM64[@]+"${ARM64[@]}"} >"$WORK/repos.txt" 2>"$WORK/repos.log"
t_absorb "$WORK/repos.txt"
t_log "signed repositories: $((SECONDS - t0)) s (trees and checks in $WORK/repos)"

# --- reproducible packages -----------------------------------------------------
# A second checkout of the same tree (its tracked and untracked, not ignored files,
# copied with fresh mtimes) in another directory builds both packages again, later, with
# the same SOURCE_DATE_EPOCH (the commit time); both must be byte-identical to the
# first ones, or diffoscope (Debian's package, installed on demand) shows why.
# The second tree and its target/ are kept in ONEIRIC_REPRO_DIR (/var/tmp/oneiric-repro):
# dependencies compiled there on an earlier run are reused, the oneiric crate itself is
# always compiled and linked again (fresh mtimes). From an empty cache (CI) the second
# build is complete. Skipped with ONEIRIC_PKG_REPRO=0, or when packages were given.
REPRO=${ONEIRIC_REPRO_DIR:-/var/tmp/oneiric-repro}
# shellcheck disable=SC2317 # called from repro_same, run through t_check
same_or_diffoscope() { # same_or_diffoscope A B NAME
	cmp -s "$1" "$2" && return 0
	command -v diffoscope >/dev/null 2>&1 || T_APT_LOG=$WORK/apt.log t_apt_install diffoscope >/dev/null 2>&1 || true
	if command -v diffoscope >/dev/null 2>&1; then
		diffoscope --text "$WORK/diffoscope-$3.txt" "$1" "$2" >/dev/null 2>&1 || true
		sed 's/^/    /' "$WORK/diffoscope-$3.txt" | head -n 60 >&2
		echo "$1 and $2 differ (diffoscope: $WORK/diffoscope-$3.txt)"
	else
		echo "$1 and $2 differ (cmp: $(cmp "$1" "$2" 2>&1 | head -n 1)); diffoscope not installable"
	fi
	return 1
}
repro_build() {
	local src=$REPRO/src f epoch
	epoch=$(git log -1 --format=%ct) || { echo "not a git checkout"; return 1; }
	mkdir -p "$src"
	find "$src" -mindepth 1 -maxdepth 1 ! -name target -exec rm -rf {} +
	git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
		[ -e "$f" ] && printf '%s\0' "$f"; done | tar --null -T - -cf - | tar -C "$src" -m -xf - ||
		{ echo "copying the tree to $src failed"; return 1; }
	(cd "$src" && SOURCE_DATE_EPOCH=$epoch packaging/build-deb.sh) >"$WORK/repro-deb.out" 2>"$WORK/repro-build-deb.log" ||
		{ echo "second build-deb.sh failed: $(tail -n 1 "$WORK/repro-build-deb.log")"; return 1; }
	(cd "$src" && SOURCE_DATE_EPOCH=$epoch packaging/build-rpm.sh) >"$WORK/repro-rpm.out" 2>"$WORK/repro-build-rpm.log" ||
		{ echo "second build-rpm.sh failed: $(tail -n 1 "$WORK/repro-build-rpm.log")"; return 1; }
	echo "second build in $src (SOURCE_DATE_EPOCH=$epoch)"
}
# shellcheck disable=SC2317 # run through t_check
repro_same() { # repro_same deb|rpm FIRST
	local second
	second=$REPRO/src/$(tail -n 1 "$WORK/repro-$1.out")
	[ -f "$second" ] || { echo "second build printed no $1"; return 1; }
	same_or_diffoscope "$2" "$second" "$1"
}
if [ "${ONEIRIC_PKG_REPRO:-1}" = 0 ]; then
	t_skip reproducible "ONEIRIC_PKG_REPRO=0"
elif [ "$BUILT_HERE" = 0 ]; then
	t_skip reproducible "packages given on the command line (built elsewhere)"
else
	t0=$SECONDS
	if t_out=$(repro_build 2>&1); then
		t_log "$t_out ($((SECONDS - t0)) s)"
		t_check reproducible-deb repro_same deb "$DEB"
		t_check reproducible-rpm repro_same rpm "$RPM"
	else
		t_fail reproducible "$(printf '%s\n' "$t_out" | tail -n 1)"
	fi
fi

# --- lifecycle in a chroot (no running systemd) --------------------------------
# Installs, upgrades, removes and purges the .deb with dpkg inside a Debian 12
# minbase chroot with systemd installed but not running, then the same with the
# .rpm through the host's rpm --root (scriptlets run chrooted; --nodeps because
# the chroot has no rpm database). Checks the scripts are idempotent, set -e
# safe and chroot-safe. Skipped with ONEIRIC_PKG_CHROOT=0.
CHROOT=$WORK/chroot
# shellcheck disable=SC2317 # run from the EXIT trap and below
chroot_cleanup() {
	mountpoint -q "$CHROOT/proc" 2>/dev/null && umount "$CHROOT/proc"
	return 0
}
trap chroot_cleanup EXIT
# shellcheck disable=SC2317 # called from the lifecycle checks, run through t_check
make_chroot() {
	local tarball=$REPO/target/packaging-chroot-bookworm-sqlite.tar mirror
	if [ ! -s "$tarball" ]; then
		command -v debootstrap >/dev/null ||
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >>"$WORK/chroot.log" 2>&1 ||
			{ echo "cannot install debootstrap"; return 1; }
		# The mirror already configured for apt on this machine.
		mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
		[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
		rm -rf "$WORK/chroot-build"
		debootstrap --variant=minbase --include=systemd,libsqlite3-0 bookworm "$WORK/chroot-build" "$mirror" \
			>>"$WORK/chroot.log" 2>&1 || { echo "debootstrap failed (see $WORK/chroot.log)"; return 1; }
		tar -C "$WORK/chroot-build" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
		rm -rf "$WORK/chroot-build"
	fi
	rm -rf "$CHROOT"
	mkdir -p "$CHROOT"
	tar -C "$CHROOT" -xf "$tarball"
	[ ! -e "$CHROOT/run/systemd/system" ] || { echo "chroot has /run/systemd/system"; return 1; }
}
# shellcheck disable=SC2317 # called from the lifecycle checks, run through t_check
in_chroot() { chroot "$CHROOT" /bin/sh -c "$1" >>"$WORK/chroot.log" 2>&1; }
# shellcheck disable=SC2317,SC2016 # called from the lifecycle checks; the quoted script expands in the chroot
modes_ok() {
	in_chroot 'test "$(stat -c "%a %U %G" /etc/oneiric)" = "750 root oneiric" &&
		test "$(stat -c "%a %U %G" /etc/oneiric/app.yml)" = "640 root oneiric" &&
		test "$(stat -c "%a %U %G" /etc/oneiric/manifest.yaml)" = "640 root oneiric" &&
		test "$(stat -c "%a %U %G" /etc/oneiric/environment)" = "600 root root"'
}
# shellcheck disable=SC2317,SC2016 # run through t_check; the quoted scripts expand in the chroot
deb_lifecycle() {
	make_chroot || return 1
	cp "$DEB" "$CHROOT/tmp/oneiric.deb"
	# 1. First install where systemd-sysusers/-tmpfiles are absent: fallbacks.
	in_chroot 'for t in systemd-sysusers systemd-tmpfiles; do p=$(command -v $t) && mv "$p" "$p.hidden"; done; true'
	in_chroot 'dpkg -i /tmp/oneiric.deb' || { echo "install (fallback path) failed"; return 1; }
	in_chroot 'getent passwd oneiric | grep -q ":/var/lib/oneiric:/usr/sbin/nologin$"' || { echo "no user after install"; return 1; }
	modes_ok || { echo "wrong modes after install (fallback path)"; return 1; }
	in_chroot 'test -L /etc/systemd/system/multi-user.target.wants/oneiric.service' || { echo "not enabled"; return 1; }
	in_chroot 'test -L /etc/systemd/system/sockets.target.wants/oneiric.socket &&
		test -L /etc/systemd/system/sockets.target.wants/oneiric-admin.socket' || { echo "socket units not enabled"; return 1; }
	in_chroot 'getent group oneiric-admin >/dev/null' || { echo "no group oneiric-admin after install (fallback path)"; return 1; }
	in_chroot 'test -f /etc/apparmor.d/local/usr.bin.oneiric' || { echo "no local AppArmor include"; return 1; }
	in_chroot 'for p in /usr/bin/*.hidden /bin/*.hidden; do [ -e "$p" ] && mv "$p" "${p%.hidden}"; done; true'
	# 2. Upgrade (same version again) with /proc mounted and an admin edit.
	mount -t proc proc "$CHROOT/proc" || { echo "cannot mount /proc"; return 1; }
	in_chroot 'echo "# admin edit" >> /etc/oneiric/app.yml; chmod 0644 /etc/oneiric/environment;
		mkdir -p /var/lib/oneiric /var/cache/oneiric; touch /var/lib/oneiric/x /var/cache/oneiric/x'
	in_chroot 'dpkg -i /tmp/oneiric.deb' || { echo "upgrade failed"; return 1; }
	umount "$CHROOT/proc"
	in_chroot 'tail -n 1 /etc/oneiric/app.yml | grep -q "admin edit"' || { echo "upgrade lost an admin edit"; return 1; }
	modes_ok || { echo "wrong modes after upgrade"; return 1; }
	# 3. Remove: conffiles and state stay, unit masked.
	in_chroot 'dpkg -r oneiric' || { echo "remove failed"; return 1; }
	in_chroot 'test -f /etc/oneiric/app.yml && test -f /var/lib/oneiric/x' || { echo "remove deleted config or state"; return 1; }
	in_chroot 'test "$(readlink /etc/systemd/system/oneiric.service)" = /dev/null &&
		test "$(readlink /etc/systemd/system/oneiric.socket)" = /dev/null' || { echo "not masked after remove"; return 1; }
	# 4. Purge: state, cache, logs, unit state and AppArmor leftovers gone.
	in_chroot 'dpkg -P oneiric' || { echo "purge failed"; return 1; }
	in_chroot 'for p in /etc/oneiric /var/lib/oneiric /var/cache/oneiric /var/log/oneiric \
		/etc/systemd/system/oneiric.service /etc/systemd/system/multi-user.target.wants/oneiric.service \
		/etc/systemd/system/oneiric.socket /etc/systemd/system/sockets.target.wants/oneiric.socket \
		/etc/systemd/system/oneiric-admin.socket /etc/systemd/system/sockets.target.wants/oneiric-admin.socket \
		/etc/apparmor.d/local/usr.bin.oneiric; do test ! -e "$p" && test ! -L "$p" || exit 1; done' ||
		{ echo "purge left files behind"; return 1; }
	# 5. Reinstall after purge (user exists): idempotent.
	in_chroot 'dpkg -i /tmp/oneiric.deb && dpkg -P oneiric' || { echo "reinstall after purge failed"; return 1; }
}
# shellcheck disable=SC2317,SC2016 # run through t_check; the quoted scripts expand in the chroot
rpm_lifecycle() {
	[ -d "$CHROOT/etc" ] || make_chroot || return 1
	in_chroot 'userdel oneiric 2>/dev/null; true'
	local wants=/etc/systemd/system/multi-user.target.wants/oneiric.service
	local swants=/etc/systemd/system/sockets.target.wants/oneiric.socket
	# 1. Fedora's default preset (99-default-disable.preset: disable *): installed, the
	#    user exists, modes right, but not enabled (and nothing starts it).
	in_chroot 'mkdir -p /etc/systemd/system-preset && echo "disable *" >/etc/systemd/system-preset/99-default-disable.preset'
	rpm --root="$CHROOT" --nodeps -i "$RPM" >>"$WORK/chroot.log" 2>&1 || { echo "rpm -i failed"; return 1; }
	in_chroot 'getent passwd oneiric | grep -q ":/var/lib/oneiric:/usr/sbin/nologin$"' || { echo "no user after install"; return 1; }
	modes_ok || { echo "wrong modes after install"; return 1; }
	in_chroot "test ! -e $wants" || { echo "enabled although the presets say disable"; return 1; }
	# 2. The admin enables it; an upgrade keeps that and an admin edit.
	in_chroot 'systemctl enable oneiric.service' || { echo "systemctl enable failed in the chroot"; return 1; }
	in_chroot 'echo "# admin edit" >> /etc/oneiric/app.yml; mkdir -p /var/lib/oneiric /var/cache/oneiric; touch /var/lib/oneiric/x /var/cache/oneiric/x'
	rpm --root="$CHROOT" --nodeps -U --replacepkgs "$RPM" >>"$WORK/chroot.log" 2>&1 || { echo "rpm -U failed"; return 1; }
	in_chroot 'tail -n 1 /etc/oneiric/app.yml | grep -q "admin edit"' || { echo "upgrade lost an admin edit"; return 1; }
	in_chroot "test -L $wants" || { echo "upgrade changed the admin's enablement"; return 1; }
	# 3. Erase: disabled, cache gone, state and the edited setting (.rpmsave) kept.
	rpm --root="$CHROOT" -e oneiric >>"$WORK/chroot.log" 2>&1 || { echo "rpm -e failed"; return 1; }
	in_chroot "test ! -e $wants && test ! -L $wants" || { echo "still enabled after erase"; return 1; }
	in_chroot 'test ! -e /var/cache/oneiric && test -f /var/lib/oneiric/x && test -f /etc/oneiric/app.yml.rpmsave &&
		test ! -e /usr/share/doc/oneiric && test ! -e /var/log/oneiric' ||
		{ echo "erase: wrong leftovers"; return 1; }
	# 4. A preset that enables it: the first install enables it (still not started).
	in_chroot 'printf "enable oneiric.service\nenable oneiric.socket\n" >/etc/systemd/system-preset/50-oneiric.preset; rm -rf /etc/oneiric'
	rpm --root="$CHROOT" --nodeps -i "$RPM" >>"$WORK/chroot.log" 2>&1 || { echo "rpm -i (enable preset) failed"; return 1; }
	in_chroot "test -L $wants && test -L $swants" || { echo "service or socket not enabled although a preset says enable"; return 1; }
	rpm --root="$CHROOT" -e oneiric >>"$WORK/chroot.log" 2>&1 || { echo "rpm -e (2) failed"; return 1; }
	in_chroot "test ! -L $wants && test ! -L $swants" || { echo "still enabled after the second erase"; return 1; }
	in_chroot 'rm -f /etc/systemd/system-preset/99-default-disable.preset /etc/systemd/system-preset/50-oneiric.preset'
}
if [ "${ONEIRIC_PKG_CHROOT:-1}" = 1 ] && [ "$(id -u)" -eq 0 ]; then
	t_check deb-chroot-lifecycle deb_lifecycle
	t_check rpm-chroot-lifecycle rpm_lifecycle
	chroot_cleanup
	rm -rf "$CHROOT"
else
	t_skip chroot-lifecycle "ONEIRIC_PKG_CHROOT=0 or not root"
fi

t_finish
