//! Whether the NAT port a container's new masqueraded flow was given belongs to a
//! socket of the lab host: the flow's replies (from its peer to the uplink's address
//! and that port) would otherwise be taken from the socket into the container. The
//! NAT picks a port whose reply tuple is free in its own tables; it does not see the
//! host's sockets, as nf_nat sees the host's connections. So the reply tuple is looked
//! up among the host's TCP or UDP sockets (`bpf_sk_lookup_*`: a connection, a
//! listener, a bound UDP socket) once a port is picked, and a port one holds is not
//! taken: the packet is dropped as `ports_exhausted`, and the flow's next packet (a
//! SYN sent again, the next datagram) gets another pick.
//!
//! The lookup is in the namespace of the device the program runs on: the lab host's
//! for the uplink's, the bridge's and a veth's programs, and for a netkit endpoint
//! program too (it runs with the packet already on the primary, in the lab host). It
//! finds a socket that is there when the flow opens; one bound or connected later
//! still loses its replies from that peer to the container (the README says so). A
//! review, 2026-12-08, saw a host socket's datagrams delivered into a container
//! before this check.

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_F_CURRENT_NETNS, bpf_sock_tuple},
    cty::c_void,
    helpers::generated::{bpf_sk_lookup_tcp, bpf_sk_lookup_udp, bpf_sk_release},
    macros::map,
    maps::PerCpuArray,
    programs::TcContext,
};
use netlab_common::{
    conntrack::CtEntry,
    proto::{IPPROTO_TCP, IPPROTO_UDP},
};

use crate::family::Family;

/// The tuple looked up, in a per-CPU slot rather than on the IPv6 programs' stack.
#[map(name = "SK_TUPLE")]
static SK_TUPLE: PerCpuArray<bpf_sock_tuple> = PerCpuArray::with_max_entries(1, 0);

/// Whether a socket of the namespace the program runs in would take the replies of a
/// flow of protocol `proto` translated to `out` (from `out.daddr:out.dport` to
/// `out.saddr:out.sport`).
#[inline(always)]
pub fn holds<A: Family>(ctx: &TcContext, proto: u8, out: &CtEntry<A>) -> bool {
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return false;
    }
    let Some(t) = SK_TUPLE.get_ptr_mut(0) else {
        return false;
    };
    let size = A::reply_tuple(unsafe { &mut *t }, out);
    let netns = BPF_F_CURRENT_NETNS as u64;
    let sk = unsafe {
        if proto == IPPROTO_TCP {
            bpf_sk_lookup_tcp(ctx.as_ptr(), t, size, netns, 0)
        } else {
            bpf_sk_lookup_udp(ctx.as_ptr(), t, size, netns, 0)
        }
    };
    if sk.is_null() {
        return false;
    }
    unsafe { bpf_sk_release(sk as *mut c_void) };
    true
}
