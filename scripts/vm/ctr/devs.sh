#!/bin/sh
# Inside a container: which device accesses the device cgroup lets through.
r() { if "$@" >/dev/null 2>&1; then printf ok; else printf no; fi; }
null=$(r sh -c 'echo x > /dev/null')
zero=$(r head -c 1 /dev/zero)
mknod=$(r mknod /dev/hull-kmsg c 1 11)
kmsg=-
[ -e /dev/hull-kmsg ] && kmsg=$(r sh -c 'echo hull-vm-devices > /dev/hull-kmsg')
echo "null=$null zero=$zero mknod=$mknod kmsg=$kmsg"
