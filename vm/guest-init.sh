#!/bin/sh
# /init of the guest that `vfio-user vm` and the end-to-end tests boot (busybox
# sh, runs as PID 1).
#
# Console report, one marker per line, parsed by parseGuestReport() in
# vm/harness.ts:
#   === HARNESS BEGIN kernel=K uptime=U ===
#   === BEGIN autoload ===                only with AUTOLOAD=1: "BDF MODALIAS -> MODULE"
#   === END autoload rc=N ===             for each driver loaded by modalias
#   === BEGIN pci DDDD:BB:SS.F ===        one block per PCI function:
#   vendor=0x.. device=0x.. subsystem_vendor=.. subsystem_device=.. class=..
#   revision=.. irq=N driver=NAME|- enable=N modalias=.. config_size=N
#                                         (one key=value per line)
#   resource N START END FLAGS            each non-empty line of .../resource
#   config OFFSET: xx xx ... (16 bytes)   config space (256 bytes; all of it
#                                         for devices that are not Intel's q35 chipset)
#   === END pci DDDD:BB:SS.F rc=0 ===
#   === BEGIN run.sh ===                  the per-run guest script (/run.sh from the
#   ...                                   second cpio archive that run-guest.sh appends)
#   === END run.sh rc=N ===
#   === BEGIN console ===                 only with CONSOLE=1: an interactive shell
#   === END console rc=N ===              on the serial line, until it exits
#   === BEGIN interrupts ===              /proc/interrupts after the script
#   === END interrupts rc=0 ===
#   === HARNESS DONE uptime=U ===
# then poweroff -f. The per-run script may nest its own sections with
# `section NAME CMD [ARGS...]` (also markers of the form above).
#
# /etc/vm.conf (from run-guest.sh's per-run archive) may set AUTOLOAD=1 (load
# each device's driver by its modalias before the PCI report, as udev would)
# and CONSOLE=1.
export PATH=/bin:/sbin
umask 022
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/null >/dev/console 2>&1
AUTOLOAD=0 CONSOLE=0
[ -f /etc/vm.conf ] && . /etc/vm.conf

up() { cut -d' ' -f1 /proc/uptime; }
echo
echo "=== HARNESS BEGIN kernel=$(uname -r) uptime=$(up) ==="

# config space as "config 0000: xx xx ..." lines
dump_config() {
    hexdump -v -e '"config %04_ax:" 16/1 " %02x" "\n"' "$@"
}

# Loads, for every PCI function without a driver, each module one of whose
# aliases (/modules/aliases: "PATTERN MODULE") matches its modalias: what
# udev does with modules.alias. The patterns are shell globs.
autoload() {
    rc=0
    for d in /sys/bus/pci/devices/*; do
        [ -r "$d/modalias" ] && [ ! -e "$d/driver" ] || continue
        ma=$(cat "$d/modalias")
        while read -r pat mod; do
            # shellcheck disable=SC2254
            case $ma in
                $pat)
                    if loadmod "$mod"; then echo "${d##*/} $ma -> $mod"
                    else echo "${d##*/} $ma -> $mod FAILED"; rc=1; fi ;;
            esac
        done < /modules/aliases
    done
    # Devices appear behind a bound driver a little later (an NVMe namespace
    # after the controller's reset work): wait until /sys/class stops
    # changing, for at most 5 s.
    prev= i=0
    while [ $i -lt 25 ]; do
        now=$(ls /sys/class/* 2>/dev/null | md5sum)
        [ "$now" = "$prev" ] && break
        prev=$now; i=$((i + 1)); sleep 0.2
    done
    return $rc
}

pci_report() {
    for d in /sys/bus/pci/devices/*; do
        [ -e "$d/vendor" ] || continue
        bdf=${d##*/}
        echo "=== BEGIN pci $bdf ==="
        for k in vendor device subsystem_vendor subsystem_device class revision irq enable modalias; do
            [ -r "$d/$k" ] && echo "$k=$(cat "$d/$k" 2>/dev/null)"
        done
        drv=-
        [ -e "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")")
        echo "driver=$drv"
        [ -d "$d/msi_irqs" ] && echo "msi_irqs=$(ls "$d/msi_irqs" | tr '\n' ' ')"
        i=0
        while read -r s e f; do
            if [ "$s" != 0x0000000000000000 ] || [ "$e" != 0x0000000000000000 ] || [ "$f" != 0x0000000000000000 ]; then
                echo "resource $i $s $e $f"
            fi
            i=$((i + 1))
        done < "$d/resource"
        size=$(wc -c < "$d/config" 2>/dev/null)
        echo "config_size=${size:-0}"
        if [ "$(cat "$d/vendor")" = 0x8086 ]; then
            head -c 256 "$d/config" | dump_config
        else
            dump_config "$d/config"
        fi
        echo "=== END pci $bdf rc=0 ==="
    done
}

if [ "$AUTOLOAD" = 1 ]; then
    echo "=== BEGIN autoload ==="
    autoload
    echo "=== END autoload rc=$? ==="
fi

pci_report

# Per-run script (and any files beside it) from the appended archive.
if [ -f /run.sh ]; then
    chmod 755 /run.sh
    echo "=== BEGIN run.sh ==="
    (cd /root && sh /run.sh)
    rc=$?
    echo "=== END run.sh rc=$rc ==="
else
    echo "=== NO run.sh ==="
fi

if [ "$CONSOLE" = 1 ]; then
    # setsid + opening the serial line makes it the shell's controlling
    # terminal: job control and ^C work as on a real console.
    echo "=== BEGIN console ==="
    (cd /root && HOME=/root PS1='vm# ' setsid sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1')
    rc=$?
    echo
    echo "=== END console rc=$rc ==="
fi

echo "=== BEGIN interrupts ==="
cat /proc/interrupts
echo "=== END interrupts rc=$? ==="

echo "=== HARNESS DONE uptime=$(up) ==="
sync
poweroff -f
# Not reached; if poweroff fails the kernel panics (panic=-1) and QEMU exits (-no-reboot).
sleep 5
