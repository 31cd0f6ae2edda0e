#!/usr/bin/env bash
# The pure cgroup v2 lane (issue 17): boots Debian's own kernel under QEMU (TCG: no KVM
# needed) with `cgroup_no_v1=all`, so that hullc and hull meet a pure cgroup v2 host as
# Debian 12, Ubuntu 22.04+, Fedora and RHEL 9 give them, whatever the CI machine's own
# cgroup layout. The guest's userland is an initramfs made here at each run: busybox, the
# three hull programs with their libraries, nft, the kernel modules hull needs and the
# checks in scripts/vm/ (docs/testing.md). One boot runs every check; each prints
# `PASS name` or `FAIL name: reason` on the serial console and the guest ends with
# `VM-SUMMARY pass=N fail=M`. Exit status 0 only when that line came with fail=0 and no
# FAIL, no kernel panic and no timeout.
#   scripts/vm-test.sh            # as root; installs what it needs, builds the binaries
# HULL_VM_PROFILE=debug uses debug binaries (faster to build; hullc is then dynamic),
# HULL_VM_TIMEOUT (seconds, default 2400), HULL_VM_CACHE (kernel cache, default target/vm),
# HULL_VM_BIN_DIR=DIR takes hullc, hull and containerd-shim-hull-v2 from DIR (no build).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
cache=${HULL_VM_CACHE:-$PWD/target/vm}
timeout_s=${HULL_VM_TIMEOUT:-2400}
profile=${HULL_VM_PROFILE:-release}
target=${CARGO_TARGET_DIR:-target}
say() { echo "vm-test: $*" >&2; }

install_packages() {
    local p missing=()
    # qemu-system-x86: the VM; busybox-static: the guest's userland and the containers'
    # rootfs; cpio: the initramfs; nftables: hull-net runs `nft`; uidmap: newuidmap and
    # newgidmap for the rootless checks (both copied into the guest); attr: setfattr and
    # getfattr, which mark the rootless user's cgroup delegated as systemd does.
    for p in qemu-system-x86 busybox-static cpio nftables uidmap attr; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    if ((${#missing[@]})); then
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

build() {
    if [ -n "${HULL_VM_BIN_DIR:-}" ]; then
        return
    fi
    if [ "$profile" = release ]; then
        scripts/release.sh --quiet
    else
        cargo build --quiet -p hullc -p hull -p hull-shim
    fi
}

# Debian's current 6.1 kernel package (what linux-image-amd64 depends on), unpacked into the
# cache with busybox's depmod (kmod is not needed); nothing is installed into /boot.
# Sets kver and kdir.
fetch_kernel() {
    local pkg deb
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1)
    if [ -z "$pkg" ]; then
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        pkg=$(apt-cache depends linux-image-amd64 |
            sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1)
    fi
    kver=${pkg#linux-image-}
    kdir=$cache/$pkg
    if [ ! -e "$kdir/done" ]; then
        say "fetching $pkg"
        rm -rf "$kdir"
        mkdir -p "$kdir/dl"
        (cd "$kdir/dl" && apt-get download -q "$pkg" >/dev/null 2>&1) ||
            (apt-get -o DPkg::Lock::Timeout=600 update -qq &&
                cd "$kdir/dl" && apt-get download -q "$pkg" >/dev/null)
        deb=$(ls "$kdir"/dl/*.deb)
        dpkg-deb -x "$deb" "$kdir/x"
        rm -rf "$kdir/dl"
        busybox depmod -b "$kdir/x" "$kver"
        touch "$kdir/done"
    fi
}

# copy_with_libs FILE DEST_DIR: FILE and, if dynamic, its libraries and loader at their
# own paths under the guest root $root.
copy_with_libs() {
    local lib
    install -D -m 0755 "$1" "$root$2/$(basename "$1")"
    if ldd "$1" >/dev/null 2>&1; then
        for lib in $(ldd "$1" | grep -o '/[^ ]*'); do
            [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
        done
    fi
}

# The modules the guest loads (guest.sh modprobes them in this order) and every module
# they depend on, from the package's modules.dep. crc32c_generic: libcrc32c (nf_tables)
# needs a crc32c implementation at load time, a softdep that modules.dep does not list.
guest_modules=(crc32c_generic overlay veth bridge nf_tables nft_chain_nat nft_nat nft_masq nft_ct
    nft_fib_inet nft_fib_ipv4 nft_reject_inet nft_compat)
copy_modules() {
    local m src=$kdir/x/lib/modules/$kver dst=$root/lib/modules/$kver want=() f dep
    for m in "${guest_modules[@]}"; do
        want+=("$(grep -E "/$m\.ko(\.[a-z]+)?:" "$src/modules.dep")") ||
            { say "module $m is not in $kver's modules.dep"; return 1; }
    done
    mkdir -p "$dst"
    for f in $(printf '%s\n' "${want[@]}" | tr -d ':' | tr ' ' '\n' | sort -u); do
        install -D -m 0644 "$src/$f" "$dst/$f"
    done
    for dep in modules.dep modules.alias modules.symbols modules.builtin modules.order; do
        cp "$src/$dep" "$dst/"
    done
    printf '%s\n' "${guest_modules[@]}" > "$root/vm/modules"
}

# busybox with a link per applet in DIR/bin (the containers' rootfs and the image's layer).
busybox_tree() {
    local a
    mkdir -p "$1"/{bin,etc,proc,sys,dev,tmp,root}
    cp /bin/busybox "$1/bin/busybox"
    for a in $(busybox --list); do
        [ "$a" = busybox ] || ln -s busybox "$1/bin/$a"
    done
}

# An OCI archive of a one-layer busybox image (docker.io/library/busybox:latest) serving
# /srv/index.html, for `hull load`.
image_archive() {
    local l=$work/layer o=$work/oci blob cfg man ld ls cd cs md ms
    busybox_tree "$l"
    mkdir -p "$l/srv" "$o/blobs/sha256"
    printf 'root:x:0:0:root:/root:/bin/sh\n' > "$l/etc/passwd"
    printf 'root:x:0:\n' > "$l/etc/group"
    printf 'served by hull\n' > "$l/srv/index.html"
    blob() { # FILE -> "sha256:HEX SIZE", stored as a blob
        local h
        h=$(sha256sum "$1" | cut -d' ' -f1)
        cp "$1" "$o/blobs/sha256/$h"
        echo "sha256:$h $(stat -c %s "$1")"
    }
    tar --numeric-owner --owner=0 --group=0 -C "$l" -cf "$work/layer.tar" .
    read -r ld ls < <(blob "$work/layer.tar")
    printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
        "$ld" > "$work/config.json"
    read -r cd cs < <(blob "$work/config.json")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
        "$cd" "$cs" "$ld" "$ls" > "$work/manifest.json"
    read -r md ms < <(blob "$work/manifest.json")
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"io.containerd.image.name":"docker.io/library/busybox:latest","org.opencontainers.image.ref.name":"latest"}}]}' \
        "$md" "$ms" > "$o/index.json"
    echo '{"imageLayoutVersion":"1.0.0"}' > "$o/oci-layout"
    tar -C "$o" -cf "$root/vm/busybox.tar" .
}

make_initramfs() {
    local bin=${HULL_VM_BIN_DIR:-$target/$profile} b
    mkdir -p "$root"/{bin,etc,vm,usr/local/bin,usr/sbin}
    cp /bin/busybox "$root/bin/busybox"
    cp scripts/vm/init "$root/init"
    cp -r scripts/vm/*.sh scripts/vm/ctr "$root/vm/"
    for b in hullc hull containerd-shim-hull-v2; do
        copy_with_libs "$bin/$b" /usr/local/bin
        # Debug info would make a debug build's initramfs ~300 MiB (RAM in the guest).
        strip --strip-debug "$root/usr/local/bin/$b"
    done
    copy_with_libs "$(command -v nft)" /usr/sbin
    copy_with_libs /usr/bin/setfattr /usr/bin
    copy_with_libs /usr/bin/getfattr /usr/bin
    # Setuid root, as the package installs them: they write a rootless user's id maps.
    for b in newuidmap newgidmap; do
        copy_with_libs "/usr/bin/$b" /usr/bin
        chmod 4755 "$root/usr/bin/$b"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
    printf 'root:x:0:\n' > "$root/etc/group"
    printf '127.0.0.1 localhost\n' > "$root/etc/hosts"
    # Not loopback: hull's bridge networks copy the host's non-loopback nameservers.
    printf 'nameserver 192.0.2.53\n' > "$root/etc/resolv.conf"
    copy_modules
    image_archive
    busybox_tree "$root/ctr/rootfs"
    cp -r scripts/vm/ctr "$root/ctr/rootfs/t"
    (cd "$root" && find . | cpio -o -H newc --quiet) > "$work/initrd.cpio"
}

qpid=
tpid=
work=
cleanup() {
    if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
        kill "$qpid" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
    fi
    if [ -n "$tpid" ]; then
        kill "$tpid" 2>/dev/null || true
    fi
    if [ -n "$work" ]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM # through the EXIT trap: qemu stopped, temp dir removed

# Boots the guest; its console goes to $log (and to our stdout as it comes).
# no_timer_check: on a busy host a TCG guest may miss the ticks of the kernel's early IO-APIC
# timer test, which then panics ("IO-APIC + timer doesn't work!"; seen here under load).
# Returns 1 on a timeout.
boot() {
    local waited=0
    : > "$log" # before tail opens it
    qemu-system-x86_64 -accel tcg -m 2G -smp 2 -nographic -no-reboot -nic none \
        -kernel "$kdir/x/boot/vmlinuz-$kver" -initrd "$work/initrd.cpio" \
        -append "console=ttyS0 cgroup_no_v1=all panic=-1 oops=panic quiet no_timer_check" \
        < /dev/null > "$log" 2>&1 &
    qpid=$!
    tail -n +1 -f --pid="$qpid" "$log" &
    tpid=$!
    while kill -0 "$qpid" 2>/dev/null; do
        if ((waited >= timeout_s)); then
            say "timeout after ${timeout_s}s: stopping qemu (pid $qpid)"
            kill "$qpid"
            wait "$qpid" || true
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    wait "$qpid" || say "qemu exited with status $?"
    wait "$tpid" 2>/dev/null || true
    tpid=
}

# The verdict from the console: the summary line, no FAIL line, no panic.
verdict() {
    local console summary fails
    console=$(tr -d '\r' < "$log")
    summary=$(grep -a '^VM-SUMMARY ' <<< "$console" | tail -n 1 || true)
    fails=$(grep -a '^FAIL ' <<< "$console" || true)
    if grep -aq 'Kernel panic' <<< "$console"; then
        say "FAILED: kernel panic"
        return 1
    fi
    if [ -z "$summary" ]; then
        say "FAILED: no VM-SUMMARY line (the guest did not finish)"
        return 1
    fi
    if [ -n "$fails" ] || ! grep -q ' fail=0$' <<< "$summary"; then
        say "FAILED: $summary"
        printf '%s\n' "$fails" >&2
        return 1
    fi
    say "ok: $summary (kernel $kver, pure cgroup v2)"
}

main() {
    local start=$SECONDS status=0
    install_packages
    build
    fetch_kernel
    work=$(mktemp -d /tmp/hull-vm.XXXXXX)
    root=$work/root
    log=$work/console.log
    make_initramfs
    say "booting $kver (initramfs $(du -h "$work/initrd.cpio" | cut -f1), timeout ${timeout_s}s)"
    boot || status=1
    if ((status == 0)); then
        verdict || status=1
    else
        say "FAILED: timeout"
    fi
    say "took $((SECONDS - start))s"
    return "$status"
}

main "$@"
