//! Two CPUs running one TC program at the same moment (BPF_PROG_TEST_RUN from two
//! threads pinned to CPUs 0 and 1): the way to meet the datapath's races on demand —
//! two first packets of one flow, or of two flows wanting one translation, each on its
//! own CPU.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    thread,
};

use aya::{
    Ebpf, TestRun as _,
    programs::{SchedClassifier, TestRunOptions},
};

/// What a program returns for a packet it drops (`TC_ACT_SHOT`).
pub const TC_ACT_SHOT: u32 = 2;

/// Why a race cannot be run here: fewer than two CPUs this process may use.
pub fn unavailable() -> Option<String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let both = [0, 1].into_iter().all(|cpu| {
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let rc =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        rc == 0 && unsafe { libc::CPU_ISSET(cpu, &set) }
    });
    (cpus < 2 || !both)
        .then(|| format!("a race needs CPUs 0 and 1; this process may use {cpus} CPU(s)"))
}

/// Runs `prog` on `frame(i, cpu)` on both CPUs at once, for `i` in `0..tries`, each
/// time started together by a spinning barrier (a sleeping one would wake the two
/// threads microseconds apart); returns how many runs dropped their packet
/// (`TC_ACT_SHOT`). `ctx` is the `__sk_buff` head to run with (see
/// [`crate::packet::skb_on`]), `ns` the network namespace to run in (the program's
/// route lookups are the namespace's).
pub fn drops(
    prog: &SchedClassifier,
    ctx: Option<&[u8]>,
    ns: Option<&std::path::Path>,
    tries: usize,
    frame: impl Fn(usize, usize) -> Vec<u8> + Sync,
) -> usize {
    let arrived = AtomicUsize::new(0);
    let lost = AtomicUsize::new(0);
    let run = |cpu: usize| {
        netlab::bench::rr::pin_to(cpu).expect("pin to a CPU");
        for i in 0..tries {
            let f = frame(i, cpu);
            let mut out = vec![0u8; f.len() + 256];
            arrived.fetch_add(1, Ordering::AcqRel);
            while arrived.load(Ordering::Acquire) < 2 * (i + 1) {
                std::hint::spin_loop();
            }
            let r = prog
                .test_run(TestRunOptions {
                    data_in: Some(&f),
                    data_out: Some(&mut out),
                    ctx_in: ctx,
                    ..Default::default()
                })
                .expect("test run");
            if r.return_value == TC_ACT_SHOT {
                lost.fetch_add(1, Ordering::AcqRel);
            }
        }
    };
    thread::scope(|s| {
        for cpu in [0, 1] {
            let run = &run;
            s.spawn(move || match ns {
                Some(ns) => crate::in_ns(ns, || run(cpu)),
                None => run(cpu),
            });
        }
    });
    lost.load(Ordering::Acquire)
}

/// [`drops`] for the loaded object's program `name`, run without a context, in the
/// calling thread's namespace (the packet tests' programs, on fresh maps).
pub fn drops_of(
    bpf: &Ebpf,
    name: &str,
    tries: usize,
    frame: impl Fn(usize, usize) -> Vec<u8> + Sync,
) -> usize {
    let prog: &SchedClassifier = bpf
        .program(name)
        .and_then(|p| p.try_into().ok())
        .unwrap_or_else(|| panic!("no TC program {name}"));
    drops(prog, None, None, tries, frame)
}
