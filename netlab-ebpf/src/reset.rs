//! A reset for a container's TCP segment that leaves by an uplink with no flow
//! (`tcp_no_flow`: its flow was flushed, expired idle past `--tcp-timeout`, withdrawn
//! with its published port, or masqueraded behind an address the uplink no longer
//! has), sent back into the container in the far end's name.
//!
//! nf_conntrack picks such a segment up mid-stream (`nf_conntrack_tcp_loose`) and
//! masquerades it behind a new NAT port, which the server answers with a reset: on
//! iptables the container's connection ends at once (`ECONNRESET`). The eBPF datapath
//! opens flows on a SYN only, so the segment is dropped, and without an answer the
//! connection hung, retransmitting, until the container's own timeout. It is answered
//! as iptables' `REJECT --reject-with tcp-reset` answers (`nf_send_reset`): the
//! segment's frame becomes the reset — addresses and ports swapped, a segment with ACK
//! answered at its acknowledgment number, one without acknowledged up to its end,
//! TTL (hop limit) 64, window 0 — and goes to the container's veth (or netkit
//! primary), whose transmit delivers it. Nothing leaves the lab host.
//!
//! A reset is never answered, nor a segment with flags no TCP sends, nor one with IPv4
//! options or IPv6 extension headers (whose offloaded checksum could start past the
//! reset's header), nor one whose TCP header no TCP sends (a data offset under 5 words, or past the segment's
//! end), nor one whose source is no container of the lab's: those are dropped, as
//! before. The
//! segment itself is always dropped and counted (`tcp_no_flow`); a reset sent is
//! counted too (`tcp_resets_sent`).

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_F_RECOMPUTE_CSUM, TC_ACT_SHOT},
    helpers::generated::{bpf_redirect, bpf_skb_change_tail, bpf_skb_load_bytes},
    macros::map,
    maps::PerCpuArray,
    programs::TcContext,
};
use netlab_common::{
    addr::Addr6,
    conntrack::tcp_flags_valid,
    endpoint::Endpoint,
    proto::{ETH_HLEN, IPPROTO_TCP, IPV4_MIN_HLEN, IPV6_HLEN, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    stats::{DropReason, counter},
};

use crate::{
    maps::{self, Stats},
    words,
};

/// A TCP header without options.
const TCP_HLEN: usize = 20;
/// The reset's frame: Ethernet, IPv4, TCP.
const FRAME4: usize = ETH_HLEN + IPV4_MIN_HLEN + TCP_HLEN;
/// The reset's frame: Ethernet, IPv6, TCP.
const FRAME6: usize = ETH_HLEN + IPV6_HLEN + TCP_HLEN;
/// The reset's TTL, or hop limit (the kernel's default).
const TTL: u8 = 64;
/// Where the slot keeps, past the frame, the container's ifindex and the checksum's
/// difference ([`checksum`]) across helper calls: the subprogram's frame is added to
/// the uplink egress program's, which 6.1 wants within 512 bytes with it.
const IFINDEX: usize = 76;
const DIFF: usize = 80;
const SLOT: usize = 84;

/// The reset's frame is built here, one slot per CPU (the uplink's programs have no
/// stack to spare for it).
#[map(name = "RESET")]
static RESET: PerCpuArray<[u8; SLOT]> = PerCpuArray::with_max_entries(1, 0);

/// Answers an IPv4 segment that has no flow; the TC action (the segment dropped and
/// counted either way). A BPF subprogram that reads what it needs from the packet
/// itself: a parsed packet passed by reference would have to sit in the uplink egress
/// program's frame, which has no room for it (Linux 6.1 allows 512 bytes for a call
/// chain).
#[inline(never)]
pub fn answer4(ctx: &TcContext, st: Stats) -> i32 {
    let shot = TC_ACT_SHOT as i32;
    let Some(f) = segment(ctx, st, FRAME4) else {
        return shot;
    };
    let ip = ETH_HLEN;
    let l4 = ip + IPV4_MIN_HLEN;
    // No options, TCP, not a reset.
    if get16(f, 12) != 0x0800 || f[ip] != 0x45 || f[ip + 9] != IPPROTO_TCP {
        return shot;
    }
    let Some(payload) = payload(get16(f, ip + 2) as usize - IPV4_MIN_HLEN, f, l4) else {
        return shot;
    };
    let Some(ep) = maps::endpoint(u32::from_ne_bytes([
        f[ip + 12],
        f[ip + 13],
        f[ip + 14],
        f[ip + 15],
    ])) else {
        return shot;
    };
    ethernet(f, &ep);
    let Some(tcp_sum) = tcp(f, l4, payload) else {
        return shot;
    };
    put16(f, ip + 2, (IPV4_MIN_HLEN + TCP_HLEN) as u16);
    put16(f, ip + 4, 0);
    put16(f, ip + 6, 0x4000); // Don't fragment.
    f[ip + 1] = 0;
    f[ip + 8] = TTL;
    put16(f, ip + 10, 0);
    swap(f, ip + 12, 4);
    let header = sum(f, ip, IPV4_MIN_HLEN);
    put16(f, ip + 10, !fold(header));
    // The pseudo-header: the addresses, the protocol, the TCP length.
    let pseudo = sum(f, ip + 12, 8) + IPPROTO_TCP as u32 + TCP_HLEN as u32;
    let diff = checksum(f, l4, pseudo, tcp_sum);
    f[DIFF..DIFF + 4].copy_from_slice(&diff.to_ne_bytes());
    send(ctx, FRAME4, l4)
}

/// Answers an IPv6 segment that has no flow, as [`answer4`].
#[inline(never)]
pub fn answer6(ctx: &TcContext, st: Stats) -> i32 {
    let shot = TC_ACT_SHOT as i32;
    let Some(f) = segment(ctx, st, FRAME6) else {
        return shot;
    };
    let ip = ETH_HLEN;
    let l4 = ip + IPV6_HLEN;
    // TCP right after the fixed header (no extension header), not a reset.
    if get16(f, 12) != 0x86dd || f[ip] >> 4 != 6 || f[ip + 6] != IPPROTO_TCP {
        return shot;
    }
    let Some(payload) = payload(get16(f, ip + 4) as usize, f, l4) else {
        return shot;
    };
    let src = ip + 8;
    let saddr: Addr6 = core::array::from_fn(|i| {
        let at = src + 4 * i;
        u32::from_ne_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]])
    });
    let Some(ep) = maps::endpoint6(&saddr) else {
        return shot;
    };
    ethernet(f, &ep);
    let Some(tcp_sum) = tcp(f, l4, payload) else {
        return shot;
    };
    f[ip..ip + 4].copy_from_slice(&[0x60, 0, 0, 0]);
    put16(f, ip + 4, TCP_HLEN as u16);
    f[ip + 7] = TTL;
    swap(f, src, 16);
    let pseudo = sum(f, src, 32) + IPPROTO_TCP as u32 + TCP_HLEN as u32;
    let diff = checksum(f, l4, pseudo, tcp_sum);
    f[DIFF..DIFF + 4].copy_from_slice(&diff.to_ne_bytes());
    send(ctx, FRAME6, l4)
}

/// The segment counted as dropped (`tcp_no_flow`, whether it is answered or not),
/// and its frame's first `len` bytes in this CPU's slot; `None` for a shorter frame.
#[inline(always)]
fn segment(ctx: &TcContext, st: Stats, len: usize) -> Option<&'static mut [u8; SLOT]> {
    st.drop(DropReason::TcpNoFlow);
    let f = frame()?;
    let rc = unsafe {
        bpf_skb_load_bytes(
            ctx.as_ptr(),
            0,
            f.as_mut_ptr() as *mut core::ffi::c_void,
            len as u32,
        )
    };
    (rc == 0).then_some(f)
}

/// The payload's length of a TCP segment of `len` bytes (header included) whose
/// header is at `at`; `None` for a header no TCP sends (a data offset under 5 words,
/// or past the segment's end), which gets no answer.
#[inline(always)]
fn payload(len: usize, f: &[u8; SLOT], at: usize) -> Option<u32> {
    let hlen = (f[at + 12] >> 4) as usize * 4;
    (TCP_HLEN <= hlen && hlen <= len).then(|| (len - hlen) as u32)
}

/// Swaps the `n`-byte source and destination addresses at `at` (the destination right
/// after the source).
#[inline(always)]
fn swap(f: &mut [u8; SLOT], at: usize, n: usize) {
    for i in 0..n {
        f.swap(at + i, at + n + i);
    }
}

/// This CPU's frame slot.
#[inline(always)]
fn frame() -> Option<&'static mut [u8; SLOT]> {
    RESET.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// To the container's MAC from the bridge's, as the lab host routes to it (the
/// ethertype stays); its veth's ifindex kept in the slot.
#[inline(always)]
fn ethernet(f: &mut [u8; SLOT], ep: &Endpoint) {
    // Byte by byte (`words::mac`): a slice copy is a call of bpf-linker's `memmove`,
    // whose frame 6.1 adds to the chain.
    let p = f.as_mut_ptr();
    words::mac(unsafe { &mut *(p as *mut [u8; 6]) }, &ep.mac);
    let bridge = &maps::config().bridge_mac;
    words::mac(unsafe { &mut *(p.add(6) as *mut [u8; 6]) }, bridge);
    f[IFINDEX..IFINDEX + 4].copy_from_slice(&ep.ifindex.to_ne_bytes());
}

/// The segment's TCP header at `at` (with `payload` bytes after it) made the reset's,
/// its checksum 0: ports swapped; a segment with ACK answered at its acknowledgment
/// number, one without acknowledged up to its end (SYN and FIN count one); the
/// header's sum. `None` for a reset, which is never answered, and for flags no TCP sends (none, SYN with
/// FIN, ...), which nf_conntrack calls invalid.
#[inline(always)]
fn tcp(f: &mut [u8; SLOT], at: usize, payload: u32) -> Option<u32> {
    let flags = f[at + 13];
    if flags & TCP_RST != 0 || !tcp_flags_valid(flags) {
        return None;
    }
    let ports = get16(f, at) as u32 + get16(f, at + 2) as u32;
    let seq = u32::from_be_bytes([f[at + 4], f[at + 5], f[at + 6], f[at + 7]]);
    let ack = u32::from_be_bytes([f[at + 8], f[at + 9], f[at + 10], f[at + 11]]);
    let (seq, ack, out) = if flags & TCP_ACK != 0 {
        (ack, 0, TCP_RST)
    } else {
        let len = payload + (flags & TCP_SYN != 0) as u32 + (flags & TCP_FIN != 0) as u32;
        (0, seq.wrapping_add(len), TCP_RST | TCP_ACK)
    };
    swap(f, at, 2);
    f[at + 4..at + 8].copy_from_slice(&seq.to_be_bytes());
    f[at + 8..at + 12].copy_from_slice(&ack.to_be_bytes());
    f[at + 12] = (TCP_HLEN as u8 / 4) << 4;
    f[at + 13] = out;
    put16(f, at + 14, 0);
    put16(f, at + 16, 0);
    put16(f, at + 18, 0);
    // The header's sum (its checksum 0), from the values written rather than read back.
    let words = |v: u32| (v >> 16) + (v & 0xffff);
    Some(ports + words(seq) + words(ack) + (((TCP_HLEN as u32 / 4) << 12) | out as u32))
}

/// The TCP checksum field at `l4` (0 until now) given the pseudo-header's and the TCP
/// header's sums, as the
/// segment's skb needs it: the skb keeps the segment's checksum state, and a
/// container's segments are mostly CHECKSUM_PARTIAL, whose field holds the
/// pseudo-header's sum alone for the device (or the kernel, where the device cannot) to
/// finish. So the field gets that sum, and the returned difference is what
/// `bpf_l4_csum_replace` adds to it for an skb that is not CHECKSUM_PARTIAL (for one
/// that is, the helper leaves the field as it is): the checksum whole.
#[inline(always)]
fn checksum(f: &mut [u8; SLOT], l4: usize, pseudo: u32, header: u32) -> u32 {
    let p = fold(pseudo) as u32;
    let header = fold(header) as u32;
    put16(f, l4 + 16, p as u16);
    // The helper makes the field ~(diff + ~field): for ~(pseudo + header), diff is
    // pseudo + header + field, the field being the pseudo-header's sum.
    fold(2 * p + header) as u32
}

/// The frame made `len` bytes long and written, its TCP checksum at `l4` finished with
/// the difference in the slot (see [`checksum`]), to the container whose veth's ifindex
/// the slot holds; the TC action.
#[inline(always)]
fn send(ctx: &TcContext, len: usize, l4: usize) -> i32 {
    let shot = TC_ACT_SHOT as i32;
    if unsafe { bpf_skb_change_tail(ctx.as_ptr() as *mut _, len as u32, 0) } != 0 {
        return shot;
    }
    let Some(f) = frame() else {
        return shot;
    };
    // A CHECKSUM_COMPLETE skb's sum follows the bytes written.
    let flags = BPF_F_RECOMPUTE_CSUM as u64;
    let written = if len == FRAME4 {
        ctx.store(0, unsafe { &*(f.as_ptr() as *const [u8; FRAME4]) }, flags)
    } else {
        ctx.store(0, unsafe { &*(f.as_ptr() as *const [u8; FRAME6]) }, flags)
    };
    if written.is_err() {
        return shot;
    }
    let Some(f) = frame() else {
        return shot;
    };
    let diff = u32::from_ne_bytes([f[DIFF], f[DIFF + 1], f[DIFF + 2], f[DIFF + 3]]);
    let ifindex = u32::from_ne_bytes([f[IFINDEX], f[IFINDEX + 1], f[IFINDEX + 2], f[IFINDEX + 3]]);
    // Size 0: the difference is added as such, in the packet's byte order as the field
    // is read.
    let raw = (diff as u16).to_be() as u64;
    if ctx.l4_csum_replace(l4 + 16, 0, raw, 0).is_err() {
        return shot;
    }
    if let Some(st) = Stats::get() {
        st.count(counter::TCP_RESETS_SENT);
    }
    (unsafe { bpf_redirect(ifindex, 0) }) as i32
}

#[inline(always)]
fn put16(f: &mut [u8; SLOT], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
fn get16(f: &[u8; SLOT], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

/// The sum of `len` bytes at `at` as 16-bit big-endian words (unfolded).
#[inline(always)]
fn sum(f: &[u8; SLOT], at: usize, len: usize) -> u32 {
    let mut s = 0u32;
    let mut i = 0;
    while i < len {
        s += u16::from_be_bytes([f[at + i], f[at + i + 1]]) as u32;
        i += 2;
    }
    s
}

/// A 32-bit sum folded to 16 bits.
#[inline(always)]
fn fold(s: u32) -> u16 {
    let s = (s & 0xffff) + (s >> 16);
    ((s & 0xffff) + (s >> 16)) as u16
}
