//! Header parsing: the only module that reads packet bytes to decide. The outer headers
//! are read in place (direct packet access, after `bpf_skb_pull_data` when the headers
//! are not in the linear part); the header quoted inside an ICMP error is read with
//! `bpf_skb_load_bytes`. Everything else works on the [`Packet`] summary.
//!
//! Every length is checked against the frame and against the IPv4 total length, so a
//! malformed frame is dropped with a counted reason, never half-translated.

use aya_ebpf::{
    EbpfContext as _,
    helpers::generated::{bpf_loop, bpf_skb_load_bytes},
    macros::map,
    maps::PerCpuArray,
    programs::TcContext,
};
use netlab_common::{
    proto::{
        ETH_HLEN, ETH_P_IP, ICMP_DEST_UNREACH, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST,
        ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED, IP_MF, IP_OFFSET, IPPROTO_ICMP, IPPROTO_TCP,
        IPPROTO_UDP, IPV4_MIN_HLEN, TCP_FIN, TCP_SYN,
    },
    stats::DropReason,
};

/// The IPv4 header as it is on the wire.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv4Hdr {
    pub vihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub check: u16,
    pub saddr: u32,
    pub daddr: u32,
}

/// The VLAN tags' ethertypes: 802.1Q and 802.1ad.
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// Whether a frame of `ethertype` (network order) holds, after its MAC addresses, a
/// VLAN tag of VLAN id 0: a priority tag. Before the programs, the kernel takes a
/// frame's outer tag into the skb; after them, it strips a priority tag still in the
/// frame and takes the packet inside as the interface's own, untagged, past every
/// check of the programs (a tag with a VLAN id goes to that VLAN's device, or nowhere).
#[inline(always)]
pub fn priority_tagged(ctx: &TcContext, ethertype: u16) -> bool {
    if ethertype != ETH_P_8021Q.to_be() && ethertype != ETH_P_8021AD.to_be() {
        return false;
    }
    ctx.load::<u16>(ETH_HLEN)
        .is_ok_and(|tci| u16::from_be(tci) & 0x0fff == 0)
}

/// The frame's ethertype (network order), 0 for a runt.
#[inline(always)]
pub fn ethertype(ctx: &TcContext) -> u16 {
    ctx.load::<u16>(12).unwrap_or(0)
}

pub const IP_TTL_OFF: usize = 8;
pub const IP_CHECK_OFF: usize = 10;
pub const IP_SADDR_OFF: usize = 12;
pub const IP_DADDR_OFF: usize = 16;

/// The most header bytes the outer parse reads: Ethernet, IPv4 with options, 20 bytes
/// of L4 header.
const MAX_HEADERS: usize = ETH_HLEN + 60 + 20;

/// What the datapath knows about a packet. Addresses and ports are raw (network order).
#[derive(Clone, Copy)]
pub struct Packet<A = u32> {
    pub l3_off: usize,
    pub l4_off: usize,
    pub proto: u8,
    pub saddr: A,
    pub daddr: A,
    /// Ports, or the echo identifier in both for ICMP echo.
    pub sport: u16,
    pub dport: u16,
    /// TCP flags, or the ICMP type.
    pub flags: u8,
    /// TCP: the window scale option of a SYN ([`NO_WSCALE`] without one).
    pub wscale: u8,
    /// TTL, or IPv6's hop limit.
    pub ttl: u8,
    /// The IPv4 header checksum, raw (0 for IPv6, which has none).
    pub ip_check: u16,
    pub kind: Kind,
    /// The datagram's identification, which its fragments are remembered by (network
    /// order): IPv4's 16-bit header field, or the 32 bits of IPv6's fragment header.
    pub ip_id: u32,
    /// The protocol a fragment's datagram is remembered by: IPv4's, or for IPv6 the
    /// one its fragment header names next (which every fragment carries, where the
    /// first fragment's L4 header may sit behind more extension headers).
    pub frag_proto: u8,
    /// Whether this is the first fragment of a fragmented datagram.
    pub first_fragment: bool,
    /// Length of the whole frame, for byte counters.
    pub len: u32,
    /// One past the datagram's last byte (`l3_off` + total length): what lies beyond
    /// (padding) is not part of the packet, nor of a quote in it.
    pub end: usize,
    /// TCP, host byte order: sequence and acknowledgment numbers, and the window as it
    /// is in the header (unscaled).
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    /// TCP: one past the segment's last sequence number (SYN and FIN count one).
    pub seq_end: u32,
    /// The IP header and the TCP or UDP header: what each segment of a GSO packet
    /// carries besides its share of the payload.
    pub hdr_len: u16,
}

/// [`Packet::wscale`] of a segment without the window scale option.
pub const NO_WSCALE: u8 = 0xff;
/// The largest window scale TCP allows (RFC 7323); a larger one is taken as 14.
const MAX_WSCALE: u8 = 14;
/// The most bytes of TCP options a header can carry.
const MAX_OPTIONS: usize = 40;

/// What sort of L4 payload the packet carries, as far as NAT is concerned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TCP, UDP or ICMP echo: has a port-like tuple.
    Flow,
    /// ICMP destination unreachable or time exceeded: carries the header of another packet.
    IcmpError,
    /// A fragment after the first: no L4 header here.
    Fragment,
    /// Anything else (other protocols, other ICMP types).
    Other,
}

/// The frame's first `need` bytes as a directly readable range `(data, data_end)`,
/// pulling them into the linear part when they are not there.
#[inline(always)]
pub fn linear(ctx: &TcContext, need: usize) -> Result<(usize, usize), DropReason> {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + need <= end {
        return Ok((data, end));
    }
    let want = if (ctx.len() as usize) < MAX_HEADERS {
        ctx.len()
    } else {
        MAX_HEADERS as u32
    };
    ctx.pull_data(want).map_err(|_| DropReason::Truncated)?;
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + need > end {
        return Err(DropReason::Truncated);
    }
    Ok((data, end))
}

/// The source address of an IPv4 frame whose headers are in the linear part, without
/// any other check (`None` otherwise: the full parse decides).
#[inline(always)]
pub fn ipv4_saddr(ctx: &TcContext) -> Option<u32> {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + ETH_HLEN + IPV4_MIN_HLEN > end {
        return None;
    }
    let ethertype = unsafe { *((data + 12) as *const u16) };
    (ethertype == ETH_P_IP.to_be())
        .then(|| unsafe { *((data + ETH_HLEN + IP_SADDR_OFF) as *const u32) })
}

/// The protocol of an IPv4 frame whose headers are in the linear part (`None`
/// otherwise).
#[inline(always)]
pub fn ipv4_proto(ctx: &TcContext) -> Option<u8> {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + ETH_HLEN + IPV4_MIN_HLEN > end {
        return None;
    }
    let ethertype = unsafe { *((data + 12) as *const u16) };
    (ethertype == ETH_P_IP.to_be()).then(|| unsafe { *((data + ETH_HLEN + 9) as *const u8) })
}

/// The destination address of an IPv4 frame whose headers are in the linear part
/// (`None` otherwise).
#[inline(always)]
pub fn ipv4_daddr(ctx: &TcContext) -> Option<u32> {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + ETH_HLEN + IPV4_MIN_HLEN > end {
        return None;
    }
    let ethertype = unsafe { *((data + 12) as *const u16) };
    (ethertype == ETH_P_IP.to_be())
        .then(|| unsafe { *((data + ETH_HLEN + IP_DADDR_OFF) as *const u32) })
}

/// Whether the frame is an IPv4 packet whose header checksum does not hold, options
/// included: the host's `ip_rcv` drops such a packet before anything else of the stack
/// (netfilter included) sees it, after checking only its version and header length. A
/// frame this cannot judge (not IPv4, a version or header length `ip_rcv` refuses
/// first, a header cut short) is not called bad: [`ipv4`] decides on it.
#[inline(always)]
pub fn ipv4_checksum_bad(ctx: &TcContext) -> bool {
    header_sum(ctx) != 0xffff
}

/// The folded one's complement sum of the frame's IPv4 header as 32-bit words: 0xffff
/// when its checksum holds (in either byte order), or when there is no header to
/// judge. A BPF subprogram, in straight-line code: its ways (options or none) return
/// to one state of the caller's, where inlined each would be verified through the
/// rest of the program (and a loop over the words, once per header length: past a
/// million instructions for the uplink's ingress).
#[inline(never)]
fn header_sum(ctx: &TcContext) -> u32 {
    // The ethertype first, as [`ipv4`] reads it: another protocol's frame is not pulled.
    let (data, end) = (ctx.data(), ctx.data_end());
    let ethertype: u16 = if data + ETH_HLEN <= end {
        unsafe { *((data + 12) as *const u16) }
    } else {
        ctx.load(12).unwrap_or(0)
    };
    if ethertype != ETH_P_IP.to_be() {
        return 0xffff;
    }
    let Ok((data, end)) = linear(ctx, ETH_HLEN + IPV4_MIN_HLEN) else {
        return 0xffff;
    };
    if data + ETH_HLEN + IPV4_MIN_HLEN > end {
        return 0xffff;
    }
    let vihl = unsafe { *((data + ETH_HLEN) as *const u8) };
    let ihl = (vihl & 0x0f) as u32 * 4;
    if vihl >> 4 != 4 || ihl < IPV4_MIN_HLEN as u32 {
        return 0xffff;
    }
    let fixed = unsafe { *((data + ETH_HLEN) as *const [u32; 5]) };
    let mut sum: u64 = 0;
    for w in fixed {
        sum += w as u64;
    }
    if ihl > IPV4_MIN_HLEN as u32 {
        let Some(s) = options_sum(ctx, ihl - IPV4_MIN_HLEN as u32) else {
            return 0xffff;
        };
        sum += s;
    }
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u32
}

/// The sum of an IPv4 header's `len` bytes of options (4 to 40, whole words) as 32-bit
/// words: read in one helper call into the per-CPU slot of [`OPTIONS`], whose first 40
/// bytes are zeroed first, and all ten words a header can have summed, the zeros past
/// the options too. Word by word, with volatile accesses: a plain copy or fill of the
/// slot compiles to a call of bpf-linker's `memcpy` or `memset`, one frame more.
#[inline(always)]
fn options_sum(ctx: &TcContext, len: u32) -> Option<u64> {
    let buf = OPTIONS.get_ptr_mut(0)?;
    let words = buf as *mut u64;
    for k in 0..MAX_OPTIONS / 8 {
        unsafe { core::ptr::write_volatile(words.add(k), 0) };
    }
    // Bounded as the verifier sees it (see [`window_scale`]).
    let len = unsafe { core::ptr::read_volatile(&len) };
    let len = (len.wrapping_sub(1) & SLOT_MASK as u32) + 1;
    let at = (ETH_HLEN + IPV4_MIN_HLEN) as u32;
    if unsafe { bpf_skb_load_bytes(ctx.as_ptr(), at, buf as *mut core::ffi::c_void, len) } != 0 {
        return None;
    }
    let words = buf as *const u32;
    let mut sum: u64 = 0;
    for k in 0..MAX_OPTIONS / 4 {
        sum += unsafe { core::ptr::read_volatile(words.add(k)) } as u64;
    }
    Some(sum)
}

/// Parses an IPv4 packet. `Ok(None)` for anything that is not IPv4.
#[inline(always)]
pub fn ipv4(ctx: &TcContext) -> Result<Option<Packet>, DropReason> {
    // The ethertype first: a frame too short for an IPv4 header may be something else,
    // which is not ours to drop. Read directly when the Ethernet header is linear (every
    // real frame); only a runt needs the helper.
    let (data, end) = (ctx.data(), ctx.data_end());
    let ethertype: u16 = if data + ETH_HLEN <= end {
        unsafe { *((data + 12) as *const u16) }
    } else {
        ctx.load(12).map_err(|_| DropReason::Truncated)?
    };
    if ethertype != ETH_P_IP.to_be() {
        return Ok(None);
    }
    let (data, end) = linear(ctx, ETH_HLEN + IPV4_MIN_HLEN)?;
    if data + ETH_HLEN + IPV4_MIN_HLEN > end {
        return Err(DropReason::Truncated);
    }
    let ip = unsafe { *((data + ETH_HLEN) as *const Ipv4Hdr) };
    let ihl = ((ip.vihl & 0x0f) as usize) * 4;
    let tot_len = u16::from_be(ip.tot_len) as usize;
    if ip.vihl >> 4 != 4 || ihl < IPV4_MIN_HLEN || tot_len < ihl {
        return Err(DropReason::BadIpHeader);
    }
    let len = ctx.len();
    if ETH_HLEN + tot_len > len as usize {
        return Err(DropReason::Truncated);
    }
    let frag = u16::from_be(ip.frag_off);
    let mut pkt = Packet {
        l3_off: ETH_HLEN,
        l4_off: ETH_HLEN + ihl,
        proto: ip.proto,
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: 0,
        dport: 0,
        flags: 0,
        ttl: ip.ttl,
        ip_check: ip.check,
        kind: Kind::Other,
        ip_id: ip.id as u32,
        frag_proto: ip.proto,
        first_fragment: frag & IP_MF != 0 && frag & IP_OFFSET == 0,
        len,
        end: ETH_HLEN + tot_len,
        wscale: NO_WSCALE,
        seq: 0,
        ack: 0,
        win: 0,
        seq_end: 0,
        hdr_len: 0,
    };
    if frag & IP_OFFSET != 0 {
        pkt.kind = Kind::Fragment;
        return Ok(Some(pkt));
    }
    // The L4 header must be inside the datagram; a first fragment carries it whole.
    let l4_len = tot_len - ihl;
    match pkt.proto {
        IPPROTO_TCP => {
            let l4 = l4_header::<20>(ctx, &pkt, l4_len)?;
            pkt.sport = unsafe { *(l4 as *const u16) };
            pkt.dport = unsafe { *((l4 + 2) as *const u16) };
            pkt.seq = u32::from_be(unsafe { *((l4 + 4) as *const u32) });
            pkt.ack = u32::from_be(unsafe { *((l4 + 8) as *const u32) });
            let doff = ((unsafe { *((l4 + 12) as *const u8) } >> 4) as usize) * 4;
            pkt.flags = unsafe { *((l4 + 13) as *const u8) };
            pkt.win = u16::from_be(unsafe { *((l4 + 14) as *const u16) });
            pkt.kind = Kind::Flow;
            let payload = if doff >= 20 && doff <= l4_len {
                l4_len - doff
            } else {
                0
            };
            let syn_fin = (pkt.flags & TCP_SYN != 0) as u32 + (pkt.flags & TCP_FIN != 0) as u32;
            pkt.seq_end = pkt.seq.wrapping_add(payload as u32 + syn_fin);
            pkt.hdr_len = (ihl + if doff >= 20 { doff } else { 20 }) as u16;
            if pkt.flags & TCP_SYN != 0 && doff > 20 && doff <= l4_len {
                pkt.wscale = window_scale(ctx, pkt.l4_off + 20, doff - 20);
            }
        }
        IPPROTO_UDP => {
            let l4 = l4_header::<8>(ctx, &pkt, l4_len)?;
            pkt.sport = unsafe { *(l4 as *const u16) };
            pkt.dport = unsafe { *((l4 + 2) as *const u16) };
            pkt.kind = Kind::Flow;
            pkt.hdr_len = (ihl + 8) as u16;
        }
        IPPROTO_ICMP => {
            let l4 = l4_header::<8>(ctx, &pkt, l4_len)?;
            let icmp_type = unsafe { *(l4 as *const u8) };
            pkt.flags = icmp_type;
            match icmp_type {
                ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY => {
                    let id = unsafe { *((l4 + 4) as *const u16) };
                    pkt.sport = id;
                    pkt.dport = id;
                    pkt.kind = Kind::Flow;
                }
                ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
                    if !pkt.first_fragment =>
                {
                    pkt.kind = Kind::IcmpError;
                }
                _ => {}
            }
        }
        _ => {}
    }
    Ok(Some(pkt))
}

/// The window scale option among the `len` bytes of TCP options at `at` (a SYN's),
/// [`NO_WSCALE`] when there is none or the options cannot be read.
#[inline(always)]
pub fn window_scale(ctx: &TcContext, at: usize, len: usize) -> u8 {
    // In a per-CPU slot rather than on the stack: the uplink's program is within a few
    // bytes of the verifier's 512 with its debug logs on. The slot is larger than the
    // options can be, so that every index, masked, stays inside it.
    let Some(buf) = OPTIONS.get_ptr_mut(0) else {
        return NO_WSCALE;
    };
    let mut scan = OptionScan {
        at: 0,
        len: len as u32,
        scale: NO_WSCALE,
    };
    // The length as the verifier bounds it by itself, 1 to the slot's size: the same
    // number as the caller's 1 to 40, but 6.1's verifier does not carry the caller's
    // checks across a copy spilled to the stack. Read back through memory, so that
    // the compiler cannot fold the mask away as implied by those checks.
    let len = unsafe { core::ptr::read_volatile(&scan.len) };
    let len = (len.wrapping_sub(1) & SLOT_MASK as u32) + 1;
    // The helper itself (aya's `load_bytes` shortens the length to what the frame holds,
    // which may be 0).
    if unsafe { bpf_skb_load_bytes(ctx.as_ptr(), at as u32, buf as *mut core::ffi::c_void, len) }
        != 0
    {
        return NO_WSCALE;
    }
    scan.len = len;
    // One option a step, in a `bpf_loop` callback that the verifier checks once: a
    // loop here would be walked again for every path into it (over a million
    // instructions on 6.1's verifier).
    unsafe {
        bpf_loop(
            MAX_OPTIONS as u32,
            option_step as *const () as *mut core::ffi::c_void,
            &mut scan as *mut OptionScan as *mut core::ffi::c_void,
            0,
        );
    }
    scan.scale
}

/// Where the scan of a SYN's options is.
#[repr(C)]
struct OptionScan {
    /// Offset of the next option, and the options' length.
    at: u32,
    len: u32,
    /// The window scale found ([`NO_WSCALE`] while none is).
    scale: u8,
}

/// One option: the window scale (found: stop), the end (stop), another (skip it).
/// Returns 1 to stop.
extern "C" fn option_step(_n: u64, scan: *mut OptionScan) -> i64 {
    let scan = unsafe { &mut *scan };
    let Some(buf) = OPTIONS.get(0) else {
        return 1;
    };
    // Every index masked into the slot, behind a volatile read so that LLVM cannot
    // drop the mask for a bound it proved itself (older verifiers lose that bound).
    let at = |k: u32| (unsafe { core::ptr::read_volatile(&k) } as usize) & SLOT_MASK;
    let (i, len) = (scan.at, scan.len);
    if i >= len {
        return 1;
    }
    let kind = buf[at(i)];
    if kind == TCPOPT_EOL {
        return 1;
    }
    if kind == TCPOPT_NOP {
        scan.at = i + 1;
        return 0;
    }
    if i + 1 >= len {
        return 1;
    }
    let optlen = buf[at(i + 1)] as u32;
    if kind == TCPOPT_WSCALE && optlen == 3 {
        if i + 2 < len {
            let s = buf[at(i + 2)];
            scan.scale = if s > MAX_WSCALE { MAX_WSCALE } else { s };
        }
        return 1;
    }
    if optlen < 2 {
        return 1;
    }
    scan.at = i + optlen;
    0
}

/// [`OPTIONS`]' slot: a power of two above [`MAX_OPTIONS`].
const SLOT: usize = 64;
const SLOT_MASK: usize = SLOT - 1;

/// A SYN's TCP options, or an IPv4 header's, read in one helper call, one slot per CPU.
#[map(name = "TCP_OPTIONS")]
static OPTIONS: PerCpuArray<[u8; SLOT]> = PerCpuArray::with_max_entries(1, 0);

const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_WSCALE: u8 = 3;

/// The address of the first `N` bytes of the L4 header, readable in place: they must
/// be inside the datagram (`l4_len` bytes after the IPv4 header) and in the frame. A
/// constant `N` keeps the bounds check one the verifier can follow.
#[inline(always)]
fn l4_header<const N: usize>(
    ctx: &TcContext,
    pkt: &Packet,
    l4_len: usize,
) -> Result<usize, DropReason> {
    if l4_len < N {
        return Err(DropReason::Truncated);
    }
    let (data, end) = linear(ctx, pkt.l4_off + N)?;
    let l4 = data + pkt.l4_off;
    if l4 + N > end {
        return Err(DropReason::Truncated);
    }
    Ok(l4)
}

/// The packet quoted inside an ICMP error: its IPv4 header starts 8 bytes into the ICMP
/// message, followed by at least 8 bytes of its L4 header. Only flows the datapath
/// tracks (TCP, UDP, ICMP echo), quoted whole enough to translate (inside the outer
/// datagram), are returned.
#[inline(always)]
pub fn icmp_inner(ctx: &TcContext, outer: &Packet) -> Result<Option<Packet>, DropReason> {
    let l3_off = outer.l4_off + 8;
    if l3_off + IPV4_MIN_HLEN > outer.end {
        return Err(DropReason::Truncated);
    }
    let ip: Ipv4Hdr = ctx.load(l3_off).map_err(|_| DropReason::Truncated)?;
    let ihl = ((ip.vihl & 0x0f) as usize) * 4;
    if ip.vihl >> 4 != 4 || ihl < IPV4_MIN_HLEN {
        return Err(DropReason::BadIpHeader);
    }
    // A quoted fragment after the first has no ports.
    if u16::from_be(ip.frag_off) & IP_OFFSET != 0 {
        return Ok(None);
    }
    let mut inner = Packet {
        l3_off,
        l4_off: l3_off + ihl,
        proto: ip.proto,
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: 0,
        dport: 0,
        flags: 0,
        ttl: ip.ttl,
        ip_check: ip.check,
        kind: Kind::Other,
        ip_id: ip.id as u32,
        frag_proto: ip.proto,
        first_fragment: false,
        len: 0,
        end: outer.end,
        wscale: NO_WSCALE,
        seq: 0,
        ack: 0,
        win: 0,
        seq_end: 0,
        hdr_len: 0,
    };
    match inner.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            if inner.l4_off + 4 > inner.end {
                return Err(DropReason::Truncated);
            }
            let ports: [u16; 2] = ctx.load(inner.l4_off).map_err(|_| DropReason::Truncated)?;
            inner.sport = ports[0];
            inner.dport = ports[1];
            inner.kind = Kind::Flow;
        }
        IPPROTO_ICMP => {
            if inner.l4_off + 8 > inner.end {
                return Err(DropReason::Truncated);
            }
            let head: [u16; 4] = ctx.load(inner.l4_off).map_err(|_| DropReason::Truncated)?;
            let icmp_type = head[0].to_ne_bytes()[0];
            if icmp_type == ICMP_ECHO_REQUEST || icmp_type == ICMP_ECHO_REPLY {
                inner.sport = head[2];
                inner.dport = head[2];
                inner.flags = icmp_type;
                inner.kind = Kind::Flow;
            }
        }
        _ => {}
    }
    Ok((inner.kind == Kind::Flow).then_some(inner))
}
