#!/bin/sh
# compare-unit.sh PACKAGING_DIR RENDERED_UNIT STORE_BIN [SYSTEMD_VERSION]
#   ONEIRIC_UNIT=oneiric.socket compare-unit.sh ...     another unit (default oneiric.service)
#   ONEIRIC_INSTALLED="oneiric.service oneiric.socket"  the units the NixOS side has (for Also=)
#
# Drift check between a packaged unit and the NixOS one. PACKAGING_DIR is packaging/: its
# $ONEIRIC_UNIT plus $ONEIRIC_UNIT.d/*.conf, applied in name order as systemd does, and, for a
# .service, the drop-ins 50-systemd-N.conf the package scripts generate from the unit's
# `#systemd>=N Directive=value` lines where systemd is N or newer (SYSTEMD_VERSION, by default
# every such line; the scripts do that for oneiric.service only, so other units' such lines
# stay comments here too);
# RENDERED_UNIT is the unit the NixOS module produced (with an [Install] section made from
# wantedBy); STORE_BIN is the package's bin/oneiric, which stands for /usr/bin/oneiric.
#
# Both sides are normalised the same way (continuation lines joined, comments dropped,
# whitespace inside values collapsed, the binary path replaced by @BIN@) into lines
#   SECTION <tab> KEY <tab> N <tab> VALUE     (N = the Nth assignment of KEY in SECTION)
# and must be equal: the same directives, the same values, in the same order per key.
# This parser is independent of the module's own (nixos-module/unit-file.nix), on purpose.
# The only lines ignored on the NixOS side are the ones NixOS itself writes into units
# (nixos/lib/systemd-lib.nix), which the module never writes:
#   X-* in any section            (switch-to-configuration's triggers and flags)
#   Environment="NAME=value"      (quoted: systemd.services.<name>.environment, path and
#                                  systemd.globalEnvironment; the module's own Environment=
#                                  lines come from serviceConfig, unquoted like the unit's)
# and the only packaged lines not compared are [Install] Also= units that are in
# ONEIRIC_INSTALLED: NixOS has no Also= (it links units by their wantedBy, never by
# `systemctl enable`), so the unit Also= takes along must be installed by the module itself;
# one that is not stays in the comparison and is reported as missing.
# Exit 0 when equal, 1 with a diff ("<" packaged only, ">" NixOS only) otherwise.
set -eu
# Drop-ins are applied in name order (byte order, as systemd sorts them): glob in the C locale.
LC_ALL=C
export LC_ALL

pkgdir=$1
rendered=$2
bin=$3
systemd_version=${4:-}
unit=${ONEIRIC_UNIT:-oneiric.service}
installed=${ONEIRIC_INSTALLED:-}

normalize() {
	# $1: 1 for the NixOS side (drop what NixOS adds to every unit), 0 for the packaged side
	# (drop the Also= units in $installed)
	awk -v bin="$bin" -v nixos="$1" -v installed="$installed" '
	function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
	function emit(l,    p, k, v, i, nw, w, kept) {
		if (l ~ /^\[.*\]$/) { sec = substr(l, 2, length(l) - 2); return }
		p = index(l, "=")
		if (p == 0) { printf "unparsable line: %s\n", l > "/dev/stderr"; bad = 1; return }
		k = trim(substr(l, 1, p - 1)); v = trim(substr(l, p + 1))
		gsub(/[ \t]+/, " ", v)
		if (bin != "") {
			while ((i = index(v, bin)) > 0) v = substr(v, 1, i - 1) "@BIN@" substr(v, i + length(bin))
		}
		while ((i = index(v, "/usr/bin/oneiric")) > 0) v = substr(v, 1, i - 1) "@BIN@" substr(v, i + 16)
		if (nixos == 1) {
			if (k ~ /^X-/) return
			if (sec == "Service" && k == "Environment" && v ~ /^"/) return
		} else if (sec == "Install" && k == "Also" && v != "") {
			nw = split(v, w, " "); kept = ""
			for (i = 1; i <= nw; i++) if (index(" " installed " ", " " w[i] " ") == 0) kept = kept (kept == "" ? "" : " ") w[i]
			if (kept == "") return
			v = kept
		}
		n[sec SUBSEP k]++
		printf "%s\t%s\t%04d\t%s\n", sec, k, n[sec SUBSEP k], v
	}
	{
		line = $0; sub(/\r$/, "", line); line = trim(line)
		if (cont != "") {
			if (line ~ /^[#;]/) next
			if (line == "") { emit(cont); cont = ""; next }
			if (line ~ /\\$/) { sub(/\\$/, "", line); cont = cont " " trim(line); next }
			line = cont " " line; cont = ""
		} else {
			if (line == "" || line ~ /^[#;]/) next
			if (line ~ /\\$/) { sub(/\\$/, "", line); cont = trim(line); next }
		}
		emit(line)
	}
	END { if (cont != "") emit(cont); exit bad }
	'
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The drop-ins as an installed system has them: the packaged ones and the generated ones.
if [ ! -f "$pkgdir/$unit" ]; then
	echo "no $pkgdir/$unit" >&2
	exit 1
fi
mkdir "$tmp/d"
if [ -d "$pkgdir/$unit.d" ]; then
	for f in "$pkgdir/$unit.d"/*.conf; do
		[ -f "$f" ] && cp "$f" "$tmp/d/"
	done
fi
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
case $unit in
*.service)
	sed -n 's/^#systemd>=\([0-9][0-9]*\) .*/\1/p' "$pkgdir/$unit" | sort -u | while read -r n; do
		if [ -z "$systemd_version" ] || version_ge "$systemd_version" "$n"; then
			{
				echo "[Service]"
				sed -n "s/^#systemd>=$n //p" "$pkgdir/$unit"
			} >"$tmp/d/50-systemd-$n.conf"
		fi
	done
	;;
esac
{
	cat "$pkgdir/$unit"
	for f in "$tmp"/d/*.conf; do
		[ -f "$f" ] || continue
		echo
		cat "$f"
	done
} | normalize 0 | LC_ALL=C sort >"$tmp/packaged"
normalize 1 <"$rendered" | LC_ALL=C sort >"$tmp/nixos"

if [ ! -s "$tmp/packaged" ]; then
	echo "no directives read from $pkgdir/$unit" >&2
	exit 1
fi
if cmp -s "$tmp/packaged" "$tmp/nixos"; then
	also=$(sed -n 's/^[[:space:]]*Also[[:space:]]*=[[:space:]]*//p' "$pkgdir/$unit" | tr '\n' ' ' | sed 's/ *$//')
	if [ -n "$also" ] && [ -n "$installed" ]; then
		echo "$(wc -l <"$tmp/packaged") directives identical (Also=$also: installed by the module)"
	else
		echo "$(wc -l <"$tmp/packaged") directives identical"
	fi
	exit 0
fi
diff "$tmp/packaged" "$tmp/nixos" | grep '^[<>]' || true
exit 1
