#!/bin/bash
# PID 1 of the scripts/vm-bats.sh guest (Debian root on /dev/vda): sets up what a pure cgroup v2 distro
# has, runs each bats file listed in /vm-bats/files with RUNC from /vm-bats/env, and prints every TAP line
# as `VM-BATS-TAP FILE LINE`, then `VM-BATS-FILE FILE rc=N secs=S` per file and `VM-BATS-DONE` on the
# serial console, which the host parses. Powers off at the end.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp
# gid=5 (tty), as a distro mounts it: the suite's tty cases check the pty's group.
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -o remount,rw /
mount --make-rshared /
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
ip link set lo up
hostname vm
# What a distro's init does: every controller on in the root's subtree_control.
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
	echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || echo "VM-BATS-NOTE cannot enable $c"
done
# And what systemd does: no process stays in the root cgroup. The suite runs in a child, as in a
# distro's session or service scope; its helpers look for a `cgroup.freeze` file below /sys/fs/cgroup
# (the root has none) to decide whether the freezer cases (pause.bats...) can run at all.
mkdir /sys/fs/cgroup/init.scope
echo $$ >/sys/fs/cgroup/init.scope/cgroup.procs
echo "VM-BATS-KERNEL $(uname -r), cgroup2 only ($(grep -c ' cgroup ' /proc/mounts) v1 mounts), controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"

. /vm-bats/env
mkdir -p /vm-bats/tmp
cd /runc/tests/integration || exit 1
for f in $(cat /vm-bats/files); do
	start=$SECONDS
	tap=/vm-bats/results/$f.tap
	# As scripts/runc-bats.sh: under script(1) for a controlling tty, a private TMPDIR, a bound per file.
	# Each TAP line goes to the console as it comes (TCG is slow: progress, and what a file that runs
	# out of time got done).
	TMPDIR=/vm-bats/tmp RUNC=$RUNC timeout -k 30 "$FILE_TIMEOUT" script -q -e -c \
		"bats -t $f.bats 2>&1 | tee $tap | sed -u 's/^/VM-BATS-TAP $f /' >/dev/console" /dev/null \
		</dev/null >/dev/null 2>&1
	rc=$?
	echo "VM-BATS-FILE $f rc=$rc secs=$((SECONDS - start))"
done
echo VM-BATS-DONE
sync
/vm-bats/busybox poweroff -f
