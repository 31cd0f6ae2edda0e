#!/bin/busybox sh
# Stage 2 (PID 1 on a tmpfs root): mounts what a pure cgroup v2 distro has, loads the
# modules hull needs, runs the checks (hullc.sh, hull.sh, rootless.sh) and powers off.
# Every check prints `PASS name` or `FAIL name: reason` on the console; the last line is
# `VM-SUMMARY pass=N fail=M`, which scripts/vm-test.sh requires and parses.
/bin/busybox --install -s /bin
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /tmp /run /var/lib /root /etc
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
# A distro's root is a shared mount (systemd makes it so); hullc must cope with that.
mount --make-rshared /
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
# What udev/systemd add to devtmpfs (`nft -f -` opens /dev/stdin).
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
ip link set lo up
hostname vm

. /vm/lib.sh

echo "VM-KERNEL $(uname -r) cmdline: $(cat /proc/cmdline)"
echo "VM-CGROUP controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
# cgroup_no_v1=all: no v1 hierarchy can be mounted with a controller.
check "pure cgroup v2 host" sh -c '
    [ "$(awk "\$2 == \"/sys/fs/cgroup\" {print \$3}" /proc/mounts)" = cgroup2 ] &&
    [ -z "$(awk "\$3 == \"cgroup\"" /proc/mounts)" ] &&
    mkdir -p /tmp/v1 && ! mount -t cgroup -o memory cgroup /tmp/v1 2>/dev/null'

# What a distro's init does: every controller on in the root's subtree_control.
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control || echo "VM-NOTE cannot enable $c"
done
echo "VM-CGROUP subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"

# Modules (listed by vm-test.sh in dependency order): overlayfs for hull's snapshots,
# veth/bridge/nf_tables for its networks. request_module() uses busybox modprobe too.
echo /sbin/modprobe > /proc/sys/kernel/modprobe
for m in $(cat /vm/modules); do
    modprobe "$m" || echo "VM-NOTE modprobe $m failed"
done
check "modules loaded" sh -c 'grep -q overlay /proc/filesystems && [ -d /sys/module/veth ] &&
    [ -d /sys/module/bridge ] && [ -d /sys/module/nf_tables ]'

for t in /vm/hullc.sh /vm/hull.sh /vm/rootless.sh; do
    echo "VM-SECTION $t"
    . "$t"
done
summary
sync
poweroff -f
