#!/bin/sh
# Inside a container: allocates until the memory cgroup's OOM killer ends it (tail keeps
# the whole newline-free stream as its last line). The pause first lets `hullc events`,
# started beside `hullc start` on a slow TCG guest, read its baseline: an OOM kill that
# happens before it watches is counted in that baseline and never reported (as with runc).
sleep 5
head -c 1073741824 /dev/zero | tail -n 1 > /dev/null
