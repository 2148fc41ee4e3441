#!/bin/bash
# vm/run-guest.sh [OPTION...] [-- QEMU_ARG...]
#
# Boots the guest prepared by setup.sh under QEMU and prints its serial console
# on stdout. QEMU's own stderr goes to a separate file, so that a caller can
# assert that QEMU printed nothing.
#
#   --socket PATH      a listening vfio-user server, attached as vfio-user-pci
#                      device vfuN in slot N+1 (0000:00:01.0 for the first);
#                      repeat for more devices. QEMU connects at start.
#   --script FILE      shell script run by the guest's /init as /run.sh (busybox
#                      sh, cwd /root) after the PCI report; "-" reads it from stdin
#   --mem MIB          guest RAM (default 512) from a memory-backend-memfd with
#                      share=on (the servers map it); pages are allocated on touch
#   --smp N            vCPUs (default 1)
#   --qemu PATH        a qemu-system-x86_64 (>= 10.1, with vfio-user-pci) instead
#                      of the one in the cache
#   --autoload         load each device's stock driver by its modalias before the report
#   --console          interactive: the serial line is this terminal (stdin), and
#                      after /run.sh the guest gives a shell; ^A x quits QEMU
#   --append ARGS      extra kernel command line
#   --overlay DIR      files added to the guest's root next to /run.sh
#   --device-opts S    extra JSON members for every device, e.g. ',"x-msg-timeout":10000'
#   --timeout S        seconds before QEMU is killed, exit status 124 (default
#                      180; 0 = never; --console implies 0)
#   --stderr FILE      file for QEMU's stderr (default: a new /tmp file; its path
#                      is printed on our stderr as "run-guest: qemu-stderr=PATH")
#   -- QEMU_ARG...     appended to QEMU's command line as they are
#
# The older form `run-guest.sh SOCKET|none SCRIPT|none [QEMU_ARG...]` still works.
# Environment: VFIO_USER_VM_CACHE (or VFIO_USER_E2E_CACHE), the cache setup.sh
# made (default /var/cache/vfio-user-ts/e2e); VFIO_USER_VM_MODULES as given to setup.sh; VFIO_USER_VM_ACCEL=kvm|tcg forces
# the accelerator (default: kvm when /dev/kvm can be opened, tcg otherwise).
# E2E_MEM, E2E_TIMEOUT, E2E_APPEND, E2E_GUEST_OVERLAY, E2E_VFU_OPTS and
# E2E_QEMU_STDERR are defaults for the options above.
#
# Exit status: QEMU's (0 when the guest powered off), 124 on timeout, 2 on
# usage or setup errors (the message starts "run-guest: "). Whether the guest
# finished is in the console ("=== HARNESS DONE"), see parseGuestReport().
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
CACHE=${VFIO_USER_VM_CACHE:-${VFIO_USER_E2E_CACHE:-/var/cache/vfio-user-ts/e2e}}
usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2; }
fail() { echo "run-guest: $*" >&2; exit 2; }

SOCKS=() SCRIPT=none QEMU_BIN= AUTOLOAD=0 CONSOLE=0 SMP=1
MEM=${E2E_MEM:-512} TIMEOUT=${E2E_TIMEOUT:-180} APPEND=${E2E_APPEND:-}
OVERLAY=${E2E_GUEST_OVERLAY:-} VFU_OPTS=${E2E_VFU_OPTS:-} ERRFILE=${E2E_QEMU_STDERR:-}
EXTRA=()
if [ $# -ge 2 ] && [ "${1:0:1}" != - ]; then
    # older positional form
    [ "$1" = none ] || SOCKS+=("$1")
    SCRIPT=$2; shift 2; EXTRA=("$@"); set --
fi
need() { [ $# -ge 2 ] || fail "$1 needs a value"; }
while [ $# -gt 0 ]; do
    case $1 in
        --socket) need "$@"; SOCKS+=("$2"); shift 2 ;;
        --script) need "$@"; SCRIPT=$2; shift 2 ;;
        --mem) need "$@"; MEM=$2; shift 2 ;;
        --smp) need "$@"; SMP=$2; shift 2 ;;
        --qemu) need "$@"; QEMU_BIN=$2; shift 2 ;;
        --autoload) AUTOLOAD=1; shift ;;
        --console) CONSOLE=1; shift ;;
        --append) need "$@"; APPEND=$2; shift 2 ;;
        --overlay) need "$@"; OVERLAY=$2; shift 2 ;;
        --device-opts) need "$@"; VFU_OPTS=$2; shift 2 ;;
        --timeout) need "$@"; TIMEOUT=$2; shift 2 ;;
        --stderr) need "$@"; ERRFILE=$2; shift 2 ;;
        --) shift; EXTRA+=("$@"); break ;;
        -h|--help) usage ;;
        *) fail "unknown option $1 (see --help)" ;;
    esac
done
[[ $MEM =~ ^[1-9][0-9]*$ ]] || fail "--mem wants a size in MiB, not '$MEM'"
[[ $SMP =~ ^[1-9][0-9]*$ ]] || fail "--smp wants a number of vCPUs, not '$SMP'"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || fail "--timeout wants seconds, not '$TIMEOUT'"
[ ${#SOCKS[@]} -le 30 ] || fail "at most 30 sockets (PCI slots 1-30)"
[ "$CONSOLE" = 0 ] || TIMEOUT=0

ROOT=$CACHE/root
# The same recipe hash as setup.sh's.
GUEST=$CACHE/guests/$({ cat "$HERE/setup.sh" "$HERE/guest-init.sh"; printf '%s' "${VFIO_USER_VM_MODULES:-}"; } | sha256sum | cut -c1-16)
[ -f "$GUEST/.stamp" ] && [ -f "$ROOT/.stamp" ] || fail "guest not prepared in $CACHE; run $HERE/setup.sh"
command -v cpio >/dev/null || fail "cpio missing; run $HERE/setup.sh"

W=$(mktemp -d /tmp/vfio-user-vm.XXXXXX)
trap 'rm -rf "$W"' EXIT

# Per-run initrd: the prepared initramfs followed by a second gzip'ed cpio
# archive with /run.sh and /etc/vm.conf (the kernel unpacks concatenated
# archives in order).
mkdir -p "$W/overlay/etc"
if [ -n "$OVERLAY" ]; then
    [ -d "$OVERLAY" ] || fail "overlay $OVERLAY is not a directory"
    cp -a "$OVERLAY"/. "$W/overlay/"
fi
case $SCRIPT in
    none) ;;
    -) cat > "$W/overlay/run.sh" ;;
    *) [ -f "$SCRIPT" ] || fail "no guest script $SCRIPT"; cp "$SCRIPT" "$W/overlay/run.sh" ;;
esac
[ ! -f "$W/overlay/run.sh" ] || chmod 755 "$W/overlay/run.sh"
printf 'AUTOLOAD=%s CONSOLE=%s\n' "$AUTOLOAD" "$CONSOLE" > "$W/overlay/etc/vm.conf"
cp "$GUEST/initramfs.cpio.gz" "$W/initrd"
(cd "$W/overlay" && find . -print0 | cpio --null -o -H newc --quiet -R 0:0) | gzip -1 >> "$W/initrd"

json_esc() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
DEV=()
for i in "${!SOCKS[@]}"; do
    s=${SOCKS[$i]}
    [ -S "$s" ] || fail "$s is not a UNIX socket (is the server listening?)"
    abs=$(cd "$(dirname "$s")" && pwd -P)/$(basename "$s")
    # QEMU 11.1 accepts the socket (a SocketAddress) only in JSON -device syntax.
    DEV+=(-device "{\"driver\":\"vfio-user-pci\",\"id\":\"vfu$i\",\"addr\":\"$(printf '0x%x' $((i + 1))).0\",\"socket\":{\"type\":\"unix\",\"path\":\"$(json_esc "$abs")\"}$VFU_OPTS}")
done

if [ -z "$ERRFILE" ]; then ERRFILE=$(mktemp /tmp/vfio-user-vm-qemu-stderr.XXXXXX); fi
: > "$ERRFILE"
echo "run-guest: qemu-stderr=$ERRFILE" >&2

if [ -n "$QEMU_BIN" ]; then
    command -v "$QEMU_BIN" >/dev/null || fail "no QEMU at $QEMU_BIN"
    QEMU=("$(command -v "$QEMU_BIN")")
    "${QEMU[@]}" -device vfio-user-pci,help 2>&1 | grep -q 'socket=' \
        || fail "$QEMU_BIN has no vfio-user-pci device with a socket property (QEMU 10.1 or later is needed)"
else
    # QEMU from the trixie root, started through the root's own dynamic loader:
    # no chroot, no mounts, and the socket paths are the host's.
    QEMU=("$ROOT/lib64/ld-linux-x86-64.so.2"
          --library-path "$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu"
          "$ROOT/usr/bin/qemu-system-x86_64" -L "$ROOT/usr/share/seabios" -L "$ROOT/usr/share/qemu")
fi

ACCEL=${VFIO_USER_VM_ACCEL:-}
if [ -z "$ACCEL" ]; then
    # KVM only when it can really be opened (a container may show /dev/kvm without access).
    if [ -c /dev/kvm ] && { exec 8<>/dev/kvm; } 2>/dev/null; then ACCEL=kvm; exec 8>&-; else ACCEL=tcg; fi
fi
echo "run-guest: accel=$ACCEL smp=$SMP mem=${MEM}M devices=${#SOCKS[@]}" >&2

if [ "$CONSOLE" = 1 ]; then
    # ^A x quits; signal=off passes ^C to the guest's shell.
    SERIAL=(-chardev stdio,id=con0,mux=on,signal=off -serial chardev:con0)
else
    SERIAL=(-serial stdio)
fi
ARGS=(-nodefaults -no-user-config -nographic "${SERIAL[@]}" -monitor none -no-reboot
      -accel "$ACCEL" -cpu max -smp "$SMP" -m "${MEM}M"
      -object "memory-backend-memfd,id=mem,size=${MEM}M,share=on"
      -machine q35,memory-backend=mem
      -kernel "$GUEST/vmlinuz" -initrd "$W/initrd"
      -append "console=ttyS0 quiet panic=-1 $APPEND"
      "${DEV[@]}" "${EXTRA[@]}")

# The exact command, for reproducing a run by hand (vfio-user vm -v shows it).
echo "run-guest: qemu command: $(printf '%q ' "${QEMU[@]}" "${ARGS[@]}")" >&2
# setup.sh removes guests nobody has booted for a while.
touch "$GUEST/.used" 2>/dev/null || true
T0=$(date +%s%N)
set +e
if [ "$CONSOLE" = 1 ]; then
    "${QEMU[@]}" "${ARGS[@]}" 2>"$ERRFILE"
elif [ "$TIMEOUT" = 0 ]; then
    "${QEMU[@]}" "${ARGS[@]}" </dev/null 2>"$ERRFILE"
else
    timeout -k 5 "$TIMEOUT" "${QEMU[@]}" "${ARGS[@]}" </dev/null 2>"$ERRFILE"
fi
RC=$?
set -e
MS=$(( ($(date +%s%N) - T0) / 1000000 ))
[ "$RC" != 124 ] || [ "$TIMEOUT" = 0 ] || echo "run-guest: TIMEOUT after ${TIMEOUT}s, QEMU killed" >&2
echo "run-guest: qemu exit=$RC wall_ms=$MS stderr_bytes=$(wc -c < "$ERRFILE")" >&2
exit "$RC"
