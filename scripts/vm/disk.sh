# Host-side helpers of the QEMU lanes that boot a Debian root from a disk (sourced by bash:
# scripts/vm-bats.sh, scripts/vm-systemd.sh). The caller sets $cache (kernel and roots),
# $work (temporary files), `say` and, for make_initramfs, initrd_modules.

# Debian's current kernel package, as scripts/vm-test.sh unpacks it (the same cache directory, so a
# kernel one script fetched serves the others). Sets kver and kdir.
fetch_kernel() {
	local pkg
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1)
	if [[ -z "$pkg" ]]; then
		apt-get -o DPkg::Lock::Timeout=600 update -qq
		pkg=$(apt-cache depends linux-image-amd64 |
			sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1)
	fi
	kver=${pkg#linux-image-}
	kdir=$cache/$pkg
	[[ -e "$kdir/done" ]] && return
	say "fetching $pkg"
	rm -rf "$kdir"
	mkdir -p "$kdir/dl"
	(cd "$kdir/dl" && apt-get download -q "$pkg" >/dev/null)
	dpkg-deb -x "$kdir"/dl/*.deb "$kdir/x"
	rm -rf "$kdir/dl"
	busybox depmod -b "$kdir/x" "$kver"
	touch "$kdir/done"
}

# The host's Debian mirror: the first apt source whose path ends in /debian (not -security, not a vendor's
# repository such as nodesource's), else deb.debian.org.
debian_mirror() {
	local uri
	# Only the files apt reads (*.list, *.sources): a renamed, disabled source is not a mirror.
	uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -oE '^(URIs:|deb) +https?://[^ ]+' | awk '{print $2}' | grep -E '/debian/?$' | head -n 1 || true)
	echo "${uri:-http://deb.debian.org/debian}"
}

# make_root NAME PACKAGES LOG: a `debootstrap --variant=minbase` root of the host's suite with PACKAGES
# (comma-separated) at $cache/NAME-SUITE, built once and cached. Sets droot.
make_root() {
	local suite
	suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
	droot=$cache/$1-$suite
	[[ -e "$droot.done" ]] && return
	say "debootstrap --variant=minbase $suite into $droot (once; takes minutes)"
	rm -rf "$droot"
	debootstrap --variant=minbase --include="$2" "$suite" "$droot" "$(debian_mirror)" >"$3" 2>&1 ||
		{ say "debootstrap failed (see $3)"; exit 1; }
	rm -rf "$droot"/var/cache/apt/archives/*.deb
	touch "$droot.done"
}

# copy_with_libs FILE DEST: FILE at DEST in the image tree $img, and every library it loads that the Debian
# root does not have (a runtime built elsewhere; a debug build is stripped of its debug info).
copy_with_libs() {
	local lib
	install -D -m 0755 "$1" "$img$2"
	strip --strip-debug "$img$2" 2>/dev/null || true
	ldd "$1" >/dev/null 2>&1 || return 0
	for lib in $(ldd "$1" | grep -o '/[^ ]*'); do
		[[ -e "$img$lib" ]] || install -D -m 0755 "$(readlink -f "$lib")" "$img$lib"
	done
}

# make_initramfs INIT: $work/initrd.cpio, a busybox initramfs that loads initrd_modules (with what
# modules.dep says they need), mounts /dev/vda and switch_roots to it with INIT as PID 1
# (scripts/vm-bats/init).
make_initramfs() {
	local ir=$work/initrd m f src=$kdir/x/lib/modules/$kver want=()
	mkdir -p "$ir"/{bin,dev,proc,sys,newroot,lib/modules/$kver}
	cp "$(command -v busybox)" "$ir/bin/busybox"
	for m in "${initrd_modules[@]}"; do
		want+=("$(grep -E "/$m\.ko(\.[a-z]+)?:" "$src/modules.dep")") ||
			{ say "module $m is not in $kver's modules.dep"; exit 1; }
	done
	for f in $(printf '%s\n' "${want[@]}" | tr -d ':' | tr ' ' '\n' | sort -u); do
		install -D -m 0644 "$src/$f" "$ir/lib/modules/$kver/$f"
	done
	cp "$src"/modules.{dep,alias,symbols,builtin,order} "$ir/lib/modules/$kver/"
	printf '%s\n' "${initrd_modules[@]}" >"$ir/modules"
	echo "$1" >"$ir/switch-to"
	install -m 0755 scripts/vm-bats/init "$ir/init"
	(cd "$ir" && find . | cpio -o -H newc --quiet) >"$work/initrd.cpio"
}

# The EXIT trap of both lanes: the guest ($qpid) stopped, the work dir ($work) removed.
vm_cleanup() {
	if [[ -n "${qpid:-}" ]] && kill -0 "$qpid" 2>/dev/null; then
		kill "$qpid" 2>/dev/null || true
		wait "$qpid" 2>/dev/null || true
	fi
	[[ -n "${work:-}" ]] && rm -rf "$work"
	return 0
}
