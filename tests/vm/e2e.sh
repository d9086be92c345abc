#!/bin/sh
# netlab's end-to-end suite for a guest kernel:
#
#   cargo xtask vm --kernel 6.1|6.12 -- e2e [DATAPATH[@netkit]...]
#
# For each datapath (default: all of them on veth, then ebpf, ebpf without its fast
# path and iptables on netkit) it brings up a sandbox lab (`DATAPATH@netkit`: with
# `--device netkit`; `ebpf-slow`: `--datapath ebpf --no-fast-path`), runs two
# containers, and checks the walkthrough with real sockets (socat answering each client
# with the address and port it saw): one container to the other, masquerade of TCP,
# UDP and ping to wan, traceroute and path-MTU discovery through the NAT, a published port from wan (the client's address kept), from the
# lab host (127.0.0.1 and its uplink address) and from another container (hairpin),
# on ebpf that the endpoint program and the fast path carried them and that status and
# metrics count the flows, unpublish, a `--network host` container's processes ended by
# `rm`, and down
# with nothing left; on ebpf (veth and netkit) and the netfilter datapaths, a dual-stack lab (`up --ipv6`) too,
# and on nftables-flowtable a dual-stack CNI network (`"subnet6"`). A kernel without netkit must refuse `--device netkit` with one
# line and leave nothing. Each check prints one line, `ok`, `FAILED` or `skipped (why)`; a
# check that cannot run on this kernel is skipped with its reason, never passed. The
# last line is `e2e: N passed, N failed, N skipped`, which `cargo xtask test` adds
# to its own; the exit code is 1 if anything failed.

DATAPATHS=${*:-ebpf iptables iptables-legacy nftables nftables-flowtable ebpf@netkit ebpf-slow@netkit iptables@netkit}
KERNEL=$(uname -r | cut -d. -f1,2)
CONFIG=/boot/config-$(uname -r)
WAN=203.0.113.1
UPLINK=198.51.100.2
WAN_CLIENT=198.51.100.1
TMP=/tmp/e2e
mkdir -p "$TMP"

passed=0 failed=0 skipped=0
dp= datapath= device= lab= servers=

ok() {
    passed=$((passed + 1))
    echo "ok      $KERNEL $dp: $*"
}
fail() {
    failed=$((failed + 1))
    echo "FAILED  $KERNEL $dp: $*"
}
skip() {
    skipped=$((skipped + 1))
    echo "skipped $KERNEL $dp: $*"
}

OFFLOAD="the flowtable holds the masqueraded UDP flow"
OFFLOAD6="the IPv6 flowtable holds the masqueraded UDP flow over IPv6"
SECOND="a second lab on the uplink adds its hooks and down removes exactly them"
FAST="the endpoint program and the fast path carried the packets"
CNI="a CNI network (netlab-cni ADD, masquerade, DEL) on the same device"
CENSUS="status counts the conntrack tables and metrics the flows conntrack lists"
DUAL="a dual-stack lab: masquerade TCP over IPv6, a fragmented ping over IPv6, a port published on both families"
CNI6="a dual-stack CNI network (subnet6: ADD gives an IPv6 address, masquerade over IPv6, DEL)"

# The checks after `up`, named for the lines that report them skipped.
CHECKS="run two containers|TCP from one container to the other|masquerade TCP to wan|masquerade UDP to wan|masquerade ping to wan|traceroute through the NAT|path MTU discovery through the NAT|publish|published TCP from wan|published UDP from wan|published TCP from the host on 127.0.0.1|published TCP from the host on its uplink address|published TCP from another container (hairpin)|forwarding off: nothing forwarded into b|unpublish|a flushed connection's next segment meets a reset|rm ends a host-network container's processes|rm removes the container, its link and its hook|down leaves nothing"

skip_rest() {
    echo "$CHECKS" | tr '|' '\n' > "$TMP/checks"
    [ "$datapath" = nftables-flowtable ] && echo "$OFFLOAD" >> "$TMP/checks"
    [ "$datapath" = ebpf ] && [ -z "$slow" ] && echo "$FAST" >> "$TMP/checks" &&
        echo "$CNI" >> "$TMP/checks"
    [ "$datapath" = ebpf ] && echo "$CENSUS" >> "$TMP/checks"
    [ "$dp" = ebpf ] && echo "$SECOND" >> "$TMP/checks"
    dual_stack_datapath && echo "$DUAL" >> "$TMP/checks"
    [ "$datapath" = nftables-flowtable ] && echo "$OFFLOAD6" >> "$TMP/checks" &&
        echo "$CNI6" >> "$TMP/checks"
    while read -r check; do
        skip "$check ($1)"
    done < "$TMP/checks"
}

# in_lab NS CMD...: CMD in a namespace of the lab (a container, host or wan).
in_lab() {
    ns=$1
    shift
    netlab exec --lab "$lab" "$ns" -- "$@"
}

# serve NS tcp|udp PORT [ADDR]: answers every connection or datagram with the peer's
# "ADDRESS PORT".
serve() {
    bind=${4:+,bind=$4}
    case $2 in
        tcp) listen="TCP-LISTEN:$3,reuseaddr,fork$bind" ;;
        udp) listen="UDP-RECVFROM:$3,fork$bind" ;;
    esac
    in_lab "$1" socat "$listen" SYSTEM:'echo $SOCAT_PEERADDR $SOCAT_PEERPORT' \
        > /dev/null 2> "$TMP/serve.$1.$2.$3" &
    servers="$servers $!"
    flag=$(if [ "$2" = tcp ]; then echo -Hltn; else echo -Hlun; fi)
    i=0
    while [ $i -lt 50 ]; do
        in_lab "$1" ss $flag 2> /dev/null | grep -q ":$3 " && return 0
        sleep 0.2
        i=$((i + 1))
    done
    echo "        (a $2 server on port $3 in $1 did not start: $(cat "$TMP/serve.$1.$2.$3"))"
}

# ask_tcp NS ADDR PORT, ask_udp NS ADDR PORT: what the server answered, or nothing.
# An emulated guest on a busy host can miss a first exchange's timeouts: nothing is
# the answer only after a second try (ask_tcp_once where nothing is the answer
# expected).
ask_tcp_once() {
    in_lab "$1" socat -t 5 -T 10 - "TCP:$2:$3,connect-timeout=5" < /dev/null 2> /dev/null
}
ask_tcp() {
    answer=$(ask_tcp_once "$@")
    [ -n "$answer" ] || answer=$(ask_tcp_once "$@")
    printf '%s\n' "$answer"
}
ask_udp() {
    answer=$(echo hello | in_lab "$1" socat -T 3 - "UDP:$2:$3" 2> /dev/null)
    [ -n "$answer" ] || answer=$(echo hello | in_lab "$1" socat -T 3 - "UDP:$2:$3" 2> /dev/null)
    printf '%s\n' "$answer"
}

# What a lab left behind: its namespaces, state and pins.
leftovers() {
    ip netns list | cut -d' ' -f1 | grep "^$lab-" | sed 's/^/netns /'
    for path in "/run/netlab/$lab" /sys/fs/bpf/netlab/*/"$lab"; do
        [ -e "$path" ] && echo "$path"
    done
}

# The far end saw the uplink address, from the NAT's port range (20000-29999).
check_masquerade() {
    what=$1 answer=$2
    set -- $answer
    if [ "$1" = "$UPLINK" ] && [ "${2:-0}" -ge 20000 ] && [ "${2:-0}" -le 29999 ]; then
        ok "$what (wan saw $1 port $2)"
    else
        fail "$what (wan saw '${answer:-nothing}', expected $UPLINK from 20000-29999)"
    fi
}

check_answer() {
    what=$1 answer=$2 expected=$3
    set -- $answer
    if [ -n "$1" ] && { [ -z "$expected" ] || [ "$1" = "$expected" ]; }; then
        ok "$what (the container saw $1)"
    else
        fail "$what (answer '${answer:-nothing}'${expected:+, expected $expected})"
    fi
}

# Why this kernel cannot run a datapath (or device) at all, if it cannot: its build
# configuration says, which must be there to read.
unavailable() {
    [ "$device" = netkit ] && ! grep -Eq "^CONFIG_NETKIT=y" "$CONFIG" &&
        { echo "this kernel is built without CONFIG_NETKIT"; return; }
    case $1 in
        nftables-flowtable)
            for option in NF_FLOW_TABLE NF_FLOW_TABLE_INET NFT_FLOW_OFFLOAD; do
                grep -Eq "^CONFIG_$option=(y|m)" "$CONFIG" ||
                    { echo "this kernel is built without CONFIG_$option"; return; }
            done ;;
    esac
}

# A kernel without netkit refuses `--device netkit` with one line, and makes nothing.
check_refused() {
    out=$(netlab up --sandbox --lab "$lab" --datapath "$datapath" --device netkit 2>&1)
    code=$?
    left=$(leftovers)
    lines=$(echo "$out" | grep -c .)
    case "$code/$lines/$left/$out" in
        0/*) fail "--device netkit refused (it came up)"; netlab down --lab "$lab" > /dev/null 2>&1 ;;
        */1//*netkit*) ok "--device netkit refused: $out" ;;
        *) fail "--device netkit refused (exit $code, $lines lines, left: '$left'): $out" ;;
    esac
}

run_datapath() {
    dp=$1
    datapath=${dp%@*}
    device=veth
    [ "$datapath" != "$dp" ] && device=${dp#*@}
    # ebpf-slow: the eBPF datapath without its fast path.
    slow=
    [ "$datapath" = ebpf-slow ] && datapath=ebpf slow=--no-fast-path
    lab=e2e_$(echo "$dp" | sed 's/iptables/ipt/; s/nftables/nft/; s/-legacy/l/; s/-flowtable/f/; s/-slow/s/; s/@netkit/k/')
    servers=
    started=$(date +%s)
    if [ ! -r "$CONFIG" ]; then
        fail "up: $CONFIG is not readable: cannot tell what this kernel has"
        skip_rest "the kernel's configuration is unreadable"
        return
    fi
    why=$(unavailable "$datapath")
    if [ -n "$why" ]; then
        [ "$device" = netkit ] && check_refused
        skip "up ($why)"
        skip_rest "$why"
        return
    fi

    # shellcheck disable=SC2086
    if out=$(netlab up --sandbox --lab "$lab" --datapath "$datapath" --device "$device" $slow 2>&1); then
        ok "up"
    else
        fail "up: $(echo "$out" | tail -n1)"
        left=$(leftovers)
        [ -n "$left" ] && fail "a failed up left: $(echo $left)" && netlab down --lab "$lab" > /dev/null 2>&1
        skip_rest "the lab did not come up"
        return
    fi

    a=$(netlab run --lab "$lab" a 2>&1) && b=$(netlab run --lab "$lab" b 2>&1)
    case "$a/$b" in
        "a 172.18.0.2/b 172.18.0.3") ok "run two containers (a 172.18.0.2, b 172.18.0.3)" ;;
        *) fail "run two containers: $a / $b" ;;
    esac

    serve b tcp 80
    serve b udp 53
    check_answer "TCP from one container to the other" "$(ask_tcp a 172.18.0.3 80)" 172.18.0.2

    serve wan tcp 80 "$WAN"
    serve wan udp 53 "$WAN"
    in_lab wan socat -u IP4-RECVFROM:1,fork SYSTEM:'echo $SOCAT_PEERADDR' > "$TMP/icmp" 2> /dev/null &
    servers="$servers $!"
    check_masquerade "masquerade TCP to wan" "$(ask_tcp a "$WAN" 80)"
    check_masquerade "masquerade UDP to wan" "$(ask_udp a "$WAN" 53)"
    if [ "$datapath" = nftables-flowtable ]; then
        # Its reply made the flow established, and the forward chain put it in the
        # flowtable: netfilter's fast path is really in use.
        flows=$(in_lab host conntrack -L -p udp --dport 53 2> /dev/null)
        case $flows in
            *OFFLOAD*) ok "$OFFLOAD (conntrack: [OFFLOAD])" ;;
            *) fail "$OFFLOAD (conntrack: ${flows:-no flow})" ;;
        esac
    fi
    : > "$TMP/icmp"
    if in_lab a ping -c 1 -W 5 "$WAN" > /dev/null 2>&1; then
        i=0
        while [ ! -s "$TMP/icmp" ] && [ $i -lt 25 ]; do
            sleep 0.2
            i=$((i + 1))
        done
        seen=$(head -n1 "$TMP/icmp")
        if [ "$seen" = "$UPLINK" ]; then
            ok "masquerade ping to wan (wan saw $seen)"
        else
            fail "masquerade ping to wan (answered, but wan saw '${seen:-nothing}')"
        fi
    else
        fail "masquerade ping to wan (no answer)"
    fi

    # Hop 1 is the lab host (time exceeded: the TTL is left to the stack), hop 2 wan
    # (port unreachable, translated back through the NAT with its quoted header).
    hops=$(in_lab a traceroute -n -q 1 -w 3 -m 4 "$WAN" 2> /dev/null | awk 'NR > 1 { print $2 }' | tr '\n' ' ')
    case "$hops" in
        "172.18.0.1 $WAN ") ok "traceroute through the NAT (hops: $hops)" ;;
        *) fail "traceroute through the NAT (hops: '${hops:-none}', expected 172.18.0.1 $WAN)" ;;
    esac
    check_pmtu

    if out=$(netlab publish --lab "$lab" b 8080:80 8053:53/udp 2>&1); then
        ok "publish 8080:80 8053:53/udp on b"
    else
        fail "publish: $out"
    fi
    check_answer "published TCP from wan" "$(ask_tcp wan "$UPLINK" 8080)" "$WAN_CLIENT"
    check_answer "published UDP from wan" "$(ask_udp wan "$UPLINK" 8053)" "$WAN_CLIENT"
    check_answer "published TCP from the host on 127.0.0.1" "$(ask_tcp host 127.0.0.1 8080)"
    check_answer "published TCP from the host on its uplink address" "$(ask_tcp host "$UPLINK" 8080)"
    check_answer "published TCP from another container (hairpin)" "$(ask_tcp a "$UPLINK" 8080)"
    check_forwarding_off

    if out=$(netlab unpublish --lab "$lab" b 8080:80 8053:53/udp 2>&1); then
        answer=$(ask_tcp_once wan "$UPLINK" 8080)
        # b's server still answers where nothing was unpublished: the silence is the
        # unpublish's.
        direct=$(ask_tcp a 172.18.0.3 80)
        if [ -n "$answer" ]; then
            fail "unpublish (wan still reaches b: '$answer')"
        elif [ -z "$direct" ]; then
            fail "unpublish: b's server no longer answers a directly, so wan's silence proves nothing"
        else
            ok "unpublish (wan gets no answer on 8080; a still reaches b directly)"
        fi
    else
        fail "unpublish: $out"
    fi

    [ "$datapath" = ebpf ] && [ -z "$slow" ] && check_fast_path
    [ "$datapath" = ebpf ] && check_census
    [ "$dp" = ebpf ] && second_lab_on_the_uplink
    [ "$datapath" = ebpf ] && [ -z "$slow" ] && cni_network
    # After the checks that count flows: it flushes them all.
    check_flushed_connection_reset
    check_host_network
    check_rm

    # shellcheck disable=SC2086
    kill $servers 2> /dev/null
    servers=
    wait 2> /dev/null
    if out=$(netlab down --lab "$lab" 2>&1); then
        left=$(leftovers)
        if [ -z "$left" ]; then
            ok "down leaves nothing (no netns, state or pins)"
        else
            fail "down left: $(echo $left)"
        fi
    else
        fail "down: $out"
    fi
    dual_stack_datapath && check_dual_stack
    # The host suite runs this on the other datapaths; the flowtable only runs here.
    [ "$datapath" = nftables-flowtable ] && cni_dual_stack
    echo "        ($dp on $KERNEL: $(($(date +%s) - started)) s)"
}

# The datapaths whose dual-stack lab (`up --ipv6`) the guest checks: eBPF and the
# netfilter ones, on veth; eBPF on netkit too (its fast path enters a netkit container
# by its primary).
dual_stack_datapath() {
    case "$dp" in
        ebpf | iptables | iptables-legacy | nftables | nftables-flowtable | ebpf@netkit) return 0 ;;
        *) return 1 ;;
    esac
}

# A dual-stack lab of its own: a container's TCP over IPv6 reaches wan masqueraded
# behind the uplink's IPv6 address, a 3000-byte ping over IPv6 (fragmented by the
# container and by wan, every fragment translated) is answered, and a port published
# without a host address answers wan on the uplink's IPv6 address (the container sees
# the client) and its IPv4 one; down leaves nothing.
check_dual_stack() {
    check=$DUAL
    v4lab=$lab
    lab=${v4lab}6
    if ! out=$(netlab up --sandbox --lab "$lab" --datapath "$datapath" --device "$device" --ipv6 2>&1); then
        fail "$check: up --ipv6: $(echo "$out" | tail -n1)"
        lab=$v4lab
        return
    fi
    netlab run --lab "$lab" a > /dev/null 2>&1 && netlab run --lab "$lab" b > /dev/null 2>&1 &&
        netlab publish --lab "$lab" b 8080:80 > /dev/null 2>&1
    in_lab wan socat TCP6-LISTEN:80,bind=[2001:db8:113::1],reuseaddr,fork \
        SYSTEM:'echo $SOCAT_PEERADDR $SOCAT_PEERPORT' > /dev/null 2>&1 &
    servers="$servers $!"
    in_lab b socat TCP6-LISTEN:80,reuseaddr,fork SYSTEM:'echo $SOCAT_PEERADDR' > /dev/null 2>&1 &
    servers="$servers $!"
    in_lab wan socat UDP6-RECVFROM:53,bind=[2001:db8:113::1],fork SYSTEM:'echo $SOCAT_PEERADDR' > /dev/null 2>&1 &
    servers="$servers $!"
    sleep 1
    if [ "$datapath" = nftables-flowtable ]; then
        # As over IPv4: the reply made the flow established, and the IPv6 table's
        # forward chain put it in its own flowtable.
        udp6=$(echo hello | in_lab a socat -T 3 - "UDP6:[2001:db8:113::1]:53" 2> /dev/null)
        flows=$(in_lab host conntrack -L -f ipv6 -p udp --dport 53 2> /dev/null)
        case $flows in
            *OFFLOAD*) ok "$OFFLOAD6 (wan saw $udp6; conntrack: [OFFLOAD])" ;;
            *) fail "$OFFLOAD6 (wan saw '${udp6:-nothing}'; conntrack: ${flows:-no flow})" ;;
        esac
    fi
    out6=$(in_lab a socat -t 5 -T 10 - "TCP6:[2001:db8:113::1]:80,connect-timeout=5" < /dev/null 2> /dev/null)
    pub6=$(in_lab wan socat -t 5 -T 10 - "TCP6:[2001:db8:100::2]:8080,connect-timeout=5" < /dev/null 2> /dev/null)
    pub4=$(ask_tcp wan "$UPLINK" 8080)
    big6=no
    in_lab a ping -6 -c 1 -W 5 -s 3000 2001:db8:113::1 > /dev/null 2>&1 && big6=yes
    # shellcheck disable=SC2086
    kill $servers 2> /dev/null
    wait 2> /dev/null
    servers=
    down=$(netlab down --lab "$lab" 2>&1) || fail "$check: down: $down"
    left=$(leftovers)
    lab=$v4lab
    # socat writes an IPv6 peer in full, in brackets.
    set -- $out6
    addr=${1:-} port=${2:-0}
    case "$addr/$pub6/$left" in
        "[2001:0db8:0100:0000:0000:0000:0000:0002]/[2001:0db8:0100:0000:0000:0000:0000:0001]/")
            if [ "$port" -ge 20000 ] && [ "$port" -le 29999 ] && [ -n "$pub4" ] && [ "$big6" = yes ]; then
                ok "$check (wan saw $addr port $port; the big ping answered; b saw $pub6 over IPv6 and $pub4 over IPv4)"
            else
                fail "$check (wan saw $addr port $port, big ping answered: $big6, b saw '$pub6' and '$pub4')"
            fi ;;
        *) fail "$check (wan saw '${out6:-nothing}', b saw '${pub6:-nothing}' over IPv6 and '${pub4:-nothing}' over IPv4, left: '$left')" ;;
    esac
}

# A dual-stack CNI network (`"subnet6"`) on the datapath, as a runtime brings one up
# in its own namespace: here the host of a dual-stack sandbox lab of the routed
# baseline (an uplink with an IPv6 address, IPv6 forwarding on, and no nftables table
# of its own: one nftables lab per namespace). ADD's result has an address of the IPv6
# subnet, the container's TCP over IPv6 reaches wan's server masqueraded behind the
# uplink's IPv6 address with a port of the network's own range, and DEL and down take
# it out again.
cni_dual_stack() {
    v4lab=$lab
    lab=${v4lab}c
    if ! out=$(netlab up --sandbox --lab "$lab" --datapath routed --ipv6 2>&1); then
        fail "$CNI6: up of the runtime's lab: $(echo "$out" | tail -n1)"
        lab=$v4lab
        return
    fi
    in_lab wan socat TCP6-LISTEN:80,bind=[2001:db8:113::1],reuseaddr,fork \
        SYSTEM:'echo $SOCAT_PEERADDR $SOCAT_PEERPORT' > /dev/null 2>&1 &
    server=$!
    sleep 1
    net=e2ecni6 c=e2ecni6-c1
    conf="{\"cniVersion\":\"1.0.0\",\"name\":\"$net\",\"type\":\"netlab-cni\",\"datapath\":\"$datapath\",\"subnet\":\"10.89.0.0/24\",\"subnet6\":\"fd00:89::/64\",\"natPorts\":\"31000-31999\",\"device\":\"$device\"}"
    ip netns add "$c"
    ip -n "$c" link set lo up
    seen= left=0 has6=no added_ok=no
    if added=$(cni ADD); then
        added_ok=yes
        case $added in *'"fd00:89::'*) has6=yes ;; esac
        seen=$(ip netns exec "$c" socat -t 5 -T 10 - "TCP6:[2001:db8:113::1]:80,connect-timeout=5" < /dev/null 2> /dev/null)
        deleted=$(cni DEL) || fail "$CNI6: DEL: $deleted"
        left=$(ip -n "$c" -o link show 2> /dev/null | grep -c eth0)
    else
        fail "$CNI6: ADD: $added"
    fi
    down=$(netlab down --lab "$net" 2>&1) || fail "$CNI6: down: $down"
    ip netns delete "$c"
    kill "$server" 2> /dev/null
    wait "$server" 2> /dev/null
    down=$(netlab down --lab "$lab" 2>&1) || fail "$CNI6: down of the runtime's lab: $down"
    lab=$v4lab
    [ "$added_ok" = no ] && return
    set -- $seen
    port=${2:-0}
    if [ "$has6" = yes ] && [ "${1:-}" = "[2001:0db8:0100:0000:0000:0000:0000:0002]" ] &&
        [ "$port" -ge 31000 ] && [ "$port" -le 31999 ] && [ "$left" -eq 0 ]; then
        ok "$CNI6 (an address of fd00:89::/64; wan saw $1 port $port; eth0 gone after DEL)"
    else
        fail "$CNI6 (an IPv6 address in ADD's result: $has6; wan saw '${seen:-nothing}'; eth0 left after DEL: $left)"
    fi
}

# A masqueraded TCP connection whose flow is flushed: its next segment meets a reset
# at once on every datapath (nf_conntrack picks it up behind a new NAT port, which wan
# resets; eBPF answers it itself), where eBPF used to drop it and the connection hung.
check_flushed_connection_reset() {
    in_lab wan socat "TCP-LISTEN:81,reuseaddr,bind=$WAN" SYSTEM:cat > /dev/null 2>&1 &
    servers="$servers $!"
    rm -f "$TMP/flushed" "$TMP/reset.out"
    { echo one; while [ ! -e "$TMP/flushed" ]; do sleep 0.2; done; echo two; sleep 8; } |
        in_lab a socat -d -t 2 - "TCP:$WAN:81,connect-timeout=5,retry=5,interval=0.5" \
            > "$TMP/reset.out" 2> "$TMP/reset.err" &
    client=$!
    i=0
    while ! grep -q one "$TMP/reset.out" 2> /dev/null && [ $i -lt 50 ]; do
        sleep 0.2
        i=$((i + 1))
    done
    case $datapath in
        ebpf) netlab conntrack --lab "$lab" --flush > /dev/null 2>&1 ;;
        *) in_lab host conntrack -F > /dev/null 2>&1 ;;
    esac
    # netfilter's flowtable drops an offloaded flow whose conntrack entry went at its
    # next collection (every second): until then it forwards the connection as it was.
    sleep 3
    touch "$TMP/flushed"
    wait $client 2> /dev/null
    # socat says so as a warning (-d): "W read(...): Connection reset by peer".
    if grep -q "reset by peer" "$TMP/reset.err"; then
        ok "a flushed connection's next segment meets a reset"
    else
        fail "a flushed connection's next segment meets a reset (socat: $(tail -n1 "$TMP/reset.err"))"
    fi
}

# A host beyond wan behind a 1280-byte link: a container's 1400-byte ping with DF set
# gets "fragmentation needed" from wan, translated back through the NAT with its
# quoted header, and the container learns the path's MTU.
check_pmtu() {
    check="path MTU discovery through the NAT"
    far=$lab-far
    ip netns add "$far"
    ip -n "$lab-wan" link add farlink mtu 1280 type veth peer name eth0 netns "$far"
    ip -n "$far" link set eth0 mtu 1280
    ip -n "$lab-wan" addr add 192.0.2.1/24 dev farlink
    ip -n "$lab-wan" link set farlink up
    ip -n "$far" addr add 192.0.2.2/24 dev eth0
    ip -n "$far" link set eth0 up
    ip -n "$far" route add default via 192.0.2.1
    in_lab wan sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
    out=$(in_lab a ping -M do -s 1400 -c 3 -W 2 192.0.2.2 2>&1)
    small=$(in_lab a ping -M do -s 1200 -c 1 -W 5 192.0.2.2 2>&1)
    ip netns delete "$far"
    case $out in
        *"mtu = 1280"* | *"mtu=1280"*)
            case $small in
                *" 0% packet loss"*) ok "$check (1400 bytes: mtu 1280 learnt; 1200 bytes answered)" ;;
                *) fail "$check (mtu learnt, but 1200 bytes got no answer: $(echo "$small" | tail -n2 | tr '\n' ' '))" ;;
            esac ;;
        *) fail "$check (no mtu 1280 learnt: $(echo "$out" | tail -n3 | tr '\n' ' '))" ;;
    esac
}

# cni COMMAND: netlab-cni as a runtime runs it, with configuration $conf for container
# namespace $c (also its container ID), in the host of lab $lab; prints its answer.
cni() {
    echo "$conf" | CNI_COMMAND=$1 CNI_CONTAINERID=$c CNI_NETNS=/run/netns/$c CNI_IFNAME=eth0 \
        CNI_PATH=/usr/bin netlab exec --lab "$lab" host -- netlab-cni 2>&1
}

# netlab-cni as a runtime runs it (CNI_* variables, the configuration on stdin), in
# the lab host's namespace, which has an uplink (`netlab exec`: `ip netns exec` would
# mount a fresh /sys over the cgroup v2 hierarchy the plugin needs): it brings up a network of its own
# (`"device"` as the lab's, another subnet and NAT ports), puts `eth0` into a
# container namespace, masquerades it to wan, and DEL takes it out again.
cni_network() {
    check=$CNI
    net=e2ecni c=e2ecni-c1
    conf="{\"cniVersion\":\"1.0.0\",\"name\":\"$net\",\"type\":\"netlab-cni\",\"subnet\":\"10.88.0.0/24\",\"natPorts\":\"31000-31999\",\"device\":\"$device\"}"
    ip netns add "$c"
    ip -n "$c" link set lo up
    if ! added=$(cni ADD); then
        fail "$check: ADD: $added"
        ip netns delete "$c"
        netlab down --lab "$net" > /dev/null 2>&1
        return
    fi
    kind=$(ip -n "$c" -d link show eth0 2> /dev/null | grep -o -m1 'netkit\|veth')
    seen=$(ip netns exec "$c" socat -t 5 -T 10 - "TCP:$WAN:80,connect-timeout=5" < /dev/null 2> /dev/null)
    deleted=$(cni DEL) || fail "$check: DEL: $deleted"
    left=$(ip -n "$c" -o link show 2> /dev/null | grep -c eth0)
    down=$(netlab down --lab "$net" 2>&1) || fail "$check: down: $down"
    ip netns delete "$c"
    set -- $seen
    if [ "$kind" = "$device" ] && [ "$1" = "$UPLINK" ] && [ "$left" -eq 0 ]; then
        ok "$check (eth0 is $kind, wan saw $1 port $2, gone after DEL)"
    else
        fail "$check (eth0: '${kind:-none}', wan saw '${seen:-nothing}', eth0 left after DEL: $left)"
    fi
}

# The lab host's links, and the eBPF datapath's endpoint hooks (tcx or netkit link pins,
# or classic filters recorded).
host_links() {
    in_lab host ip -o link show 2> /dev/null | grep -c .
}
endpoint_hooks() {
    {
        ls /sys/fs/bpf/netlab/*/"$lab"/links 2> /dev/null
        cat "/run/netlab/$lab/tc-filters" 2> /dev/null
    } | grep -c '^endpoint-'
}

# `run --network host`: `exec` puts its processes in a cgroup of its own, and `rm` ends
# them by it (cgroup.kill) and removes it; the lab host's own processes go on.
check_host_network() {
    check="rm ends a host-network container's processes"
    if ! out=$(netlab run --lab "$lab" h --network host 2>&1); then
        fail "$check: $out"
        return
    fi
    netlab exec --lab "$lab" h -- sleep 600 &
    pid=$!
    in_lab host sleep 600 &
    other=$!
    i=0
    while [ "$(cat /proc/$pid/comm 2> /dev/null)" != sleep ] && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    cg=$(sed -n 's/^0:://p' /proc/$pid/cgroup 2> /dev/null)
    out=$(netlab rm --lab "$lab" h 2>&1)
    state=$(awk '{ print $3 }' /proc/$pid/stat 2> /dev/null)
    host_state=$(awk '{ print $3 }' /proc/$other/stat 2> /dev/null)
    kill $pid $other 2> /dev/null
    wait $pid $other 2> /dev/null
    case "$cg/$state/$host_state" in
        */netlab-"$lab"-h/Z/[SR] | */netlab-"$lab"-h//[SR])
            ok "$check (it ran in $cg)" ;;
        *) fail "$check (cgroup '${cg:-none}', its state '${state:-gone}', the lab host's '${host_state:-gone}': $out)" ;;
    esac
}

# `rm a`: its namespace, the host end of its pair and its endpoint hook go; b stays.
check_rm() {
    check="rm removes the container, its link and its hook"
    links=$(host_links) hooks=$(endpoint_hooks)
    if ! out=$(netlab rm --lab "$lab" a 2>&1); then
        fail "$check: $out"
        return
    fi
    links_after=$(host_links) hooks_after=$(endpoint_hooks)
    gone_hook=$((hooks - hooks_after))
    # Only the netfilter datapaths have no endpoint hook to remove; on eBPF a count
    # of 0 is a hook never attached (or pins out of sight), not a pass.
    [ "$hooks" -eq 0 ] && [ "$datapath" != ebpf ] && gone_hook=1
    names=$(ip netns list | cut -d' ' -f1)
    if ! echo "$names" | grep -qx "$lab-a" && [ $((links - links_after)) -eq 1 ] &&
        [ "$gone_hook" -eq 1 ] && echo "$names" | grep -qx "$lab-b"; then
        ok "$check (host links $links -> $links_after, endpoint hooks $hooks -> $hooks_after)"
    else
        fail "$check (host links $links -> $links_after, endpoint hooks $hooks -> $hooks_after, namespaces: $(ip netns list | cut -d' ' -f1 | grep "^$lab-" | tr '\n' ' '))"
    fi
}

# With forwarding turned off in the lab host, wan's connection to a published port gets
# no answer, and on eBPF's fast path nothing more enters a container by it (the
# program asks the kernel's route lookup, which says "forwarding disabled"; its answer
# is kept for the rest of a second). Turned on again after.
check_forwarding_off() {
    into=$(counter fast_to_container)
    off=$(in_lab host sysctl -w net.ipv4.ip_forward=0 2>&1)
    sleep 1.1
    answer=$(ask_tcp_once wan "$UPLINK" 8080)
    after=$(counter fast_to_container)
    on=$(in_lab host sysctl -w net.ipv4.ip_forward=1 2>&1)
    sleep 1.1
    # Back on, the port answers again: the silence above was forwarding's.
    again=$(ask_tcp wan "$UPLINK" 8080)
    if [ "$off" != "net.ipv4.ip_forward = 0" ] || [ "$on" != "net.ipv4.ip_forward = 1" ]; then
        fail "forwarding off: sysctl in the lab host ('$off', '$on')"
    elif [ -n "$answer" ]; then
        fail "forwarding off: nothing forwarded into b (wan got '$answer')"
    elif [ "$datapath" = ebpf ] && [ -z "$into" ]; then
        fail "forwarding off: netlab stats has no fast_to_container counter"
    elif [ "${into:-0}" != "${after:-0}" ]; then
        fail "forwarding off: nothing forwarded into b (fast_to_container ${into:-?} -> ${after:-?})"
    elif [ "${again%% *}" != "$WAN_CLIENT" ]; then
        fail "forwarding on again: wan got '${again:-nothing}' from the port, expected $WAN_CLIENT"
    else
        ok "forwarding off: nothing forwarded into b (and again once on)"
    fi
}

# `netlab stats`: the value of one counter.
counter() {
    netlab stats --lab "$lab" 2> /dev/null | awk -v name="$1" '$1 == name { print $2 }'
}

# The endpoint program ran on every container's packets (on netkit: as the pair's peer
# program), and the fast path forwarded to the uplink, into containers and between them.
check_fast_path() {
    endpoint=$(counter endpoint_packets) uplink=$(counter fast_to_uplink)
    into=$(counter fast_to_container) between=$(counter fast_between_containers)
    summary="endpoint_packets ${endpoint:-?}, fast_to_uplink ${uplink:-?}, fast_to_container ${into:-?}, fast_between_containers ${between:-?}"
    if [ "${endpoint:-0}" -gt 0 ] && [ "${uplink:-0}" -gt 0 ] && [ "${into:-0}" -gt 0 ] &&
        [ "${between:-0}" -gt 0 ]; then
        ok "$FAST ($summary)"
    else
        fail "$FAST ($summary)"
    fi
}

# `status` counts the established table by the programs' counters, and `metrics`
# counts the flows in one pass over the tables: the flows of the checks above are
# there, as many in the scrape as `netlab conntrack` lists.
check_census() {
    entries=$(netlab status --lab "$lab" 2> /dev/null |
        awk '$1 == "CT" || $1 == "CT_PENDING" { n += $3 } END { print n + 0 }')
    # Listed before and after: a flow may expire meanwhile, none begins.
    before=$(netlab conntrack --lab "$lab" --json 2> /dev/null | grep -c '"proto"')
    flows=$(netlab metrics --labs "$lab" 2> /dev/null |
        awk '/^netlab_conntrack_flows[{]/ { n += $NF } END { print n + 0 }')
    after=$(netlab conntrack --lab "$lab" --json 2> /dev/null | grep -c '"proto"')
    summary="$entries entries; $flows flows, $before then $after listed"
    if [ "$entries" -ge 2 ] && [ "$flows" -ge 1 ] && [ "$flows" -le "$before" ] &&
        [ "$flows" -ge "$after" ]; then
        ok "$CENSUS ($summary)"
    else
        fail "$CENSUS ($summary)"
    fi
}

# The TC hooks on the lab host's uplink: classic filters (`tc filter show`), or tcx
# links (bpftool lists them as "type 11" or "tcx").
uplink_hooks() {
    {
        in_lab host tc filter show dev eth0 ingress
        in_lab host tc filter show dev eth0 egress
        bpftool link list 2> /dev/null | grep -E 'type 11|tcx'
    } 2> /dev/null | grep -c .
}

# A second eBPF lab on the first lab's uplink (in its host namespace, with another
# subnet and NAT ports): it adds its own hooks, the first lab still masquerades, and
# its `down` removes exactly its own hooks (on classic TC, its filters and not the
# first lab's, nor their qdisc).
second_lab_on_the_uplink() {
    check=$SECOND
    before=$(uplink_hooks)
    if ! out=$(in_lab host netlab --lab "${lab}b" up --uplink eth0 --subnet 10.51.0.0/24 \
        --nat-ports 30000-30999 2>&1); then
        fail "$check: up: $out"
        return
    fi
    during=$(uplink_hooks)
    seen=$(ask_tcp a "$WAN" 80)
    out=$(netlab down --lab "${lab}b" 2>&1) || fail "$check: down: $out"
    after=$(uplink_hooks)
    if [ "$during" -gt "$before" ] && [ "$after" -eq "$before" ] && [ "${seen%% *}" = "$UPLINK" ]; then
        ok "$check ($before, $during, then $after hooks)"
    else
        fail "$check ($before, $during, then $after hooks; the first lab's TCP: '$seen')"
    fi
}

echo "e2e on Linux $(uname -r): $DATAPATHS"
suite_started=$(date +%s)
for datapath in $DATAPATHS; do
    run_datapath "$datapath"
done

# After every lab: nothing of netlab's anywhere (as the host's leak check).
dp=all
left=$(
    ip netns list | cut -d' ' -f1 | sed 's/^/netns /'
    for path in /run/netlab /sys/fs/bpf/netlab /run/netlab.bpffs; do
        [ -e "$path" ] && echo "$path"
    done
    ls -d /sys/fs/cgroup/netlab-* 2> /dev/null
)
if [ -z "$left" ]; then
    ok "nothing left after every lab"
else
    fail "left behind: $(echo $left)"
fi

echo "        (the suite on $KERNEL: $(($(date +%s) - suite_started)) s)"
echo "e2e: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
