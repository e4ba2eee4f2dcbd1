#!/bin/sh
# The build tools of the packaging and fuzz stages, at pinned versions, in one place:
#   packaging/tools.sh TOOL...    install each TOOL that is missing or at another version
#   packaging/tools.sh all        every one of them
# TOOL: cargo-deb cargo-generate-rpm cargo-cyclonedx cargo-fuzz cargo-zigbuild
# (cargo-zigbuild brings Zig, PyPI's `ziglang`).
#
# cargo-zigbuild and ziglang are the projects' own PyPI wheels (cargo-zigbuild's author
# publishes the binary there), installed with pip against the sha256 sums below, so
# nothing is compiled for them; the binary is linked into $CARGO_HOME/bin, where cargo
# looks for subcommands. The others are built from crates.io by `cargo install --locked`.
#
# A lock a tool ($CARGO_HOME/.oneiric-tools-TOOL.lock): tests/run-all.sh starts `all` in
# the background when it starts, so the builds use the CPU the early stages leave idle; a
# script that needs a tool later waits for that run's lock on it and finds it installed,
# instead of building it a second time next to it.
set -eu

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1
CARGO_CYCLONEDX_VERSION=0.5.7
CARGO_FUZZ_VERSION=0.13.2
CARGO_ZIGBUILD_VERSION=0.24.1
CARGO_ZIGBUILD_SHA256=238a1ab54a95053a4eadc34775c81f795a8ad75f80bfed63f3f445f518102375
ZIGLANG_VERSION=0.17.1
ZIGLANG_SHA256=ea6cc5d87b033cf0aedfbc8f9549a908cae6c50ac31f1698188fa48a74524b54

CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
PATH="$CARGO_HOME/bin:$PATH"
export PATH

[ $# -gt 0 ] || { echo "usage: $0 all | TOOL..." >&2; exit 2; }
if [ "$1" = all ]; then
	# In the order the stages of tests/run-all.sh need them.
	set -- cargo-fuzz cargo-zigbuild cargo-deb cargo-generate-rpm cargo-cyclonedx
fi

mkdir -p "$CARGO_HOME/bin"

# has VERSION CMD...: `CMD --version` prints VERSION as a word. cargo-zigbuild answers
# --version only as itself, not as `cargo zigbuild`.
has() { v=$1; shift; "$@" --version 2>/dev/null | grep -Eq "(^| |v)$v( |$)"; }

cargo_install() { # cargo_install CRATE VERSION SUBCOMMAND
	has "$2" cargo "$3" && return 0
	echo "tools: cargo install $1@$2" >&2
	cargo install --locked "$1@$2" >&2
	has "$2" cargo "$3" || { echo "tools: $1 $2 installed, but 'cargo $3 --version' does not say $2" >&2; exit 1; }
}

zigbuild() {
	if ! python3 -m ziglang version >/dev/null 2>&1 ||
		[ "$(python3 -m pip show ziglang 2>/dev/null | sed -n 's/^Version: //p')" != "$ZIGLANG_VERSION" ] ||
		! has "$CARGO_ZIGBUILD_VERSION" cargo-zigbuild; then
		req=$(mktemp)
		printf '%s\n' "ziglang==$ZIGLANG_VERSION --hash=sha256:$ZIGLANG_SHA256" \
			"cargo-zigbuild==$CARGO_ZIGBUILD_VERSION --hash=sha256:$CARGO_ZIGBUILD_SHA256" >"$req"
		echo "tools: pip install ziglang==$ZIGLANG_VERSION cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" >&2
		python3 -m pip install --quiet --require-hashes --no-deps -r "$req" >&2 || { rm -f "$req"; exit 1; }
		rm -f "$req"
		scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
		[ -x "$scripts/cargo-zigbuild" ] || { echo "tools: pip installed no $scripts/cargo-zigbuild" >&2; exit 1; }
		ln -sf "$scripts/cargo-zigbuild" "$CARGO_HOME/bin/cargo-zigbuild"
		has "$CARGO_ZIGBUILD_VERSION" cargo-zigbuild ||
			{ echo "tools: 'cargo-zigbuild --version' does not say $CARGO_ZIGBUILD_VERSION" >&2; exit 1; }
	fi
}

for tool in "$@"; do
	exec 9>"$CARGO_HOME/.oneiric-tools-$tool.lock"
	flock 9
	case "$tool" in
	cargo-deb) cargo_install cargo-deb "$CARGO_DEB_VERSION" deb ;;
	cargo-generate-rpm) cargo_install cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION" generate-rpm ;;
	cargo-cyclonedx) cargo_install cargo-cyclonedx "$CARGO_CYCLONEDX_VERSION" cyclonedx ;;
	cargo-fuzz) cargo_install cargo-fuzz "$CARGO_FUZZ_VERSION" fuzz ;;
	cargo-zigbuild) zigbuild ;;
	*) echo "tools: unknown tool '$tool' (cargo-deb cargo-generate-rpm cargo-cyclonedx cargo-fuzz cargo-zigbuild)" >&2; exit 2 ;;
	esac
	exec 9>&-
done
