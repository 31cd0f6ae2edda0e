#!/usr/bin/env bash
# Runs runc's own integration suite (bats, tests/integration in a runc checkout) against a runtime binary.
#
#   scripts/runc-bats.sh [--results DIR] [--debootstrap] RUNC_SRC_DIR RUNTIME_BINARY [FILE.bats...]
#
# RUNC_SRC_DIR is a runc source tree (tag v1.1.15 is what docs/hullc.md's figures come from); nothing here
# downloads or builds it: the suite's Go helpers (contrib/cmd/{recvtty,sd-helper,seccompagent}) must already
# be built in the tree. It makes testdata/busybox-<arch>.tar.xz from the host's busybox-static when that is
# missing, runs each .bats file with RUNC=RUNTIME_BINARY, writes FILE.tap per file plus summary.tsv to the
# results dir and prints pass/fail/skip per file and a total.
#
# testdata/debian-<arch>.tar.xz (used by hooks.bats only) must exist, since the suite's get-images.sh would
# otherwise try to download it whenever a file loads; --debootstrap builds it with debootstrap from the apt
# mirror this host is configured with (the one download this script can make, and only when asked).
#
# Needs: root, bats, jq, gawk, go (the suite asks `go env GOARCH`), busybox-static.
# For sessions and developers, not CI: the suite runs for tens of minutes and writes to the host's cgroups
# (it creates /sys/fs/cgroup/*/runc-cgroups-integration-test while it runs, and removes it).
set -euo pipefail

usage() {
	sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

results=""
debootstrap=0
while [[ $# -gt 0 && "$1" == --* ]]; do
	case "$1" in
	--results) results="$2"; shift 2 ;;
	--debootstrap) debootstrap=1; shift ;;
	*) usage ;;
	esac
done
[[ $# -ge 2 ]] || usage
src=$(readlink -f "$1")
runtime=$(readlink -f "$2")
shift 2
integ="$src/tests/integration"
[[ -f "$integ/helpers.bash" ]] || { echo "runc-bats: $integ/helpers.bash not found: is $src a runc checkout?" >&2; exit 2; }
[[ -x "$runtime" ]] || { echo "runc-bats: runtime $runtime is not an executable file" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "runc-bats: run as root (the suite's root cases need it)" >&2; exit 2; }
for tool in bats jq gawk go busybox; do
	command -v "$tool" >/dev/null || { echo "runc-bats: $tool not found (apt-get install bats jq gawk golang-go busybox-static; the suite asks `go env GOARCH`)" >&2; exit 2; }
done
: "${results:=/tmp/runc-bats-$(basename "$runtime")-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$results/tmp"
results=$(readlink -f "$results")

# The suite's Go helpers (contrib/cmd/{recvtty,sd-helper,seccompagent}/ in the checkout) must be built
# there already: hull ships no recipe for building a fetched program.
check_helpers() {
	local cmd
	for cmd in recvtty sd-helper seccompagent; do
		[[ -x "$src/contrib/cmd/$cmd/$cmd" ]] || {
			echo "runc-bats: $src/contrib/cmd/$cmd/$cmd missing: build the suite's helpers in the checkout first" >&2
			exit 2
		}
	done
}

# A busybox rootfs in the shape of docker-library's busybox image: every applet a hard link in /bin (the suite
# chmods /bin/echo, which then applies to all of them, as in that image), the image's passwd and group.
make_busybox_image() {
	local dest="$1" dir applet
	dir=$(mktemp -d)
	# The image's / is 0755 (mktemp's 0700 would keep the suite's non-root users out of the rootfs).
	chmod 755 "$dir"
	mkdir -p "$dir"/{bin,etc,home,root,tmp,usr/sbin,var/spool/mail,var/www,dev,proc,sys}
	chmod 1777 "$dir/tmp"
	chmod 700 "$dir/root"
	cp "$(command -v busybox)" "$dir/bin/busybox"
	for applet in $("$dir/bin/busybox" --list); do
		[[ -e "$dir/bin/$applet" ]] || ln "$dir/bin/busybox" "$dir/bin/$applet"
	done
	cat >"$dir/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/bin/sh
		daemon:x:1:1:daemon:/usr/sbin:/bin/false
		bin:x:2:2:bin:/bin:/bin/false
		sys:x:3:3:sys:/dev:/bin/false
		sync:x:4:100:sync:/bin:/bin/sync
		mail:x:8:8:mail:/var/spool/mail:/bin/false
		www-data:x:33:33:www-data:/var/www:/bin/false
		operator:x:37:37:Operator:/var:/bin/false
		nobody:x:65534:65534:nobody:/home:/bin/false
	EOF
	cat >"$dir/etc/group" <<-'EOF'
		root:x:0:
		daemon:x:1:
		bin:x:2:
		sys:x:3:
		adm:x:4:
		tty:x:5:
		disk:x:6:
		wheel:x:10:root
		mail:x:8:
		www-data:x:33:
		operator:x:37:
		staff:x:50:
		users:x:100:
		nogroup:x:65534:
	EOF
	tar -C "$dir" --numeric-owner -cJf "$dest" .
	rm -rf "$dir"
}

make_debian_image() {
	local dest="$1" dir
	command -v debootstrap >/dev/null || { echo "runc-bats: debootstrap not found (apt-get install debootstrap)" >&2; exit 2; }
	dir=$(mktemp -d)
	echo "runc-bats: debootstrap --variant=minbase into $dir (takes minutes)"
	debootstrap --variant=minbase "$(debian_suite)" "$dir" "$(debian_mirror)" >"$results/debootstrap.log" 2>&1
	tar -C "$dir" --numeric-owner -cf - . | xz -1 -T0 >"$dest"
	rm -rf "$dir"
}

debian_suite() { . /etc/os-release && echo "${VERSION_CODENAME:-bookworm}"; }

debian_mirror() {
	local uri
	# Only the files apt reads (*.list, *.sources): a renamed, disabled source is not a mirror.
	uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -oE '^(URIs:|deb) +https?://[^ ]+' | awk '{print $2}' | grep -E '/debian/?$' | head -n 1 || true)
	echo "${uri:-http://deb.debian.org/debian}"
}

prepare_images() {
	local arch busybox debian
	arch=$(go env GOARCH)
	busybox="$integ/testdata/busybox-$arch.tar.xz"
	debian="$integ/testdata/debian-$arch.tar.xz"
	[[ -e "$busybox" ]] || { echo "runc-bats: building $busybox from $(command -v busybox)"; make_busybox_image "$busybox"; }
	if [[ ! -e "$debian" ]]; then
		if [[ $debootstrap -eq 1 ]]; then
			make_debian_image "$debian"
		else
			echo "runc-bats: $debian is missing; the suite would download it. Put a rootfs tarball there" >&2
			echo "  or pass --debootstrap to build one from this host's apt mirror." >&2
			exit 2
		fi
	fi
}

# TAP from `bats -t`: "ok N name", "ok N name # skip (reason)", "not ok N name".
count_tap() {
	local tap="$1" pass fail skip
	skip=$(grep -cE '^ok [0-9]+ .*# skip' "$tap" || true)
	pass=$(($(grep -cE '^ok [0-9]+ ' "$tap" || true) - skip))
	fail=$(grep -cE '^not ok [0-9]+ ' "$tap" || true)
	echo "$pass $fail $skip"
}

run_files() {
	local f name counts p x s tp=0 tx=0 ts=0 rc
	printf '%-32s %5s %5s %5s\n' file pass fail skip
	printf 'file\tpass\tfail\tskip\n' >"$results/summary.tsv"
	for f in "$@"; do
		name=$(basename "$f" .bats)
		rc=0
		# Each file gets a wall-clock bound, so one hung case does not stall the rest.
		# A private TMPDIR: the suite keeps its seccomp agent's socket in $BATS_TMPDIR, so two runs
		# (say runc's and hullc's) would otherwise share it.
		# Under script(1): the default config.json has "terminal": true and the foreground `run` cases
		# open /dev/tty, so the suite needs a controlling terminal (runc's CI runs it under `script` too).
		# The TAP goes to a file, not through the pty.
		(cd "$integ" && TMPDIR="$results/tmp" RUNC="$runtime" timeout -k 30 "${RUNC_BATS_FILE_TIMEOUT:-1800}" \
			script -q -e -c "bats -t $name.bats >$results/$name.tap 2>&1" /dev/null) >/dev/null 2>&1 </dev/null || rc=$?
		read -r p x s <<<"$(count_tap "$results/$name.tap")"
		[[ $rc -eq 124 || $rc -eq 137 ]] && { echo "# runc-bats: $name.bats timed out" >>"$results/$name.tap"; x=$((x + 1)); }
		printf '%-32s %5d %5d %5d\n' "$name" "$p" "$x" "$s"
		printf '%s\t%d\t%d\t%d\n' "$name" "$p" "$x" "$s" >>"$results/summary.tsv"
		tp=$((tp + p)) tx=$((tx + x)) ts=$((ts + s))
	done
	printf '%-32s %5d %5d %5d\n' TOTAL "$tp" "$tx" "$ts"
	printf 'TOTAL\t%d\t%d\t%d\n' "$tp" "$tx" "$ts" >>"$results/summary.tsv"
	echo "runc-bats: TAP output in $results"
}

check_helpers
prepare_images
files=("$@")
if [[ ${#files[@]} -eq 0 ]]; then
	mapfile -t files < <(cd "$integ" && ls ./*.bats | sort)
fi
run_files "${files[@]}"
