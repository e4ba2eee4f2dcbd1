# shellcheck shell=bash
# vm: needs=deb repos=1 after=apt-repo boot=2 order=41 dists=bookworm
# 11. Key rotation through the oneiric-archive-keyring package (issue 17): the tree
#     signed by the next key B alone is refused with keyring 1 (key A); the publisher
#     first ships keyring 2 (A and B) in a tree still signed by A, `apt-get upgrade`
#     installs it, and then the tree re-signed by B alone updates without a warning.
trap 'only_project_sources_end' EXIT
only_project_sources
[ -f /etc/apt/sources.list.d/oneiric.sources ] || fail "no oneiric.sources (apt-repo did not run)"
kr=/usr/share/keyrings/oneiric-archive-keyring.gpg
expect_eq "keyring package before" "$(dpkg-query -W -f '${Version}' oneiric-archive-keyring)" 1

# Signed by B only, keyring 1: refused (what would happen without the rotation step).
publish_tree rot2
apt_update_refused "signed by key B, keyring 1" 'NO_PUBKEY|Missing key|signatures couldn.t be verified|not signed'

# Step 1: keyring 2 published, tree still signed by A.
publish_tree rot1
apt_update_clean
"${APT_UPGRADE[@]}" upgrade </dev/null || fail "apt-get upgrade (keyring 2) exited $?"
expect_eq "keyring package after step 1" "$(dpkg-query -W -f '${Version}' oneiric-archive-keyring)" 2
cmp -s "$kr" "$REPOS/rot1/keys/oneiric-archive-keyring.gpg" || fail "$kr is not keyring 2"
# Step 2: the tree re-signed by B alone.
publish_tree rot2
apt_update_clean
grep -q '^Signed-By: /usr/share/keyrings/oneiric-archive-keyring.gpg$' /etc/apt/sources.list.d/oneiric.sources ||
  fail "the user's source changed"
is_active || fail "oneiric.service not active"
