#!/bin/sh
# Inside a container: allocates until the memory cgroup's OOM killer ends it (tail keeps
# the whole newline-free stream as its last line).
head -c 1073741824 /dev/zero | tail -n 1 > /dev/null
