# shellcheck shell=bash
# vm: needs=none boot=1 order=81 dists=all qemu=1 default=0
# Harness self-test: a scenario that fails must be reported FAIL with its reason and
# journal excerpt, and the suite must go on.
logger -t vmtest "harness-fail: this line must show up in the excerpt"
false
