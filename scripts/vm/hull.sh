# hull end to end on a pure cgroup v2 host (sourced by guest.sh after hullc.sh): an image
# archive built by vm-test.sh (/vm/busybox.tar, busybox + /srv/index.html), containers
# under the shim and hullc, bridge networking with nftables.
check "hull load" hull load -i /vm/busybox.tar
check "hull images lists busybox" sh -c 'hull images | grep -q busybox'
expect_rc "hull run: exit status" 7 hull run --rm busybox sh -c 'exit 7'
expect "hull run: output" hello-from-hull hull run --rm busybox echo hello-from-hull
expect "hull run: /proc/self/cgroup inside" "0::/" hull run --rm busybox cat /proc/self/cgroup
expect "hull run --memory --cpus --pids-limit (cgroup files inside)" "67108864
50000 100000
30" hull run --rm -m 64m --cpus 0.5 --pids-limit 30 busybox \
    cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max
expect "hull run: devices (docker's list)" "null=ok zero=ok mknod=ok kmsg=no" \
    hull run --rm -v /vm/ctr:/t:ro busybox sh /t/devs.sh
expect "hull run --privileged: devices" "null=ok zero=ok mknod=ok kmsg=ok" \
    hull run --rm --privileged -v /vm/ctr:/t:ro busybox sh /t/devs.sh

net_fails_before=$nfail
check "hull run -d -p 8080:80 httpd" hull run -d --name web -p 8080:80 busybox httpd -f -p 80 -h /srv
expect "published port: wget 127.0.0.1:8080" "served by hull" \
    wait_for_output wget -qO- http://127.0.0.1:8080/index.html
expect "hull exec" "served by hull" hull exec web cat /srv/index.html
expect "hull run on the bridge reaches web by name" "served by hull" \
    hull run --rm busybox wget -qO- http://web/index.html
# (No `wget -T`: busybox-static 1.35 wget segfaults with it.)
# On a failed network check: what the bridge, the nft rules and the kernel say.
net_diag() {
    {
        hull ps -a
        hull inspect web | grep -i '"IPAddress"'
        ip -o addr
        ip route
        nft list ruleset
        ip=$(hull inspect web | sed -n 's/.*"IPAddress": *"\([0-9.]*\)".*/\1/p' | head -n 1)
        echo "wget container $ip:80 directly:"
        wget -qO- "http://$ip:80/index.html"
        echo "wget 127.0.0.1:8080:"
        wget -O- http://127.0.0.1:8080/index.html
        hull run --rm busybox sh -c "cat /etc/hosts /etc/resolv.conf; wget -O- http://$ip/index.html;
            echo rc=\$?; wget -O- http://web/index.html; echo rc=\$?"
        dmesg | tail -n 20
    } 2>&1 | sed 's/^/VM-DIAG /'
}
[ "$nfail" = "$net_fails_before" ] || net_diag

check "hull logs" sh -c 'hull run -d --name talker busybox sh -c "echo line-1; echo line-2; sleep 1000" &&
    n=0; until hull logs talker | grep -q line-2; do n=$((n+1)); [ $n -lt 50 ] || exit 1; sleep 0.2; done'
check "hull stop" hull stop -t 2 web talker
check "hull ps -a shows them exited" sh -c 'hull ps -a | grep web | grep -qi exited'
check "hull rm" hull rm web talker
check "hull: nothing left (ps -a)" sh -c '[ -z "$(hull ps -aq)" ]'
check "hull system reset -f" hull system reset -f
# /sys/fs/cgroup/hull, the parent of hull's containers, stays (as docker's).
check "hull: no cgroup, mount or link left" sh -c '
    ! grep -q overlay /proc/mounts && ! ip -o link | grep -q "hull.*veth\|: veth" &&
    [ -z "$(find /sys/fs/cgroup/hull -mindepth 1 -type d)" ] || {
        grep overlay /proc/mounts; ip -o link; find /sys/fs/cgroup -mindepth 1 -type d; false; }'
