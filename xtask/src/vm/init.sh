#!/bin/sh
# The guest's init (PID 1, dash): mounts what netlab and its tools expect, runs
# /vm/cmd.sh as root, prints its exit code on the console in a line the runner looks
# for (with a nonce, so that no output of the command can forge it), and powers off.
# If this script or the kernel dies first, that line never comes: the runner reports
# a crash, never a success.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin
export HOME=/root TERM=dumb

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs -o mode=755 run /run
mount -t tmpfs -o mode=1777 tmp /tmp
# cgroup v2, where netlab's eBPF datapath puts a lab host's host-local hooks. bpffs is
# left to netlab, which mounts it when nothing is there, as on a bare host.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
hostname -F /etc/hostname
ip link set lo up
# What a container host loads (Docker does the same): netlab's netfilter datapaths
# need it and say so; every other module the kernel loads on demand.
modprobe br_netfilter

read -r up _ < /proc/uptime
echo "netlab-vm: Linux $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB; init after ${up}s"

mkdir -p /root/out
cd /root
sh /vm/cmd.sh < /dev/null
rc=$?

read -r nonce < /vm/nonce
# What the command left in /root/out comes out over the console (the guest has no
# shared folder): `cargo xtask vm --out DIR` writes it into DIR.
for f in /root/out/*; do
    [ -f "$f" ] || continue
    echo "netlab-vm-file $nonce $(wc -c < "$f") $(basename "$f")"
    base64 "$f"
    echo "netlab-vm-file-end $nonce"
done
echo "netlab-vm-exit $nonce $rc"
poweroff -f
