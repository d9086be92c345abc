//! The datapath's configuration: a read-only global of the programs, and the single
//! element of the `CONFIG` array map for userspace.

use crate::addr::Addr6;

/// Forward packets from TC straight to their next hop (the endpoint programs, and
/// `bpf_redirect_peer` into containers), skipping the bridge and the host's IP
/// forwarding path.
pub const FLAG_FAST_PATH: u32 = 1;

/// The programs are attached as classic `cls_bpf` filters (the kernel has no tcx);
/// userspace's to know, the programs behave the same.
pub const FLAG_CLASSIC_TC: u32 = 2;

/// The containers' interfaces are netkit pairs: the endpoint program runs in the
/// container's transmit path (netkit's peer program), not at a veth's TC ingress, so it
/// reaches another container with `bpf_redirect` to that container's netkit primary
/// (`bpf_redirect_peer` works only from TC ingress).
pub const FLAG_NETKIT: u32 = 4;

// 8 is retired: it marked a lab whose programs count `CT`'s entries, which every lab
// of the current pins layout's does.

/// The lab is dual-stack (`up --ipv6`): the IPv4 programs hand IPv6 packets to their
/// IPv6 counterparts (a tail call through `PROGS6`); without it IPv6 is passed, as the
/// lab has none.
pub const FLAG_IPV6: u32 = 16;

/// A fault point, for tests only (`up --fault rewrite_failed`): every rewrite of a
/// packet's headers fails as a kernel helper's store or checksum fix would, which
/// nothing else can make happen at will. A lab without it carries no cost: the flag is
/// a constant to the verifier, which removes the check.
pub const FLAG_FAULT_REWRITE: u32 = 32;

/// Written by `netlab up`: into the programs as the read-only global
/// [`crate::maps::CONFIG_GLOBAL`] before they are verified, and into the `CONFIG` map,
/// userspace's record of it (with [`FLAG_CLASSIC_TC`], known only after loading).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Config {
    /// Uplink address: the masquerade source (network byte order).
    pub uplink_addr: u32,
    /// Bridge address: the containers' gateway (network byte order).
    pub bridge_addr: u32,
    /// Lab subnet and its mask (network byte order).
    pub subnet: u32,
    pub subnet_mask: u32,
    pub uplink_ifindex: u32,
    pub bridge_ifindex: u32,
    /// SNAT port range, inclusive, **host byte order**.
    pub nat_port_min: u16,
    pub nat_port_max: u16,
    /// Conntrack timeouts in seconds after the last packet: TCP by state, UDP before
    /// and after it becomes a two-way stream, ICMP.
    pub tcp_syn_secs: u32,
    pub tcp_established_secs: u32,
    /// FIN one way (FIN_WAIT, CLOSE_WAIT).
    pub tcp_fin_secs: u32,
    pub tcp_time_wait_secs: u32,
    /// After a reset.
    pub tcp_close_secs: u32,
    pub udp_secs: u32,
    pub udp_stream_secs: u32,
    pub icmp_secs: u32,
    /// [`FLAG_FAST_PATH`]...
    pub flags: u32,
    /// The bridge's MAC: the source of frames the fast path delivers to containers.
    pub bridge_mac: [u8; 6],
    pub _pad: [u8; 2],
    /// Cookie of the lab host's network namespace: the host-local publishing programs
    /// act only on sockets there (`bpf_get_netns_cookie`).
    pub host_netns_cookie: u64,
    /// Milliseconds between two runs of the conntrack garbage collector.
    pub gc_interval_ms: u32,
    pub _pad2: u32,
    /// IPv6 ([`FLAG_IPV6`]): the uplink's address (the masquerade source), the bridge's
    /// (the containers' gateway), the lab's IPv6 subnet and its mask; zero without.
    pub uplink_addr6: Addr6,
    pub bridge_addr6: Addr6,
    pub subnet6: Addr6,
    pub subnet6_mask: Addr6,
}
const _: () = assert!(core::mem::size_of::<Config>() == 152);

/// The default [`Config::gc_interval_ms`]: each run looks at a bounded slice of the
/// established flows ([`GC_BATCH`]), so runs are short and frequent.
pub const GC_INTERVAL_MS_DEFAULT: u32 = 250;
/// Established flows the collector looks at in one run, at most.
pub const GC_BATCH: u32 = 4_096;

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Config {
    /// Every timeout at its default, the fast path on, no addresses.
    pub const DEFAULT: Self = Self {
        uplink_addr: 0,
        bridge_addr: 0,
        subnet: 0,
        subnet_mask: 0,
        uplink_ifindex: 0,
        bridge_ifindex: 0,
        nat_port_min: 20_000,
        nat_port_max: 29_999,
        tcp_syn_secs: 30,
        tcp_established_secs: 7_440,
        tcp_fin_secs: 120,
        tcp_time_wait_secs: 120,
        tcp_close_secs: 10,
        udp_secs: 30,
        udp_stream_secs: 120,
        icmp_secs: 30,
        flags: FLAG_FAST_PATH,
        bridge_mac: [0; 6],
        _pad: [0; 2],
        host_netns_cookie: 0,
        gc_interval_ms: GC_INTERVAL_MS_DEFAULT,
        _pad2: 0,
        uplink_addr6: [0; 4],
        bridge_addr6: [0; 4],
        subnet6: [0; 4],
        subnet6_mask: [0; 4],
    };

    /// Whether `addr` (network byte order) is inside the lab subnet.
    pub const fn in_subnet(&self, addr: u32) -> bool {
        addr & self.subnet_mask == self.subnet
    }

    /// Whether `addr` (network byte order) is one of the lab host's own addresses that
    /// ports are published on (uplink or bridge).
    pub const fn is_host(&self, addr: u32) -> bool {
        addr == self.uplink_addr || addr == self.bridge_addr
    }

    /// Whether `addr` is inside the lab's IPv6 subnet (never, in a lab without IPv6).
    pub const fn in_subnet6(&self, addr: &Addr6) -> bool {
        self.flags & FLAG_IPV6 != 0
            && addr[0] & self.subnet6_mask[0] == self.subnet6[0]
            && addr[1] & self.subnet6_mask[1] == self.subnet6[1]
            && addr[2] & self.subnet6_mask[2] == self.subnet6[2]
            && addr[3] & self.subnet6_mask[3] == self.subnet6[3]
    }

    /// [`Config::is_host`] for IPv6 (never, in a lab without IPv6).
    pub const fn is_host6(&self, addr: &Addr6) -> bool {
        self.flags & FLAG_IPV6 != 0
            && (eq6(addr, &self.uplink_addr6) || eq6(addr, &self.bridge_addr6))
    }
}

/// Two IPv6 addresses equal (a `const fn`, which `==` on arrays is not).
pub const fn eq6(a: &Addr6, b: &Addr6) -> bool {
    a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3]
}
