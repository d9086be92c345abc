//! SNAT port-range arithmetic.

/// How many ports the datapath tries for one new flow before it gives up and counts
/// `PortsExhausted`. Bounded so the verifier can see the loop end.
pub const SNAT_RETRIES: u32 = 32;

/// The `attempt`-th candidate port (host byte order) for a new flow: linear probing from
/// a random start inside `[min, max]`. With a range no larger than [`SNAT_RETRIES`] every
/// port is tried, so exhaustion of a small range is exact.
pub const fn candidate_port(min: u16, max: u16, start: u32, attempt: u32) -> u16 {
    let span = range_len(min, max);
    (min as u32 + (start.wrapping_add(attempt)) % span) as u16
}

/// Number of ports in the inclusive range; a reversed range counts as one port.
pub const fn range_len(min: u16, max: u16) -> u32 {
    if max < min { 1 } else { (max - min) as u32 + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_stay_in_range_and_wrap() {
        for attempt in 0..100 {
            let p = candidate_port(20_000, 29_999, u32::MAX - 3, attempt);
            assert!((20_000..=29_999).contains(&p));
        }
        assert_eq!(candidate_port(20_000, 20_001, 0, 0), 20_000);
        assert_eq!(candidate_port(20_000, 20_001, 0, 1), 20_001);
        assert_eq!(candidate_port(20_000, 20_001, 0, 2), 20_000);
    }

    #[test]
    fn small_range_is_fully_probed() {
        let mut seen = [false; 4];
        for attempt in 0..SNAT_RETRIES {
            seen[(candidate_port(100, 103, 7, attempt) - 100) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn range_len_handles_edges() {
        assert_eq!(range_len(1, 65_535), 65_535);
        assert_eq!(range_len(5, 5), 1);
        assert_eq!(range_len(6, 5), 1);
    }
}

/// Incremental Internet checksum update (RFC 1624, eqn. 3) for one 16-bit word changing
/// from `old` to `new`. Works on raw (network order) values as read from the packet: the
/// one's-complement sum does not depend on byte order as long as every operand shares it.
pub const fn csum_replace2(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check as u32) + (!old as u32) + new as u32;
    !fold(sum)
}

/// [`csum_replace2`] for a 32-bit field (an IPv4 address), as two 16-bit words.
pub const fn csum_replace4(check: u16, old: u32, new: u32) -> u16 {
    let c = csum_replace2(check, old as u16, new as u16);
    csum_replace2(c, (old >> 16) as u16, (new >> 16) as u16)
}

const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

#[cfg(test)]
mod csum_tests {
    use super::*;

    /// Full checksum over 16-bit big-endian words, the independent oracle.
    fn full(words: &[u16]) -> u16 {
        let mut sum: u32 = words.iter().map(|w| *w as u32).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn incremental_matches_full_recompute() {
        let mut words = [
            0x4500u16, 0x0073, 0x0000, 0x4000, 0x4011, 0x0000, 0xc0a8, 0x0001, 0xc0a8, 0x00c7,
        ];
        let check = full(&words);
        words[6] = 0xac12;
        words[7] = 0x0002;
        let old = (0x0001u32 << 16) | 0xc0a8;
        let new = (0x0002u32 << 16) | 0xac12;
        assert_eq!(csum_replace4(check, old, new), full(&words));
        let before = full(&words);
        words[3] = 0xbeef;
        assert_eq!(csum_replace2(before, 0x4000, 0xbeef), full(&words));
    }
}
