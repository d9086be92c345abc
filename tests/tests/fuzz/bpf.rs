//! The real datapath object, loaded with the smallest conntrack tables (so that
//! dumping them after every frame stays cheap) once per configuration the cases use
//! (the programs read it as a read-only global), and reset between cases: its programs
//! run on frames with BPF_PROG_TEST_RUN, its maps are read back.

use std::{collections::HashMap as StdMap, hash::Hash};

use aya::{
    Ebpf, Pod, TestRun as _,
    maps::{Array, HashMap, PerCpuArray, PerCpuValues},
    programs::{SchedClassifier, TestRunOptions},
};
use netlab_common::{
    addr::Addr6,
    config::{Config, FLAG_IPV6},
    conntrack::{CtEntry, CtKey},
    endpoint::{Endpoint, Source},
    maps::{self as names, CONNTRACK_MAX_MIN, PUBLISH_RANGES_MAX},
    publish::{PubKey, PubRange, PubTarget},
    stats::{Counters, DROP_BASE, DROP_COUNT, STATS_PROGRAMS},
};
use netlab_tests::{
    model::{Hook, flows::Mapping, ip::Ip},
    packet::skb_on,
};

use crate::family::Family;

/// The datapath's tables keyed by addresses of one family (`u32` or [`Addr6`]), as the
/// harness reads and writes them (aya's map types want their keys' and values' types
/// whole).
pub trait Tables: Copy + Default + Eq + Hash + std::fmt::Debug + Pod + Send + Sync {
    fn ct(bpf: &Ebpf, name: &str) -> StdMap<CtKey<Self>, CtEntry<Self>>;
    /// Empties the conntrack table, or the port table, `name`.
    fn clear_ct(bpf: &mut Ebpf, name: &str);
    fn clear_publish(bpf: &mut Ebpf, name: &str);
    /// Publishes `key` (to `target`), or withdraws it.
    fn publish(bpf: &mut Ebpf, name: &str, key: &PubKey<Self>, target: Option<PubTarget<Self>>);
    fn range(bpf: &mut Ebpf, name: &str, i: u32) -> PubRange<Self>;
    fn set_range(bpf: &mut Ebpf, name: &str, i: u32, r: PubRange<Self>);
    fn endpoint(bpf: &mut Ebpf, name: &str, addr: Self, ep: Endpoint);
}

macro_rules! tables {
    ($raw:ty) => {
        impl Tables for $raw {
            fn ct(bpf: &Ebpf, name: &str) -> StdMap<CtKey<Self>, CtEntry<Self>> {
                let m: HashMap<_, CtKey<Self>, CtEntry<Self>> =
                    HashMap::try_from(bpf.map(name).unwrap()).unwrap();
                m.iter()
                    .map(|r| r.unwrap())
                    .map(|(k, e)| (k, comparable(&e)))
                    .collect()
            }

            fn clear_ct(bpf: &mut Ebpf, name: &str) {
                empty::<CtKey<Self>, CtEntry<Self>>(bpf, name);
            }

            fn clear_publish(bpf: &mut Ebpf, name: &str) {
                empty::<PubKey<Self>, PubTarget<Self>>(bpf, name);
            }

            fn publish(
                bpf: &mut Ebpf,
                name: &str,
                key: &PubKey<Self>,
                target: Option<PubTarget<Self>>,
            ) {
                let mut m: HashMap<_, PubKey<Self>, PubTarget<Self>> =
                    HashMap::try_from(bpf.map_mut(name).unwrap()).unwrap();
                match target {
                    Some(t) => m.insert(key, t, 0).unwrap(),
                    None => m.remove(key).unwrap(),
                }
            }

            fn range(bpf: &mut Ebpf, name: &str, i: u32) -> PubRange<Self> {
                let m: Array<_, PubRange<Self>> = Array::try_from(bpf.map(name).unwrap()).unwrap();
                m.get(&i, 0).unwrap()
            }

            fn set_range(bpf: &mut Ebpf, name: &str, i: u32, r: PubRange<Self>) {
                let mut m: Array<_, PubRange<Self>> =
                    Array::try_from(bpf.map_mut(name).unwrap()).unwrap();
                m.set(i, r, 0).unwrap();
            }

            fn endpoint(bpf: &mut Ebpf, name: &str, addr: Self, ep: Endpoint) {
                let mut m: HashMap<_, Self, Endpoint> =
                    HashMap::try_from(bpf.map_mut(name).unwrap()).unwrap();
                m.insert(addr, ep, 0).unwrap();
            }
        }
    };
}
tables!(u32);
tables!(Addr6);

pub struct Bpf<A: Family> {
    bpf: Ebpf,
    /// The configuration `bpf` was loaded with (a read-only global of its programs).
    cfg: Config,
    /// Objects loaded with the other configurations met so far, emptied.
    spare: Vec<(Config, Ebpf)>,
    /// The containers the fast path delivers to: address, veth ifindex, MAC.
    endpoints: Vec<(A, u32, [u8; 6])>,
    /// Mappings whose generation was moved on (withdrawn), to put back at the reset.
    bumped: Vec<u32>,
    /// The drop counters after the last frame.
    drops: [u64; DROP_COUNT as usize],
}

const PROGS: [&str; 4] = [
    names::PROG_UPLINK_EGRESS,
    names::PROG_UPLINK_INGRESS,
    names::PROG_BRIDGE_INGRESS,
    names::PROG_ENDPOINT_INGRESS,
];

fn prog_name(hook: Hook) -> &'static str {
    match hook {
        Hook::UplinkEgress => names::PROG_UPLINK_EGRESS,
        Hook::UplinkIngress => names::PROG_UPLINK_INGRESS,
        Hook::BridgeIngress => names::PROG_BRIDGE_INGRESS,
        Hook::Endpoint => names::PROG_ENDPOINT_INGRESS,
    }
}

/// Entries compared with the model: what the datapath keeps only for itself (times,
/// generation, padding) zeroed.
fn comparable<R: Tables>(e: &CtEntry<R>) -> CtEntry<R> {
    CtEntry {
        created: 0,
        last_seen: 0,
        pub_gen: 0,
        ..*e
    }
}

/// The object loaded with `cfg`, its programs verified (and the IPv6 ones where the
/// IPv4 ones hand IPv6 packets to them), delivering to `endpoints`.
fn load<A: Family>(cfg: &Config, endpoints: &[(A, u32, [u8; 6])]) -> Ebpf {
    let mut bpf = netlab::datapath::ebpf::load(false, CONNTRACK_MAX_MIN, cfg).expect("load object");
    for p in PROGS {
        netlab::datapath::ebpf::load_program(&mut bpf, p).expect("verifier accepts");
    }
    if cfg.flags & FLAG_IPV6 != 0 {
        netlab::datapath::ebpf::fill_progs6(&mut bpf).expect("verifier accepts IPv6's");
    }
    for &(addr, ifindex, mac) in endpoints {
        let ep = Endpoint {
            ifindex,
            mac,
            _pad: [0; 2],
        };
        A::Raw::endpoint(&mut bpf, A::ENDPOINTS, addr.raw(), ep);
    }
    bpf
}

/// Empties a hash map.
fn empty<K: Pod, V: Pod>(bpf: &mut Ebpf, name: &str) {
    let mut m: HashMap<_, K, V> = HashMap::try_from(bpf.map_mut(name).unwrap()).unwrap();
    let keys: Vec<K> = m.keys().map(|k| k.unwrap()).collect();
    for k in keys {
        m.remove(&k).unwrap();
    }
}

impl<A: Family> Bpf<A> {
    /// The object for `cfg`, delivering to `endpoints`; other configurations get
    /// objects of their own as cases ask for them.
    pub fn new(cfg: Config, endpoints: &[(A, u32, [u8; 6])]) -> Self {
        netlab_tests::require_root();
        Self {
            bpf: load(&cfg, endpoints),
            cfg,
            spare: Vec::new(),
            endpoints: endpoints.to_vec(),
            bumped: Vec::new(),
            drops: [0; DROP_COUNT as usize],
        }
    }

    /// Empties every table, and installs the published ports, on the object loaded
    /// with `cfg` (loaded now if no case had it before).
    pub fn reset(&mut self, cfg: Config, published: &[Mapping<A>]) {
        self.clear();
        if cfg != self.cfg {
            let next = match self.spare.iter().position(|(c, _)| *c == cfg) {
                Some(i) => self.spare.swap_remove(i).1,
                None => load(&cfg, &self.endpoints),
            };
            let old = std::mem::replace(&mut self.bpf, next);
            self.spare
                .push((std::mem::replace(&mut self.cfg, cfg), old));
        }
        for m in published.iter().filter(|m| !m.range) {
            A::Raw::publish(&mut self.bpf, A::PUBLISH, &pub_key(m), Some(target(m)));
        }
        for (i, m) in published.iter().filter(|m| m.range).enumerate() {
            A::Raw::set_range(&mut self.bpf, A::PUBLISH_RANGES, i as u32, range_of(m));
        }
        self.drops = self.read_drops();
    }

    /// Empties the current object's tables, port table and ranges, and puts back the
    /// generations of the mappings withdrawn.
    fn clear(&mut self) {
        for name in [A::CT, A::CT_PENDING] {
            A::Raw::clear_ct(&mut self.bpf, name);
        }
        empty::<A::FragKey, A::FragNat>(&mut self.bpf, A::FRAGS);
        A::Raw::clear_publish(&mut self.bpf, A::PUBLISH);
        for i in 0..PUBLISH_RANGES_MAX {
            if A::Raw::range(&mut self.bpf, A::PUBLISH_RANGES, i).used != 0 {
                A::Raw::set_range(&mut self.bpf, A::PUBLISH_RANGES, i, PubRange::default());
            }
        }
        let mut gens: Array<_, u32> =
            Array::try_from(self.bpf.map_mut(names::MAPPINGS).unwrap()).unwrap();
        for id in self.bumped.drain(..) {
            gens.set(id, 0, 0).unwrap();
        }
    }

    /// Unpublishes a mapping as `netlab unpublish` does: out of the port table, and its
    /// generation moved on (which ends its flows).
    pub fn withdraw(&mut self, m: &Mapping<A>) {
        if m.range {
            for i in 0..PUBLISH_RANGES_MAX {
                let r = A::Raw::range(&mut self.bpf, A::PUBLISH_RANGES, i);
                if r.used != 0 && r.target.id == m.id {
                    A::Raw::set_range(&mut self.bpf, A::PUBLISH_RANGES, i, PubRange::default());
                }
            }
        } else {
            A::Raw::publish(&mut self.bpf, A::PUBLISH, &pub_key(m), None);
        }
        let mut gens: Array<_, u32> =
            Array::try_from(self.bpf.map_mut(names::MAPPINGS).unwrap()).unwrap();
        gens.set(m.id, 1, 0).unwrap();
        self.bumped.push(m.id);
    }

    /// Runs a hook's program on `frame`: its verdict and output frame, or the kernel's
    /// refusal to run it.
    ///
    /// The uplink's programs see the frame on the uplink (`uplink`, of the namespace
    /// the caller runs in); the endpoint's, on the veth of container `sender` (its
    /// addresses, IPv4 and IPv6, and MAC, as the model picks them).
    pub fn run(
        &mut self,
        hook: Hook,
        frame: &[u8],
        uplink: u32,
        sender: (u32, Addr6, [u8; 6]),
    ) -> Result<(u32, Vec<u8>), String> {
        if hook == Hook::Endpoint {
            let mut sources: HashMap<_, u32, Source> =
                HashMap::try_from(self.bpf.map_mut(names::SOURCES).unwrap()).unwrap();
            let src = Source {
                addr: sender.0.to_be(),
                mac: sender.2,
                _pad: [0; 2],
                addr6: sender.1,
            };
            sources.insert(1, src, 0).unwrap();
        }
        let ctx = skb_on(match hook {
            Hook::UplinkEgress | Hook::UplinkIngress => uplink,
            _ => 1,
        });
        let p: &mut SchedClassifier = self
            .bpf
            .program_mut(prog_name(hook))
            .unwrap()
            .try_into()
            .unwrap();
        let mut out = vec![0u8; frame.len() + 256];
        let r = p
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..Default::default()
            })
            .map_err(|e| format!("{e:?}"))?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    fn read_drops(&self) -> [u64; DROP_COUNT as usize] {
        let m: PerCpuArray<_, Counters> =
            PerCpuArray::try_from(self.bpf.map(names::STATS).unwrap()).unwrap();
        let per_cpu: PerCpuValues<Counters> = m.get(&STATS_PROGRAMS, 0).unwrap();
        let mut d = [0; DROP_COUNT as usize];
        for (i, slot) in d.iter_mut().enumerate() {
            *slot = per_cpu.iter().map(|c| c[(DROP_BASE as usize) + i]).sum();
        }
        d
    }

    /// How much each drop counter moved since the last call.
    pub fn drops_moved(&mut self) -> [u64; DROP_COUNT as usize] {
        let now = self.read_drops();
        let mut moved = [0; DROP_COUNT as usize];
        for i in 0..moved.len() {
            moved[i] = now[i] - self.drops[i];
        }
        self.drops = now;
        moved
    }

    /// A conntrack table, comparable entries.
    pub fn table(&self, name: &str) -> StdMap<CtKey<A::Raw>, CtEntry<A::Raw>> {
        A::Raw::ct(&self.bpf, name)
    }

    /// The fragment table, without the time each entry was made (the model keeps none).
    pub fn frags(&self) -> StdMap<A::FragKey, A::FragNat> {
        let m: HashMap<_, A::FragKey, A::FragNat> =
            HashMap::try_from(self.bpf.map(A::FRAGS).unwrap()).unwrap();
        m.iter()
            .map(|r| r.unwrap())
            .map(|(k, n)| (k, A::timeless(n)))
            .collect()
    }
}

/// The model's entries, comparable.
pub fn expected<R: Tables>(entries: Vec<(CtKey<R>, CtEntry<R>)>) -> StdMap<CtKey<R>, CtEntry<R>> {
    entries
        .into_iter()
        .map(|(k, e)| (k, comparable(&e)))
        .collect()
}

fn pub_key<A: Ip>(m: &Mapping<A>) -> PubKey<A::Raw> {
    PubKey {
        addr: m.addr.raw(),
        port: m.port.to_be(),
        proto: m.proto,
        _pad: 0,
    }
}

fn target<A: Ip>(m: &Mapping<A>) -> PubTarget<A::Raw> {
    PubTarget {
        addr: m.ctr.raw(),
        port: m.ctr_port.to_be(),
        _pad: 0,
        id: m.id,
    }
}

fn range_of<A: Ip>(m: &Mapping<A>) -> PubRange<A::Raw> {
    PubRange {
        addr: m.addr.raw(),
        start: m.port,
        end: m.end,
        proto: m.proto,
        used: 1,
        _pad: 0,
        target: target(m),
    }
}
