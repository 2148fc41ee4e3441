#!/bin/bash
# test/e2e/harness/run-guest.sh SOCKET GUEST_SCRIPT_FILE [EXTRA_QEMU_ARG...]
#
# Boots the test guest (prepared by setup.sh) under QEMU/TCG and prints its
# serial console on stdout. QEMU's own stderr goes to a separate file, so a
# test can assert that QEMU printed nothing.
#
#   SOCKET             UNIX socket of a listening vfio-user server, attached as
#                      vfio-user-pci device "vfu0"; "none" boots without it.
#                      QEMU connects at start: the server must already listen.
#   GUEST_SCRIPT_FILE  shell script run by the guest's /init as /run.sh (busybox
#                      sh, cwd /root) between the PCI report and the final
#                      /proc/interrupts; "-" reads it from stdin; "none" = no script.
#   EXTRA_QEMU_ARG     appended to QEMU's command line as they are.
#
# Environment:
#   VFIO_USER_E2E_CACHE  cache made by setup.sh (default /var/cache/vfio-user-ts/e2e)
#   E2E_QEMU_STDERR      file for QEMU's stderr (default: a new /tmp file; its path
#                        is printed on our stderr as "run-guest: qemu-stderr=PATH")
#   E2E_TIMEOUT=180      seconds before QEMU is killed (exit status 124)
#   E2E_APPEND           extra kernel command line
#   E2E_GUEST_OVERLAY    directory whose contents are added to the per-run archive
#                        (files the guest script needs, under the same paths)
#   E2E_VFU_OPTS         extra JSON members for the device, e.g. ',"x-msg-timeout":10000'
#   E2E_MEM=512          guest RAM in MiB (memfd, share=on: the server can map it)
#
# Exit status: QEMU's (0 when the guest powered off), 124 on timeout, 2 on usage
# or setup errors. Whether the guest finished is in the console
# ("=== HARNESS DONE"), see parseGuestReport() in test/e2e/qemu.ts.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
CACHE=${VFIO_USER_E2E_CACHE:-/var/cache/vfio-user-ts/e2e}
usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2; }
fail() { echo "run-guest: $*" >&2; exit 2; }
[ $# -ge 2 ] || usage
SOCK=$1 SCRIPT=$2
shift 2
TIMEOUT=${E2E_TIMEOUT:-180}
MEM=${E2E_MEM:-512}

ROOT=$CACHE/root
GUEST=$CACHE/guest
[ -f "$GUEST/.stamp" ] && [ -f "$ROOT/.stamp" ] || fail "harness not prepared in $CACHE; run $HERE/setup.sh"
command -v cpio >/dev/null || fail "cpio missing; run $HERE/setup.sh"

W=$(mktemp -d /tmp/e2e-run.XXXXXX)
trap 'rm -rf "$W"' EXIT

# Per-run initrd: the prepared initramfs followed by a second gzip'ed cpio
# archive with /run.sh (the kernel unpacks concatenated archives in order).
mkdir -p "$W/overlay"
if [ -n "${E2E_GUEST_OVERLAY:-}" ]; then
    [ -d "$E2E_GUEST_OVERLAY" ] || fail "E2E_GUEST_OVERLAY=$E2E_GUEST_OVERLAY is not a directory"
    cp -a "$E2E_GUEST_OVERLAY"/. "$W/overlay/"
fi
case $SCRIPT in
    none) ;;
    -) cat > "$W/overlay/run.sh" ;;
    *) [ -f "$SCRIPT" ] || fail "no guest script $SCRIPT"; cp "$SCRIPT" "$W/overlay/run.sh" ;;
esac
[ ! -f "$W/overlay/run.sh" ] || chmod 755 "$W/overlay/run.sh"
cp "$GUEST/initramfs.cpio.gz" "$W/initrd"
(cd "$W/overlay" && find . -print0 | cpio --null -o -H newc --quiet -R 0:0) | gzip -1 >> "$W/initrd"

DEV=()
if [ "$SOCK" != none ]; then
    [ -S "$SOCK" ] || fail "$SOCK is not a UNIX socket (is the server listening?)"
    ABS=$(cd "$(dirname "$SOCK")" && pwd -P)/$(basename "$SOCK")
    json_path=$(printf '%s' "$ABS" | sed 's/\\/\\\\/g; s/"/\\"/g')
    # QEMU 11.1 accepts the socket (a SocketAddress) only in JSON -device syntax.
    DEV=(-device "{\"driver\":\"vfio-user-pci\",\"id\":\"vfu0\",\"socket\":{\"type\":\"unix\",\"path\":\"$json_path\"}${E2E_VFU_OPTS:-}}")
fi

ERRFILE=${E2E_QEMU_STDERR:-}
if [ -z "$ERRFILE" ]; then ERRFILE=$(mktemp /tmp/e2e-qemu-stderr.XXXXXX); fi
: > "$ERRFILE"
echo "run-guest: qemu-stderr=$ERRFILE" >&2

# QEMU from the trixie root, started through the root's own dynamic loader:
# no chroot, no mounts, and the socket path is the host's.
QEMU=("$ROOT/lib64/ld-linux-x86-64.so.2"
      --library-path "$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu"
      "$ROOT/usr/bin/qemu-system-x86_64" -L "$ROOT/usr/share/seabios" -L "$ROOT/usr/share/qemu")
ARGS=(-nodefaults -no-user-config -nographic -serial stdio -monitor none -no-reboot
      -accel tcg -cpu max -smp 1 -m "${MEM}M"
      -object "memory-backend-memfd,id=mem,size=${MEM}M,share=on"
      -machine q35,memory-backend=mem
      -kernel "$GUEST/vmlinuz" -initrd "$W/initrd"
      -append "console=ttyS0 quiet panic=-1 ${E2E_APPEND:-}"
      "${DEV[@]}" "$@")

T0=$(date +%s%N)
set +e
timeout -k 5 "$TIMEOUT" "${QEMU[@]}" "${ARGS[@]}" </dev/null 2>"$ERRFILE"
RC=$?
set -e
MS=$(( ($(date +%s%N) - T0) / 1000000 ))
[ "$RC" != 124 ] || echo "run-guest: TIMEOUT after ${TIMEOUT}s, QEMU killed" >&2
echo "run-guest: qemu exit=$RC wall_ms=$MS stderr_bytes=$(wc -c < "$ERRFILE")" >&2
exit "$RC"
