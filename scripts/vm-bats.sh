#!/usr/bin/env bash
# Runs runc's own integration suite (bats) inside the pure cgroup v2 guest of scripts/vm-test.sh.
#
#   scripts/vm-bats.sh [--results DIR] RUNC_SRC_DIR RUNTIME_BINARY [FILE.bats...]
#
# Same contract as scripts/runc-bats.sh (docs/hullc.md), but the suite runs in Debian's own kernel under
# `qemu-system-x86_64 -accel tcg` booted with `cgroup_no_v1=all`, the layout of Debian 12, Ubuntu 22.04+, Fedora
# and RHEL 9. A busybox userland cannot run the suite (bash, bats, jq, gawk, gcc, util-linux...), so the guest's
# root is a Debian `debootstrap --variant=minbase` tree (cached in target/vm/ next to the kernel) packed with the
# runtime, the suite and its Go helpers into an ext4 image that boots as /dev/vda from a small busybox initramfs
# (which loads the virtio and ext4 modules). Every TAP line comes back over the serial console; the host splits
# it into FILE.tap per file plus summary.tsv in the results dir and prints pass/fail/skip per file and a total.
#
# Without FILE arguments it runs the cgroup-relevant files (TCG makes the whole suite take hours). The runtime
# binary and the suite's helpers (built in the checkout beforehand; testdata/busybox-amd64.tar.xz from runc-bats.sh) are
# copied with any library the Debian root lacks. Needs root, qemu-system-x86, debootstrap, e2fsprogs,
# busybox-static; downloads the kernel package and the Debian root from this host's apt mirror once.
# VM_BATS_TIMEOUT: whole-boot limit in seconds (default 5400); VM_BATS_FILE_TIMEOUT: per file (default 1800);
# HULL_VM_CACHE: the cache (default target/vm). Not CI: a developer command (docs/hullc.md, for its time).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
cache=$(readlink -f "${HULL_VM_CACHE:-target/vm}")
timeout_s=${VM_BATS_TIMEOUT:-5400}
file_timeout=${VM_BATS_FILE_TIMEOUT:-1800}
default_files=(cgroups update events pause ps dev kill exec run create start_hello delete)
say() { echo "vm-bats: $*" >&2; }

usage() {
	sed -n '4p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

results=""
while [[ $# -gt 0 && "$1" == --* ]]; do
	case "$1" in
	--results) results="$2"; shift 2 ;;
	*) usage ;;
	esac
done
[[ $# -ge 2 ]] || usage
src=$(readlink -f "$1")
runtime=$(readlink -f "$2")
shift 2
integ="$src/tests/integration"
[[ -f "$integ/helpers.bash" ]] || { say "$integ/helpers.bash not found: is $src a runc checkout?"; exit 2; }
[[ -x "$runtime" ]] || { say "runtime $runtime is not an executable file"; exit 2; }
[[ $(id -u) -eq 0 ]] || { say "run as root (debootstrap and the image's file owners need it)"; exit 2; }
for tool in qemu-system-x86_64 debootstrap mkfs.ext4 cpio busybox; do
	command -v "$tool" >/dev/null ||
		{ say "$tool not found (apt-get install qemu-system-x86 debootstrap e2fsprogs cpio busybox-static)"; exit 2; }
done
for f in contrib/cmd/recvtty/recvtty contrib/cmd/sd-helper/sd-helper contrib/cmd/seccompagent/seccompagent \
	tests/integration/testdata/busybox-amd64.tar.xz tests/integration/testdata/debian-amd64.tar.xz; do
	# The guest has no network: get-images.sh would try to download a missing image at every file's load.
	[[ -e "$src/$f" ]] || { say "$src/$f is missing: run scripts/runc-bats.sh [--debootstrap] on $src once"; exit 2; }
done
files=()
(($#)) || set -- "${default_files[@]}"
for f in "$@"; do
	f=$(basename "$f" .bats)
	[[ -f "$integ/$f.bats" ]] || { say "$integ/$f.bats not found"; exit 2; }
	files+=("$f")
done
: "${results:=$PWD/target/vm-bats-$(basename "$runtime")-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$results"
results=$(readlink -f "$results")

# fetch_kernel, debian_mirror, make_root, copy_with_libs, make_initramfs.
. scripts/vm/disk.sh

# The guest's root: what the suite calls (bats, jq, gawk, xz-utils for its images, iproute2, procps, util-linux's losetup/lsblk/script,
# gcc and libc6-dev for the static helpers dev.bats and seccomp.bats compile), libseccomp for runc and the
# seccomp agent. Built once per suite and cached. Sets droot.
make_root_bats() {
	make_root bats-root bats,jq,gawk,xz-utils,iproute2,procps,mount,kmod,libseccomp2,gcc,libc6-dev "$results/debootstrap.log"
}

# The modules the initramfs loads, in this order, with what modules.dep says they need: virtio-pci and
# virtio-blk for the disk, ext4 for its file system (crc32c for its checksums), loop for cgroups.bats'
# io device case (loaded before switch_root: the Debian root has no module tree).
initrd_modules=(crc32c_generic virtio_pci virtio_blk ext4 loop)

# The disk: the cached Debian root plus the runtime (at its own name in /usr/local/bin), the suite and its
# helpers at their paths in a runc tree (/runc), busybox (poweroff) and the guest script.
make_image() {
	local d size
	img=$work/root
	say "copying the Debian root"
	cp -a "$droot" "$img"
	copy_with_libs "$runtime" "/usr/local/bin/$(basename "$runtime")"
	mkdir -p "$img/runc/tests" "$img/vm-bats/results"
	cp -a "$integ" "$img/runc/tests/"
	for d in recvtty sd-helper seccompagent; do
		copy_with_libs "$src/contrib/cmd/$d/$d" "/runc/contrib/cmd/$d/$d"
	done
	cp "$(command -v busybox)" "$img/vm-bats/busybox"
	# get-images.sh asks `go env GOARCH` at every file's load; the guest has no Go toolchain.
	printf '#!/bin/sh\n[ "$1 $2" = "env GOARCH" ] && exec echo amd64\n[ "$1" = env ] && exit 0\necho "go: not in the vm-bats guest" >&2\nexit 1\n' \
		>"$img/usr/local/bin/go"
	chmod 0755 "$img/usr/local/bin/go"
	install -m 0755 scripts/vm-bats/guest.sh "$img/vm-bats/guest.sh"
	printf '%s\n' "${files[@]}" >"$img/vm-bats/files"
	printf 'RUNC=/usr/local/bin/%s\nFILE_TIMEOUT=%s\n' "$(basename "$runtime")" "$file_timeout" >"$img/vm-bats/env"
	echo vm >"$img/etc/hostname"
	printf '127.0.0.1 localhost vm\n' >"$img/etc/hosts"
	# Room for the suite's bundles (the Debian image of hooks.bats unpacks to ~250 MiB).
	size=$(($(du -sm "$img" | cut -f1) + 2048))
	# No metadata_csum/orphan_file: fewer modules at boot, and 6.1 predates orphan_file.
	mkfs.ext4 -q -F -O ^metadata_csum,^orphan_file -E root_owner=0:0 -d "$img" "$work/disk.img" "${size}M"
	rm -rf "$img"
}

qpid=""
work=""
trap vm_cleanup EXIT
trap 'exit 130' INT TERM # through the EXIT trap: qemu stopped, image removed

# Boots the guest with the console in $log; progress lines (one per file) go to stderr. Returns 1 on timeout.
boot() {
	local waited=0 seen=0 n
	: >"$log"
	# no_timer_check: see scripts/vm-test.sh (a TCG guest on a busy host misses the IO-APIC timer test).
	qemu-system-x86_64 -accel tcg -m 3G -smp 2 -nographic -no-reboot -nic none \
		-kernel "$kdir/x/boot/vmlinuz-$kver" -initrd "$work/initrd.cpio" \
		-drive "file=$work/disk.img,format=raw,if=virtio,cache=unsafe" \
		-append "console=ttyS0 cgroup_no_v1=all panic=-1 oops=panic quiet no_timer_check" \
		</dev/null >"$log" 2>&1 &
	qpid=$!
	say "qemu pid $qpid, console in $log"
	while kill -0 "$qpid" 2>/dev/null; do
		if ((waited >= timeout_s)); then
			say "timeout after ${timeout_s}s: stopping qemu (pid $qpid)"
			kill "$qpid"
			wait "$qpid" || true
			qpid=""
			return 1
		fi
		sleep 5
		waited=$((waited + 5))
		n=$(grep -ac '^VM-BATS-FILE ' "$log" || true)
		if ((n > seen)); then
			grep -a '^VM-BATS-FILE ' "$log" | tr -d '\r' | sed -n "$((seen + 1)),${n}p" | sed 's/^/vm-bats: done /' >&2
			seen=$n
		fi
	done
	wait "$qpid" || say "qemu exited with status $?"
	qpid=""
}

# TAP from `bats -t`, as scripts/runc-bats.sh counts it.
count_tap() {
	local tap="$1" pass fail skip
	skip=$(grep -cE '^ok [0-9]+ .*# skip' "$tap" || true)
	pass=$(($(grep -cE '^ok [0-9]+ ' "$tap" || true) - skip))
	fail=$(grep -cE '^not ok [0-9]+ ' "$tap" || true)
	echo "$pass $fail $skip"
}

# Splits the console's `VM-BATS-TAP FILE LINE` lines into FILE.tap and writes the table. A file without its
# `VM-BATS-FILE` line (the guest died or timed out in it) counts one failure; so does a file that timed out.
report() {
	local f p x s tp=0 tx=0 ts=0 line
	tr -d '\r' <"$log" >"$results/console.log"
	printf '%-20s %5s %5s %5s %6s\n' file pass fail skip secs
	printf 'file\tpass\tfail\tskip\tsecs\n' >"$results/summary.tsv"
	for f in "${files[@]}"; do
		grep -a "^VM-BATS-TAP $f " "$results/console.log" | cut -d' ' -f3- >"$results/$f.tap" || true
		read -r p x s <<<"$(count_tap "$results/$f.tap")"
		line=$(grep -a "^VM-BATS-FILE $f " "$results/console.log" || true)
		if [[ -z "$line" ]]; then
			echo "# vm-bats: $f.bats did not finish" >>"$results/$f.tap"
			x=$((x + 1))
		elif [[ "$line" == *" rc=124 "* || "$line" == *" rc=137 "* ]]; then
			x=$((x + 1))
		fi
		secs=$(sed -n 's/.* secs=\([0-9]*\).*/\1/p' <<<"$line")
		printf '%-20s %5d %5d %5d %6s\n' "$f" "$p" "$x" "$s" "${secs:--}"
		printf '%s\t%d\t%d\t%d\t%s\n' "$f" "$p" "$x" "$s" "${secs:--}" >>"$results/summary.tsv"
		tp=$((tp + p)) tx=$((tx + x)) ts=$((ts + s))
	done
	printf '%-20s %5d %5d %5d\n' TOTAL "$tp" "$tx" "$ts"
	printf 'TOTAL\t%d\t%d\t%d\t\n' "$tp" "$tx" "$ts" >>"$results/summary.tsv"
	grep -a '^VM-BATS-KERNEL ' "$results/console.log" | sed 's/^VM-BATS-KERNEL /vm-bats: guest: /' >&2 || true
	say "TAP and console.log in $results"
}

main() {
	local start=$SECONDS status=0
	fetch_kernel
	make_root_bats
	mkdir -p "$cache"
	# Under the cache, not /tmp: the disk image is gigabytes; removed on exit either way.
	work=$(mktemp -d "$cache/vm-bats.XXXXXX")
	log=$work/console.log
	make_initramfs /vm-bats/guest.sh
	make_image
	say "booting $kver for ${#files[@]} files with $(basename "$runtime") (timeout ${timeout_s}s)"
	boot || status=1
	report
	grep -aq '^VM-BATS-DONE' "$results/console.log" || { say "the guest did not finish"; status=1; }
	grep -aq 'Kernel panic' "$results/console.log" && { say "kernel panic"; status=1; }
	say "took $((SECONDS - start))s"
	return "$status"
}

main
