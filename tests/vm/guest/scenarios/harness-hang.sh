# shellcheck shell=bash
# vm: needs=none boot=1 order=82 dists=all qemu=1 default=0
# Harness self-test: a hanging guest. With ONEIRIC_VM_TIMEOUT small, run.sh must kill
# QEMU and everything it started and report FAIL.
echo "hanging on purpose" >/dev/console
sleep infinity
