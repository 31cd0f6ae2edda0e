#!/usr/bin/env bash
# The systemd lane (issue 23): `hullc --systemd-cgroup` against a real systemd. Boots Debian's kernel
# under `qemu-system-x86_64 -accel tcg` with `cgroup_no_v1=all` from a busybox initramfs that
# switch_roots to a Debian `debootstrap --variant=minbase` root with systemd and dbus (cached in
# target/vm) as PID 1; the oneshot unit hull-check.service runs scripts/vm/systemd.sh there, whose
# `PASS`/`FAIL` lines and `VM-SUMMARY pass=N fail=M` come back over the serial console, and powers
# off. Exit status 0 only with fail=0, no FAIL line, no kernel panic and no timeout.
#   scripts/vm-systemd.sh        # as root; installs what it needs, builds hullc
# HULL_VM_PROFILE=debug uses the debug hullc with its libraries (faster to build), HULL_VM_BIN_DIR=DIR
# takes hullc from DIR, HULL_VM_TIMEOUT (seconds, default 900), HULL_VM_CACHE (default target/vm).
# Another lane may boot at the same time: callers that share a machine hold /tmp/hull-vm.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
mkdir -p "${HULL_VM_CACHE:-target/vm}"
cache=$(readlink -f "${HULL_VM_CACHE:-target/vm}")
timeout_s=${HULL_VM_TIMEOUT:-900}
profile=${HULL_VM_PROFILE:-release}
bin=${HULL_VM_BIN_DIR:-${CARGO_TARGET_DIR:-target}/$profile}
say() { echo "vm-systemd: $*" >&2; }

# fetch_kernel, make_root, copy_with_libs, make_initramfs.
. scripts/vm/disk.sh
# The disk's modules: virtio for /dev/vda, ext4 (crc32c for its checksums).
initrd_modules=(crc32c_generic virtio_pci virtio_blk ext4)

install_packages() {
	local p missing=()
	for p in qemu-system-x86 busybox-static cpio debootstrap e2fsprogs; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if ((${#missing[@]})); then
		apt-get -o DPkg::Lock::Timeout=600 update -qq
		apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
}

build() {
	[[ -n "${HULL_VM_BIN_DIR:-}" ]] && return
	if [[ "$profile" = release ]]; then
		# All three, as scripts/vm-test.sh: after the demo's release build this compiles nothing.
		scripts/release.sh --quiet
	else
		cargo build --quiet -p hullc
	fi
}

# The disk: the cached root, hullc, the checks, a busybox rootfs for the containers and the unit that
# runs the checks on the console (no getty there) and powers off whatever their outcome.
make_image() {
	local a u=etc/systemd/system
	img=$work/root
	cp -a "$droot" "$img"
	copy_with_libs "$bin/hullc" /usr/local/bin/hullc
	install -D -m 0644 scripts/vm/lib.sh "$img/vm/lib.sh"
	install -D -m 0755 scripts/vm/systemd.sh "$img/vm/systemd.sh"
	mkdir -p "$img/ctr/rootfs"/{bin,proc,sys,dev,tmp}
	cp "$(command -v busybox)" "$img/ctr/rootfs/bin/busybox"
	for a in sh sleep cat true; do ln -s busybox "$img/ctr/rootfs/bin/$a"; done
	cat >"$img/$u/hull-check.service" <<-'UNIT'
		[Unit]
		Description=hull systemd cgroup driver checks
		Wants=dbus.service
		After=dbus.service
		[Service]
		Type=oneshot
		ExecStart=/vm/systemd.sh
		StandardOutput=tty
		StandardError=tty
		TTYPath=/dev/ttyS0
		TimeoutStartSec=infinity
		SuccessAction=poweroff-force
		FailureAction=poweroff-force
		[Install]
		WantedBy=multi-user.target
	UNIT
	mkdir -p "$img/$u/multi-user.target.wants"
	ln -s ../hull-check.service "$img/$u/multi-user.target.wants/hull-check.service"
	ln -s /dev/null "$img/$u/serial-getty@ttyS0.service"
	ln -s /dev/null "$img/$u/getty@tty1.service"
	echo vm >"$img/etc/hostname"
	mkfs.ext4 -q -F -O ^metadata_csum,^orphan_file -E root_owner=0:0 -d "$img" "$work/disk.img" \
		"$(($(du -sm "$img" | cut -f1) + 256))M"
	rm -rf "$img"
}

qpid=""
work=""
trap vm_cleanup EXIT
trap 'exit 130' INT TERM # through the EXIT trap: qemu stopped, image removed

# Boots the guest, its console in $log; 1 on a timeout. no_timer_check: see scripts/vm-test.sh.
boot() {
	local waited=0
	qemu-system-x86_64 -accel tcg -m 2G -smp 2 -nographic -no-reboot -nic none \
		-kernel "$kdir/x/boot/vmlinuz-$kver" -initrd "$work/initrd.cpio" \
		-drive "file=$work/disk.img,format=raw,if=virtio,cache=unsafe" \
		-append "console=ttyS0 cgroup_no_v1=all panic=-1 oops=panic quiet no_timer_check systemd.show_status=0 systemd.journald.forward_to_console=1" \
		</dev/null >"$log" 2>&1 &
	qpid=$!
	while kill -0 "$qpid" 2>/dev/null; do
		if ((waited >= timeout_s)); then
			say "timeout after ${timeout_s}s: stopping qemu (pid $qpid)"
			return 1
		fi
		sleep 2
		waited=$((waited + 2))
	done
	wait "$qpid" || say "qemu exited with status $?"
	qpid=""
}

# The verdict from the console: the summary line with fail=0, no FAIL line, no panic.
verdict() {
	local console summary
	console=$(tr -d '\r' <"$log")
	grep -a -E '^(PASS|FAIL|VM-)' <<<"$console" >&2 || true
	summary=$(grep -a '^VM-SUMMARY ' <<<"$console" | tail -n 1 || true)
	if grep -aq 'Kernel panic' <<<"$console" || [[ -z "$summary" ]]; then
		tail -n 40 <<<"$console" >&2
		say "FAILED: ${summary:-no VM-SUMMARY line (the guest did not finish)}"
		return 1
	fi
	if grep -aq '^FAIL ' <<<"$console" || ! grep -q ' fail=0$' <<<"$summary"; then
		say "FAILED: $summary"
		return 1
	fi
	say "ok: $summary (kernel $kver, systemd as init, pure cgroup v2)"
}

main() {
	local start=$SECONDS status=0
	install_packages
	build
	fetch_kernel
	make_root systemd-root systemd,systemd-sysv,dbus "$cache/systemd-root.log"
	work=$(mktemp -d "$cache/vm-systemd.XXXXXX")
	log=$work/console.log
	make_initramfs /lib/systemd/systemd
	make_image
	say "booting $kver with systemd (timeout ${timeout_s}s)"
	boot || status=1
	verdict || status=1
	say "took $((SECONDS - start))s"
	return "$status"
}

main "$@"
