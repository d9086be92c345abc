//! Counting a lab's conntrack tables in the kernel: runs its pinned `census` program
//! (BPF_PROG_TEST_RUN) and reads the [`Census`] it writes into the packet. A walk of
//! a million flows there takes a fraction of copying them out (`batch`).

use aya::{
    TestRun as _,
    programs::{SchedClassifier, TestRunOptions},
};
use netlab_common::{
    census::{Census, SLOT_ICMP, SLOT_OTHER, SLOT_UDP, TABLE_PENDING, TCP_SLOTS},
    conntrack::tcp_state_name,
};

use super::pins;
use crate::{
    datapath::{FlowCensus, FlowKind, TableInfo},
    error::{Error, Result},
};

/// The census program's pin in the lab's directory.
pub const PROG_PIN: &str = "census_prog";

/// The census of a running lab, of both tables or the LRU table only (`walk`:
/// `WALK_BOTH`, `WALK_PENDING`); `None` when its pins have no census program (a lab
/// made by a netlab before it), whose tables are then read whole.
pub fn take(lab: &str, walk: u8) -> Result<Option<Census>> {
    let pin = pins::dir(lab).join(PROG_PIN);
    if !pin.exists() {
        return Ok(None);
    }
    let prog = SchedClassifier::from_pin(&pin)
        .map_err(|e| Error::ebpf("open pinned program", format!("{PROG_PIN}: {e}")))?;
    // The program writes the census over the frame's first bytes; room for it and an
    // Ethernet header at least.
    let size = size_of::<Census>().max(64);
    let mut frame = vec![0u8; size];
    frame[0] = walk;
    let mut out = vec![0u8; size];
    let rc = prog
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .map_err(|e| Error::ebpf("count conntrack", e))?
        .return_value;
    let census: Census = bytemuck::pod_read_unaligned(&out[..size_of::<Census>()]);
    if rc != 0 || census.done != 1 {
        return Err(Error::ebpf(
            "count conntrack",
            format!("the census program returned {rc}"),
        ));
    }
    Ok(Some(census))
}

/// A census as `metrics` shows it (table and state named as `netlab conntrack` names
/// them), with the lab's `tables`.
pub fn flows(tables: Vec<TableInfo>, c: &Census) -> FlowCensus {
    let mut kinds: std::collections::BTreeMap<(&'static str, &'static str, &'static str), u64> =
        Default::default();
    for (t, slots) in c.flows.iter().enumerate() {
        let table = if t == TABLE_PENDING {
            "pending"
        } else {
            "confirmed"
        };
        for (slot, &n) in slots.iter().enumerate() {
            let (state, proto) = match slot {
                s if s < TCP_SLOTS => (tcp_state_name(s as u8), "tcp"),
                SLOT_UDP => ("-", "udp"),
                SLOT_ICMP => ("-", "icmp"),
                SLOT_OTHER => ("-", "other"),
                _ => continue,
            };
            if n > 0 {
                // States past the last one all read "NONE".
                *kinds.entry((table, state, proto)).or_default() += n as u64;
            }
        }
    }
    FlowCensus {
        tables,
        flows: kinds
            .into_iter()
            .map(|((table, state, proto), flows)| FlowKind {
                table,
                state,
                proto,
                flows,
            })
            .collect(),
        half_open: c.half_open.map(u64::from),
        nat_ports_in_use: c.nat_ports.iter().map(|&n| n as u64).sum(),
    }
}
