//! The conntrack census: the tables counted in the kernel, so that `status` and
//! `metrics` need not copy a million flows out of it to count them.
//!
//! The `census` program walks both conntrack tables with `bpf_for_each_map_elem` when
//! userspace runs it (BPF_PROG_TEST_RUN), and hands back a [`Census`] in the packet it
//! was given. It counts what `netlab conntrack` lists: each flow once, from the entry of
//! the direction that opened it, leaving out halves, flows of a withdrawn mapping and
//! flows past their timeout both ways.

/// What the first byte of the packet asks for: both tables, or the LRU table only
/// (`status`, which counts `CT` by the programs' counters).
pub const WALK_BOTH: u8 = 0;
pub const WALK_PENDING: u8 = 1;

/// `flows` slots: a TCP flow by its state (0..[`TCP_SLOTS`]), then one for the other
/// protocols each.
pub const TCP_SLOTS: usize = 16;
pub const SLOT_UDP: usize = TCP_SLOTS;
pub const SLOT_ICMP: usize = TCP_SLOTS + 1;
pub const SLOT_OTHER: usize = TCP_SLOTS + 2;
pub const SLOTS: usize = 20;

/// Tables counted: `CT` (established) and `CT_PENDING`.
pub const TABLES: usize = 2;
pub const TABLE_ESTABLISHED: usize = 0;
pub const TABLE_PENDING: usize = 1;

/// Half-open TCP flows (SYN_SENT, SYN_RECV) by age: below each bound (seconds), then
/// the rest.
pub const HALF_OPEN_BOUNDS: [u32; 3] = [1, 10, 30];
pub const HALF_OPEN_AGES: usize = HALF_OPEN_BOUNDS.len() + 1;

/// NAT port protocols: TCP, UDP, ICMP (echo identifiers).
pub const NAT_PROTOS: usize = 3;

/// What one census found.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Census {
    /// Entries each table holds (two per flow, halves and dead flows included).
    pub entries: [u32; TABLES],
    /// Flows by table and slot (protocol, and TCP state).
    pub flows: [[u32; SLOTS]; TABLES],
    /// Half-open TCP flows by age.
    pub half_open: [u32; HALF_OPEN_AGES],
    /// Distinct NAT source ports held by masqueraded flows, by protocol.
    pub nat_ports: [u32; NAT_PROTOS],
    /// 1 once the program has filled it in.
    pub done: u32,
}
const _: () = assert!(
    core::mem::size_of::<Census>()
        == 4 * (TABLES + TABLES * SLOTS + HALF_OPEN_AGES + NAT_PROTOS + 1)
);

/// The age bucket of a flow `age` seconds old.
pub const fn age_bucket(age: u32) -> usize {
    let mut i = 0;
    while i < HALF_OPEN_BOUNDS.len() {
        if age < HALF_OPEN_BOUNDS[i] {
            return i;
        }
        i += 1;
    }
    HALF_OPEN_BOUNDS.len()
}

/// Bits of the NAT port bitmap: one per port of a protocol.
pub const PORT_WORDS: usize = 65536 / 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_fall_in_their_buckets() {
        assert_eq!(age_bucket(0), 0);
        assert_eq!(age_bucket(1), 1);
        assert_eq!(age_bucket(9), 1);
        assert_eq!(age_bucket(10), 2);
        assert_eq!(age_bucket(29), 2);
        assert_eq!(age_bucket(30), 3);
        assert_eq!(age_bucket(u32::MAX), 3);
    }
}
