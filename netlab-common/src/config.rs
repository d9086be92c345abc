//! The datapath's runtime configuration: the single element of the `CONFIG` array map.

/// Forward translated packets of established flows straight to their next hop from TC
/// (`bpf_fib_lookup` + `bpf_redirect`), skipping the host's IP forwarding path.
pub const FLAG_FAST_PATH: u32 = 1;

/// Written by `netlab up`; read by every program on every packet.
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
    /// Conntrack timeouts in seconds after the last packet.
    pub tcp_established_secs: u32,
    /// SYN sent, FIN or RST seen.
    pub tcp_transitory_secs: u32,
    pub udp_secs: u32,
    pub icmp_secs: u32,
    /// [`FLAG_FAST_PATH`]...
    pub flags: u32,
    /// Cookie of the lab host's network namespace: the host-local publishing programs
    /// act only on sockets there (`bpf_get_netns_cookie`).
    pub host_netns_cookie: u64,
}
const _: () = assert!(core::mem::size_of::<Config>() == 56);

impl Default for Config {
    fn default() -> Self {
        Self {
            uplink_addr: 0,
            bridge_addr: 0,
            subnet: 0,
            subnet_mask: 0,
            uplink_ifindex: 0,
            bridge_ifindex: 0,
            nat_port_min: 20_000,
            nat_port_max: 29_999,
            tcp_established_secs: 7_440,
            tcp_transitory_secs: 120,
            udp_secs: 30,
            icmp_secs: 30,
            flags: FLAG_FAST_PATH,
            host_netns_cookie: 0,
        }
    }
}

impl Config {
    /// Whether `addr` (network byte order) is inside the lab subnet.
    pub const fn in_subnet(&self, addr: u32) -> bool {
        addr & self.subnet_mask == self.subnet
    }
}
