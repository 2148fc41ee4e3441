#!/bin/sh
# /init of the end-to-end test guest (busybox sh, runs as PID 1).
#
# Console report, one marker per line, parsed by parseGuestReport() in
# test/e2e/qemu.ts:
#   === HARNESS BEGIN kernel=K uptime=U ===
#   === BEGIN pci DDDD:BB:SS.F ===        one block per PCI function:
#   vendor=0x.. device=0x.. subsystem_vendor=.. subsystem_device=.. class=..
#   revision=.. irq=N driver=NAME|- enable=N config_size=N   (one key=value per line)
#   resource N START END FLAGS            each non-empty line of .../resource
#   config OFFSET: xx xx ... (16 bytes)   config space (256 bytes; all of it
#                                         for devices that are not Intel's q35 chipset)
#   === END pci DDDD:BB:SS.F rc=0 ===
#   === BEGIN run.sh ===                  the per-run guest script (/run.sh from the
#   ...                                   second cpio archive that run-guest.sh appends)
#   === END run.sh rc=N ===
#   === BEGIN interrupts ===              /proc/interrupts after the script
#   === END interrupts rc=0 ===
#   === HARNESS DONE uptime=U ===
# then poweroff -f. The per-run script may nest its own sections with
# `section NAME CMD [ARGS...]` (also markers of the form above).
export PATH=/bin:/sbin
umask 022
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/null >/dev/console 2>&1

up() { cut -d' ' -f1 /proc/uptime; }
echo
echo "=== HARNESS BEGIN kernel=$(uname -r) uptime=$(up) ==="

# config space as "config 0000: xx xx ..." lines
dump_config() {
    hexdump -v -e '"config %04_ax:" 16/1 " %02x" "\n"' "$@"
}

pci_report() {
    for d in /sys/bus/pci/devices/*; do
        [ -e "$d/vendor" ] || continue
        bdf=${d##*/}
        echo "=== BEGIN pci $bdf ==="
        for k in vendor device subsystem_vendor subsystem_device class revision irq enable; do
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

echo "=== BEGIN interrupts ==="
cat /proc/interrupts
echo "=== END interrupts rc=$? ==="

echo "=== HARNESS DONE uptime=$(up) ==="
sync
poweroff -f
# Not reached; if poweroff fails the kernel panics (panic=-1) and QEMU exits (-no-reboot).
sleep 5
