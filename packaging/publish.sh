#!/bin/bash
# Turn built packages into static, signed repository trees that any web server or
# object store can serve (issue 17):
#
#   packaging/publish.sh --out DIR --key FPR [options] PACKAGE.deb|PACKAGE.rpm...
#
#   --out DIR           the public tree (created; an existing one is updated: the
#                       reprepro database lives in DIR/../.oneiric-publish-state.NAME
#                       unless --state is given, never inside the served tree)
#   --key FPR           the signing key, by fingerprint, from the gpg agent /
#                       GNUPGHOME of the caller (repeat it to sign with several keys,
#                       e.g. during a key rotation). The secret key is used through
#                       gpg only: this script never exports, prints or copies it.
#   --ship-key FPR      an extra public key to put into the keyring files and the
#                       oneiric-archive-keyring package (the next key of a rotation)
#   --keyring-version V version of the oneiric-archive-keyring .deb (default 1)
#   --base-url URL      where DIR will be served, for the .repo file
#                       (default https://oneiric.example.org/packages)
#   --suite NAME        APT suite and codename (default stable)
#   --valid-for SPAN    Valid-Until = Date + SPAN (reprepro syntax: 30d, 12h; default 30d)
#   --sbom FILE         the release's SBOM (made by packaging/sbom.sh) to publish
#   --state DIR         reprepro's conf/ and db/ (default: beside --out)
#
# Produces (see packaging/README.md, "Repositories"):
#   DIR/apt/dists/SUITE/{InRelease,Release,Release.gpg,main/binary-ARCH/Packages*,main/Contents-ARCH.gz}
#   DIR/apt/pool/main/o/...               .debs, by reprepro
#   DIR/rpm/*.rpm                         signed with rpmsign
#   DIR/rpm/repodata/{repomd.xml,repomd.xml.asc,...}   by createrepo_c, signed detached
#   DIR/oneiric.repo                      gpgcheck=1, repo_gpgcheck=1
#   DIR/keys/oneiric-archive-keyring.gpg  binary keyring (signed-by=)
#   DIR/keys/oneiric-archive-keyring.asc  ASCII armour (rpm --import, gpgkey=)
#   DIR/sbom/*.cdx.json                   (with --sbom)
#   DIR/SHA256SUMS, DIR/SHA256SUMS.asc    every file above, signed detached
#
# Tools (Debian packages, installed with apt-get when missing and root): reprepro,
# createrepo-c, rpm (rpmsign), gnupg, dpkg-dev.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT="" STATE="" SUITE=stable VALID_FOR=30d BASE_URL=https://oneiric.example.org/packages
KEYRING_VERSION=1 SBOM=""
KEYS=() SHIP=() PKGS=()
die() { echo "publish: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
	case "$1" in
	--out) OUT=$2; shift ;;
	--state) STATE=$2; shift ;;
	--key) KEYS+=("$2"); shift ;;
	--ship-key) SHIP+=("$2"); shift ;;
	--keyring-version) KEYRING_VERSION=$2; shift ;;
	--base-url) BASE_URL=$2; shift ;;
	--suite) SUITE=$2; shift ;;
	--valid-for) VALID_FOR=$2; shift ;;
	--sbom) SBOM=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) die "unknown option $1" ;;
	*) PKGS+=("$(realpath "$1")") ;;
	esac
	shift
done
[ -n "$OUT" ] || die "--out DIR is required"
[ ${#KEYS[@]} -gt 0 ] || die "--key FPR is required"
[ ${#PKGS[@]} -gt 0 ] || die "no packages given"
for p in "${PKGS[@]}"; do [ -f "$p" ] || die "no such package: $p"; done
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
[ -n "$STATE" ] || STATE=$(dirname "$OUT")/.oneiric-publish-state.$(basename "$OUT")
mkdir -p "$STATE"
STATE=$(realpath "$STATE")

# --- tools ---------------------------------------------------------------------
declare -A TOOLS=([reprepro]=reprepro [createrepo_c]=createrepo-c [rpmsign]=rpm [gpg]=gnupg
	[gpgv]=gpgv [dpkg-deb]=dpkg [sha256sum]=coreutils)
missing=()
for t in "${!TOOLS[@]}"; do command -v "$t" >/dev/null 2>&1 || missing+=("${TOOLS[$t]}"); done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then die "missing ${missing[*]}"; fi
	# shellcheck source=tests/lib.sh
	. "$REPO/tests/lib.sh"
	T_APT_LOG=$STATE/apt.log t_apt_install "${missing[@]}" || die "apt-get install ${missing[*]} failed ($STATE/apt.log)"
fi

# The signing keys must have a secret part here; look them up by fingerprint only.
for k in "${KEYS[@]}"; do
	gpg --batch --list-secret-keys "$k" >/dev/null 2>&1 || die "no secret key $k in the gpg keyring (GNUPGHOME=${GNUPGHOME:-~/.gnupg})"
done
sign_detached() { # sign_detached FILE OUT [--armor]: detached signature by every --key
	local a=() k
	for k in "${KEYS[@]}"; do a+=(--local-user "$k"); done
	gpg --batch --yes --quiet --digest-algo SHA512 "${a[@]}" --detach-sign ${3:+"$3"} --output "$2" "$1"
}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}

# --- public keys -----------------------------------------------------------------
mkdir -p "$OUT/keys"
gpg --batch --yes --export --output "$OUT/keys/oneiric-archive-keyring.gpg" "${KEYS[@]}" ${SHIP[@]+"${SHIP[@]}"}
gpg --batch --yes --armor --export --output "$OUT/keys/oneiric-archive-keyring.asc" "${KEYS[@]}" ${SHIP[@]+"${SHIP[@]}"}
[ -s "$OUT/keys/oneiric-archive-keyring.gpg" ] || die "exporting the public keys failed"

# --- the oneiric-archive-keyring .deb --------------------------------------------
# It owns /usr/share/keyrings/oneiric-archive-keyring.gpg, the file the users' source
# names in signed-by=: a new version of this package (a key added, later an old one
# dropped) changes what apt trusts, through apt itself.
DEBS=() RPMS=()
for p in "${PKGS[@]}"; do
	case "$p" in *.deb) DEBS+=("$p") ;; *.rpm) RPMS+=("$p") ;; *) die "neither .deb nor .rpm: $p" ;; esac
done
if [ ${#DEBS[@]} -gt 0 ]; then
	kr=$STATE/keyring-pkg
	rm -rf "$kr"
	mkdir -p "$kr/DEBIAN" "$kr/usr/share/keyrings" "$kr/usr/share/doc/oneiric-archive-keyring"
	install -m 0644 "$OUT/keys/oneiric-archive-keyring.gpg" "$kr/usr/share/keyrings/oneiric-archive-keyring.gpg"
	install -m 0644 "$REPO/debian/copyright" "$kr/usr/share/doc/oneiric-archive-keyring/copyright"
	krdate=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
	{
		echo "oneiric-archive-keyring ($KEYRING_VERSION) unstable; urgency=medium"
		echo
		echo "  * The repository's signing keys:"
		gpg --batch --with-colons --show-keys "$OUT/keys/oneiric-archive-keyring.gpg" | awk -F: '$1 == "pub" { p = 1; next } $1 == "fpr" && p { print "    - " $10; p = 0 }'
		echo
		echo " -- Oneiric developers <oneiric@example.org>  $krdate"
	} | gzip -9n >"$kr/usr/share/doc/oneiric-archive-keyring/changelog.gz"
	chmod 0644 "$kr/usr/share/doc/oneiric-archive-keyring/changelog.gz"
	cat >"$kr/DEBIAN/control" <<EOF
Package: oneiric-archive-keyring
Version: $KEYRING_VERSION
Architecture: all
Maintainer: Oneiric developers <oneiric@example.org>
Installed-Size: $(du -sk "$kr/usr" | cut -f1)
Section: misc
Priority: optional
Multi-Arch: foreign
Description: OpenPGP keys of the Oneiric package repository
 The keys that sign the Oneiric APT repository, in
 /usr/share/keyrings/oneiric-archive-keyring.gpg, the keyring the repository's
 source entry names with signed-by=. New versions of this package add the next
 signing key before the repository changes to it, so that apt update keeps
 working across a key rotation.
EOF
	(cd "$kr" && find usr -type f | sort | xargs md5sum >DEBIAN/md5sums)
	find "$kr" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	KEYRING_DEB=$STATE/oneiric-archive-keyring_${KEYRING_VERSION}_all.deb
	dpkg-deb --root-owner-group -Zxz --build "$kr" "$KEYRING_DEB" >/dev/null
	DEBS+=("$KEYRING_DEB")
fi

# --- APT repository (reprepro) ---------------------------------------------------
if [ ${#DEBS[@]} -gt 0 ]; then
	archs=$(for d in "${DEBS[@]}"; do dpkg-deb -f "$d" Architecture; done | grep -v '^all$' | sort -u | tr '\n' ' ')
	[ -n "$archs" ] || archs=$(dpkg --print-architecture)
	mkdir -p "$STATE/conf"
	cat >"$STATE/conf/distributions" <<EOF
Origin: Oneiric
Label: Oneiric
Suite: $SUITE
Codename: $SUITE
Architectures: $archs
Components: main
Description: Oneiric packages
SignWith: ${KEYS[*]}
ValidFor: $VALID_FOR
Contents: .gz
EOF
	printf 'outdir %s\nbasedir %s\n' "$OUT/apt" "$STATE" >"$STATE/conf/options"
	for d in "${DEBS[@]}"; do
		reprepro --silent -b "$STATE" includedeb "$SUITE" "$d"
	done
	# Re-sign and refresh Valid-Until even when no package changed (a new key, a
	# periodic re-publish before Valid-Until passes).
	reprepro --silent -b "$STATE" export "$SUITE"
	if [ ! -s "$OUT/apt/dists/$SUITE/InRelease" ] || [ ! -s "$OUT/apt/dists/$SUITE/Release.gpg" ]; then
		die "reprepro wrote no signed Release"
	fi
	grep -q '^Valid-Until: ' "$OUT/apt/dists/$SUITE/Release" || die "no Valid-Until in Release"
fi

# --- dnf repository (rpmsign + createrepo_c) ---------------------------------------
if [ ${#RPMS[@]} -gt 0 ]; then
	mkdir -p "$OUT/rpm"
	for r in "${RPMS[@]}"; do
		# The canonical file name, whatever the input was called.
		dst=$OUT/rpm/$(rpm -qp --qf '%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm' "$r" 2>/dev/null)
		cp "$r" "$dst.tmp"
		# rpmsign signs with the first key (an rpm header has one OpenPGP signature
		# slot per kind); the repository metadata is signed by all of them.
		rpmsign --addsign --define "__gpg $(command -v gpg)" --define "_gpg_name ${KEYS[0]}" --define "_gpg_path ${GNUPGHOME:-$HOME/.gnupg}" \
			--define '_gpg_digest_algo sha512' "$dst.tmp" 2>&1 >/dev/null | { grep -v 'Could not set GPG_TTY' || true; } >&2
		mv "$dst.tmp" "$dst"
	done
	createrepo_c --quiet --update --revision "$SOURCE_DATE_EPOCH" "$OUT/rpm" >/dev/null
	sign_detached "$OUT/rpm/repodata/repomd.xml" "$OUT/rpm/repodata/repomd.xml.asc" --armor
	cat >"$OUT/oneiric.repo" <<EOF
[oneiric]
name=Oneiric
baseurl=$BASE_URL/rpm
enabled=1
gpgcheck=1
repo_gpgcheck=1
skip_if_unavailable=False
gpgkey=$BASE_URL/keys/oneiric-archive-keyring.asc
EOF
fi

# --- SBOM, checksums -------------------------------------------------------------------
if [ -n "$SBOM" ]; then
	mkdir -p "$OUT/sbom"
	cp "$SBOM" "$OUT/sbom/"
fi
(cd "$OUT" && find . -type f ! -name 'SHA256SUMS*' -printf '%P\n' | LC_ALL=C sort |
	xargs -d '\n' sha256sum >"$STATE/SHA256SUMS") && mv "$STATE/SHA256SUMS" "$OUT/SHA256SUMS"
sign_detached "$OUT/SHA256SUMS" "$OUT/SHA256SUMS.asc" --armor
echo "$OUT"
