#!/bin/bash
# vm/setup.sh - prepare the guest that `vfio-user vm` and the QEMU end-to-end
# tests boot (idempotent).
#
# What it prepares, in the cache directory ($VFIO_USER_VM_CACHE or
# $VFIO_USER_E2E_CACHE, default /var/cache/vfio-user-ts/e2e; deliberately
# outside the clone so that every checkout and the installed command share it):
#   root/    a minimal Debian trixie tree (debootstrap --variant=minbase) holding
#            qemu-system-x86 from trixie-backports (QEMU >= 10.1 has vfio-user-pci).
#            QEMU is later run from it through its own dynamic loader, no chroot.
#   debs/    trixie's linux-image-*-amd64 and busybox-static packages
#   guests/STAMP/  vmlinuz + initramfs.cpio.gz (busybox, /init = guest-init.sh,
#            the modules of GUEST_MODULES, decompressed, with their PCI aliases)
#            and harness.json (paths and versions, read by vm/harness.ts).
#            STAMP is a hash of this script and guest-init.sh: checkouts with
#            different guest recipes share one cache without rebuilding each
#            other's guest.
# The path of harness.json is the one line this script prints on stdout.
#
# Each piece is built in a *.new directory and renamed into place only after it
# is complete, and carries a stamp: a piece whose stamp is missing or differs
# from the current recipe is rebuilt. A crash half-way leaves only *.new junk,
# which the next run deletes. A lock serialises concurrent runs.
#
# Needs root for a build (apt-get, debootstrap, unshare, chroot, mknod). When
# the cache is complete it only checks stamps (well under a second), so it can
# then run as any user who can read the cache.
#
# Environment:
#   VFIO_USER_VM_MODULES  extra kernel modules for the guest (names, comma or space
#                         separated; e.g. "virtio_net"): a guest of its own is built
#   VFIO_USER_VM_CACHE    cache directory (default /var/cache/vfio-user-ts/e2e;
#                         VFIO_USER_E2E_CACHE is the older name)
#   VFIO_USER_E2E_MIRROR  Debian mirror URL (default: the one the host's apt uses)
#   VFIO_USER_E2E_REBUILD=1  throw the cache away and build everything again
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
CACHE=${VFIO_USER_VM_CACHE:-${VFIO_USER_E2E_CACHE:-/var/cache/vfio-user-ts/e2e}}
SUITE=trixie
# Bump ROOT_RECIPE when the package set of the root changes. The guest stamp
# is a hash of this file and guest-init.sh, so any edit rebuilds the guest.
ROOT_RECIPE="trixie-minbase+backports-qemu-system-x86/v1"
# Kernel modules copied into the guest (their dependencies come along). One
# per line, '#' comments allowed: add a driver here and the guest loads it for
# any device matching one of its PCI aliases.
GUEST_MODULES='
    gpio-pci-idio-16        # ACCES PCI-IDIO-16 (samples/gpio-device.ts)
    nvme-keyring
    nvme                    # NVMe (samples/nvme)
    uio_pci_generic         # any device, bound through driver_override (docs/writing-a-device.md)
    crc32c_generic          # crc32c for ext4 (a soft dependency: not followed)
    ext4                    # ext2 on the NVMe namespace (test/e2e/nvme.test.ts)
'

T_START=$(date +%s.%N)
log() { printf 'setup: %s\n' "$*" >&2; }
# die [-c CODE] MESSAGE: CODE (not-root, no-packages, no-qemu, ...) lets the
# caller tell the causes apart: "setup: ERROR[CODE]: MESSAGE".
die() {
    local code=failed
    if [ "$1" = -c ]; then code=$2; shift 2; fi
    printf 'setup: ERROR[%s]: %s\n' "$code" "$*" >&2
    exit 1
}
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
stage_start() { STAGE=$1; T_STAGE=$(date +%s.%N); log "[$STAGE] building"; }
stage_done() { log "[$STAGE] done in $(elapsed "$T_STAGE")s"; }

# ---------------------------------------------------------------- cache + lock
mkdir -p "$CACHE" 2>/dev/null || die -c not-root "cannot create the cache directory $CACHE: run once as root (or set VFIO_USER_VM_CACHE to a writable directory)"
CACHE=$(cd "$CACHE" && pwd -P)
{ exec 9>>"$CACHE/.lock"; } 2>/dev/null || { exec 9<"$CACHE/.lock"; } 2>/dev/null || die -c not-root "cannot open $CACHE/.lock (run once as root)"
if ! flock -w 1200 9; then die "timed out waiting for the lock on $CACHE/.lock"; fi

ROOT=$CACHE/root
DEBS=$CACHE/debs
# The recipe: these two scripts plus any extra modules asked for (run-guest.sh
# computes the same hash to find the guest).
GUEST_STAMP=$({ cat "$HERE/setup.sh" "$HERE/guest-init.sh"; printf '%s' "${VFIO_USER_VM_MODULES:-}"; } | sha256sum | cut -c1-16)
GUEST=$CACHE/guests/$GUEST_STAMP

if [ "${VFIO_USER_E2E_REBUILD:-}" = 1 ]; then
    log "VFIO_USER_E2E_REBUILD=1: discarding the cache"
    rm -rf --one-file-system "$ROOT" "$DEBS" "$GUEST"
fi
# leftovers of an interrupted run
rm -rf --one-file-system "$CACHE"/*.new "$CACHE"/*.old "$CACHE"/guests/*.new

stamp_ok() { [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$2" ]; }

need_root() {
    [ "$(id -u)" = 0 ] || die -c not-root "the first run builds the guest in $CACHE ($1) and needs root; run once as root: sudo $0"
}

# ---------------------------------------------------------------- host tools
# Installs the Debian packages that provide missing commands (apt-get update first).
ensure_host_tools() {
    local missing=() c p
    for c in "$@"; do
        case $c in
            debootstrap) p=debootstrap ;;
            cpio) p=cpio ;;
            xz) p=xz-utils ;;
            gzip) p=gzip ;;
            unshare|flock) p=util-linux ;;
            dpkg-deb) p=dpkg ;;
            timeout|sha256sum) p=coreutils ;;
            *) die -c no-tool "no package known for $c" ;;
        esac
        command -v "$c" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} = 0 ] && return 0
    need_root "installing ${missing[*]}"
    log "installing host packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    command -v apt-get >/dev/null || die -c no-packages "missing ${missing[*]} and no apt-get to install them (a Debian or Ubuntu host is needed)"
    apt-get update -q >&2 || die -c no-packages "apt-get update failed: no access to the host's package mirror"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
        || die -c no-packages "cannot install ${missing[*]} with apt-get (no package access?)"
}

mirror() {
    if [ -n "${VFIO_USER_E2E_MIRROR:-}" ]; then echo "$VFIO_USER_E2E_MIRROR"; return; fi
    # The URL the host's apt uses for Debian main, e.g. "500 URL bookworm/main amd64 Packages".
    local m
    m=$(apt-cache policy 2>/dev/null | awk '$3 ~ /^[a-z]+\/main$/ && $3 !~ /security|updates|backports/ && $2 ~ /^https?:/ { print $2; exit }')
    [ -n "$m" ] || die -c no-packages "cannot find the host's Debian mirror in 'apt-cache policy'; set VFIO_USER_E2E_MIRROR"
    echo "${m%/}"
}

# Run a command chrooted into $1 with /proc, /sys and /dev, inside a private
# mount namespace: every mount vanishes with the namespace, even on failure.
in_root() {
    local r=$1; shift
    unshare --mount --propagation private -- /bin/sh -ec '
        r=$1; shift
        mount -t proc proc "$r/proc"
        mount --rbind /sys "$r/sys"
        mount --rbind /dev "$r/dev"
        exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"
    ' in_root "$r" "$@"
}

# QEMU from the root, run on the host through the root's own ld.so.
qemu_in() {
    local r=$1; shift
    "$r/lib64/ld-linux-x86-64.so.2" --library-path "$r/usr/lib/x86_64-linux-gnu:$r/lib/x86_64-linux-gnu" \
        "$r/usr/bin/qemu-system-x86_64" -L "$r/usr/share/seabios" -L "$r/usr/share/qemu" "$@"
}

# ---------------------------------------------------------------- 1. root
build_root() {
    need_root "trixie root"
    ensure_host_tools debootstrap unshare
    stage_start root
    local new=$CACHE/root.new m
    m=$(mirror)
    log "[root] mirror $m"
    # debootstrap mounts /proc etc. in the target itself; keep that private too.
    unshare --mount --propagation private -- \
        debootstrap --variant=minbase "$SUITE" "$new" "$m" >&2 \
        || die -c no-packages "debootstrap $SUITE from $m failed (no access to the Debian mirror? see above)"
    printf 'deb %s %s main\ndeb %s %s-backports main\n' "$m" "$SUITE" "$m" "$SUITE" > "$new/etc/apt/sources.list"
    cp -L /etc/resolv.conf "$new/etc/resolv.conf"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$new/etc/apt/apt.conf.d/90harness"
    in_root "$new" apt-get update -q >&2 || die -c no-packages "apt-get update in the $SUITE root failed (mirror $m)"
    in_root "$new" apt-get install -y -q -t "$SUITE-backports" qemu-system-x86 >&2 \
        || die -c no-packages "cannot install qemu-system-x86 from $SUITE-backports (mirror $m)"
    in_root "$new" apt-get clean
    rm -rf "$new/usr/share/doc" "$new/usr/share/man" "$new/usr/share/locale"
    # Prove QEMU runs from outside the root and has the vfio-user client.
    mkdir -p "$new/.harness"
    qemu_in "$new" --version | head -1 > "$new/.harness/qemu-version"
    qemu_in "$new" -device vfio-user-pci,help > "$new/.harness/vfio-user-pci-help" 2>&1 \
        || die -c no-qemu "this QEMU has no vfio-user-pci device: $(cat "$new/.harness/vfio-user-pci-help")"
    grep -q 'socket=' "$new/.harness/vfio-user-pci-help" || die -c no-qemu "vfio-user-pci has no socket property"
    log "[root] $(cat "$new/.harness/qemu-version")"
    echo "$ROOT_RECIPE" > "$new/.stamp"
    rm -rf --one-file-system "$ROOT"
    mv "$new" "$ROOT"
    stage_done
}

# ---------------------------------------------------------------- 2. debs
fetch_debs() {
    need_root "guest packages"
    stage_start debs
    local new=$CACHE/debs.new kver
    # The lists are in the root since step 1; refresh them if they were dropped.
    ls "$ROOT"/var/lib/apt/lists/*Packages* >/dev/null 2>&1 || in_root "$ROOT" apt-get update -q >&2 \
        || die -c no-packages "apt-get update in the $SUITE root failed"
    kver=$(in_root "$ROOT" apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: linux-image-\([^ ]*-amd64\)$/\1/p' | head -1)
    [ -n "$kver" ] || die "cannot tell which kernel linux-image-amd64 depends on"
    log "[debs] kernel $kver"
    rm -rf "$ROOT/var/tmp/harness-dl"
    mkdir -p "$ROOT/var/tmp/harness-dl" "$new"
    in_root "$ROOT" sh -c "cd /var/tmp/harness-dl && apt-get download -q linux-image-$kver busybox-static" >&2 \
        || die -c no-packages "cannot download linux-image-$kver and busybox-static"
    mv "$ROOT"/var/tmp/harness-dl/*.deb "$new/"
    rmdir "$ROOT/var/tmp/harness-dl"
    echo "$kver" > "$new/KVER"
    echo "$SUITE:$kver" > "$new/.stamp"
    rm -rf "$DEBS"
    mv "$new" "$DEBS"
    # The package lists (~190 MB) are not needed any more; a later run that
    # needs them again (new recipe) refreshes them above.
    find "$ROOT/var/lib/apt/lists" -maxdepth 1 -type f ! -name lock -delete
    in_root "$ROOT" apt-get clean
    stage_done
}

# ---------------------------------------------------------------- 3. guest
build_guest() {
    need_root "guest initramfs"
    ensure_host_tools cpio xz gzip dpkg-deb
    stage_start guest
    local new=$GUEST.new kver kdeb bdeb x irfs moddir m f
    kver=$(cat "$DEBS/KVER")
    kdeb=$(ls "$DEBS"/linux-image-"$kver"_*.deb)
    bdeb=$(ls "$DEBS"/busybox-static_*.deb | tail -1)
    x=$new/x
    irfs=$new/initramfs
    mkdir -p "$x" "$irfs"
    moddir=./usr/lib/modules/$kver

    # The package has no modules.dep (depmod runs at install time), so the
    # dependencies come from each module's own "depends=" modinfo field.
    dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$x" "./boot/vmlinuz-$kver" "$moddir/kernel"
    find "$x/$moddir/kernel" -name '*.ko*' | awk '{ n = $0; sub(/.*\//, "", n); sub(/\.ko(\.[a-z]+)?$/, "", n); k = n; gsub(/-/, "_", k); print k, n, $0 }' > "$x/index"
    declare -A seen=()
    ORDER=()
    # resolve NAME: append NAME's dependencies, then NAME, to ORDER (once each)
    resolve() {
        local key=${1//-/_} line file n deps d
        [ -n "${seen[$key]:-}" ] && return 0
        seen[$key]=1
        line=$(awk -v k="$key" '$1 == k { print $2, $3; exit }' "$x/index")
        [ -n "$line" ] || die "module $1 is not in linux-image-$kver"
        n=${line%% *}; file=${line#* }
        deps=$(mod_cat "$file" | tr '\0' '\n' | sed -n 's/^depends=//p' | tr , ' ')
        for d in $deps; do resolve "$d"; done
        ORDER+=("$n|$file")
    }
    mod_cat() {
        case $1 in
            *.xz) xz -dc "$1" ;;
            *.ko) cat "$1" ;;
            *) die "unsupported module compression: $1" ;;
        esac
    }
    local extra=${VFIO_USER_VM_MODULES:-}
    for m in $(printf '%s\n' "$GUEST_MODULES" | sed 's/#.*//') ${extra//,/ }; do resolve "$m"; done
    dpkg-deb --fsys-tarfile "$bdeb" | tar -x -C "$x" ./usr/bin/busybox

    mkdir -p "$irfs"/{bin,sbin,dev,proc,sys,tmp,run,modules,root}
    cp "$x/usr/bin/busybox" "$irfs/bin/busybox"
    for m in $("$irfs/bin/busybox" --list); do
        [ -e "$irfs/bin/$m" ] || ln -s busybox "$irfs/bin/$m"
    done
    # Modules: /modules/NAME.ko (plain: busybox insmod cannot decompress),
    # /modules/order (all of them in a valid load order), /modules/deps
    # ("NAME: DEP..." with the dependencies in load order, for loadmod) and
    # /modules/aliases ("PATTERN NAME" from each module's alias= fields: what
    # modules.alias holds, for the guest's modalias loop).
    : > "$irfs/modules/order"
    : > "$irfs/modules/deps"
    : > "$irfs/modules/aliases"
    local all=("${ORDER[@]}") e o
    for e in "${all[@]}"; do
        m=${e%%|*}; f=${e#*|}
        mod_cat "$f" > "$irfs/modules/$m.ko"
        echo "$m" >> "$irfs/modules/order"
        tr '\0' '\n' < "$irfs/modules/$m.ko" | sed -n "s/^alias=\(.*\)/\1 $m/p" >> "$irfs/modules/aliases"
        seen=(); ORDER=()
        resolve "$m"
        printf '%s:' "$m" >> "$irfs/modules/deps"
        for o in "${ORDER[@]}"; do [ "${o%%|*}" = "$m" ] || printf ' %s' "${o%%|*}"; done >> "$irfs/modules/deps"
        echo >> "$irfs/modules/deps"
    done
    cat > "$irfs/bin/loadmod" <<'LOADMOD'
#!/bin/sh
# loadmod NAME... - insmod /modules/NAME.ko after its dependencies (see /modules/deps)
rc=0
for want in "$@"; do
    deps=$(sed -n "s/^$want: *//p" /modules/deps)
    [ -f "/modules/$want.ko" ] || { echo "loadmod: no module $want" >&2; rc=1; continue; }
    for m in $deps $want; do
        k=$(echo "$m" | tr - _)
        grep -q "^$k " /proc/modules && continue
        insmod "/modules/$m.ko" || { echo "loadmod: insmod $m failed" >&2; rc=1; break; }
    done
done
exit $rc
LOADMOD
    chmod 755 "$irfs/bin/loadmod"
    # section NAME CMD [ARGS...]: run CMD between report markers, keep its status.
    cat > "$irfs/bin/section" <<'SECTION'
#!/bin/sh
name=$1; shift
echo "=== BEGIN $name ==="
"$@"
rc=$?
echo "=== END $name rc=$rc ==="
exit $rc
SECTION
    chmod 755 "$irfs/bin/section"
    cp "$HERE/guest-init.sh" "$irfs/init"
    chmod 755 "$irfs/init"
    echo "$kver" > "$irfs/KVER"
    # The kernel opens /dev/console before /init can mount devtmpfs.
    mknod -m 600 "$irfs/dev/console" c 5 1
    mknod -m 666 "$irfs/dev/null" c 1 3
    (cd "$irfs" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) | gzip -6 > "$new/initramfs.cpio.gz"
    cp "$x/boot/vmlinuz-$kver" "$new/vmlinuz"
    cp "$irfs/modules/order" "$new/modules.order"
    echo "$kver" > "$new/KVER"
    rm -rf "$x" "$irfs"
    json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
    {
        printf '{\n'
        printf '  "cache": %s,\n' "$(json_str "$CACHE")"
        printf '  "root": %s,\n' "$(json_str "$ROOT")"
        printf '  "guest": %s,\n' "$(json_str "$GUEST")"
        printf '  "kernel": %s,\n' "$(json_str "$GUEST/vmlinuz")"
        printf '  "initramfs": %s,\n' "$(json_str "$GUEST/initramfs.cpio.gz")"
        printf '  "kernelVersion": %s,\n' "$(json_str "$kver")"
        printf '  "qemuVersion": %s,\n' "$(json_str "$(cat "$ROOT/.harness/qemu-version")")"
        printf '  "guestModules": [%s],\n' "$(sed 's/.*/"&"/' "$new/modules.order" | paste -sd, -)"
        printf '  "rootRecipe": %s,\n' "$(json_str "$ROOT_RECIPE")"
        printf '  "guestStamp": %s\n' "$(json_str "$GUEST_STAMP")"
        printf '}\n'
    } > "$new/harness.json"
    echo "$GUEST_STAMP" > "$new/.stamp"
    rm -rf "$GUEST"
    mv "$new" "$GUEST"
    log "[guest] kernel $kver, modules: $(tr '\n' ' ' < "$GUEST/modules.order")"
    stage_done
}

# ---------------------------------------------------------------- main
built=
if stamp_ok "$ROOT" "$ROOT_RECIPE" && stamp_ok "$GUEST" "$GUEST_STAMP"; then
    ensure_host_tools cpio gzip timeout          # what run-guest.sh needs
else
    ensure_host_tools debootstrap unshare cpio xz gzip dpkg-deb timeout
fi
# A new root or new packages make every guest built from the old ones stale.
if ! stamp_ok "$ROOT" "$ROOT_RECIPE"; then build_root; built=1; rm -rf "$DEBS"; fi
if ! stamp_ok "$DEBS" "$SUITE:$(cat "$DEBS/KVER" 2>/dev/null)"; then fetch_debs; built=1; rm -rf "$CACHE/guests"; fi
mkdir -p "$CACHE/guests"
if ! stamp_ok "$GUEST" "$GUEST_STAMP"; then build_guest; built=1; fi
# Guests of other recipes (other checkouts or versions) not booted for 30 days
# go (run-guest.sh touches .used at each boot); about 13 MB each.
for g in "$CACHE"/guests/*/; do
    g=${g%/}
    [ "$g" != "$GUEST" ] && [ -f "$g/.stamp" ] || continue
    u=$g/.used; [ -e "$u" ] || u=$g/.stamp
    if [ -n "$(find "$u" -mtime +30 2>/dev/null)" ]; then
        rm -rf --one-file-system "$g" 2>/dev/null && log "removed guest ${g##*/}, unused for 30 days"
    fi
done

log "ready in $(elapsed "$T_START")s ($( [ -n "$built" ] && echo built || echo cached)): $CACHE"
log "$(cat "$ROOT/.harness/qemu-version"), kernel $(cat "$GUEST/KVER")"
echo "$GUEST/harness.json"
