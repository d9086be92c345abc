//! Where the TC programs are attached, and how, whatever the kernel offers:
//!
//! - **tcx** (Linux 6.6 and later): each attachment is a bpf_link, pinned under the
//!   lab's pins (`links/<name>`); removing the pin detaches it.
//! - **classic TC** (older kernels, Debian 12's 6.1 among them): a direct-action
//!   `cls_bpf` filter on a `clsact` qdisc, over netlink. A filter is a kernel object of
//!   its own, with no pin: it stays when netlab exits, and each one netlab adds is
//!   recorded (its device, direction, priority and handle, and whether netlab added the
//!   qdisc) in `/run/netlab/<lab>/tc-filters`, so that `rm` and `down` remove exactly
//!   those, and a qdisc netlab added once no filter is left on it.
//!
//! In both, a program hands on what it does not own (`TC_ACT_UNSPEC`: `TCX_NEXT` under
//! tcx, "the next filter" under cls_bpf), so netlab shares a device with other labs and
//! other people's programs. Which one a lab uses is probed at `up` ([`probe`]) and kept
//! in its `CONFIG` (`FLAG_CLASSIC_TC`).

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType,
    links::FdLink,
    tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
};

use super::pins;
use crate::{
    error::{Error, Result},
    netlink::netns,
};

/// How a lab's programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tcx,
    Classic,
}

/// Whether this kernel attaches by tcx: `prog` (any loaded classifier) is attached to
/// `lo` of a throwaway network namespace, on a thread of its own, and let go. Nothing
/// outside that namespace is touched.
pub fn probe(prog: &mut SchedClassifier) -> Result<Kind> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<Kind> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io("unshare a netns for", "the tcx probe", e.into()))?;
            match prog.attach_with_options(
                "lo",
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            ) {
                Ok(id) => {
                    let _ = prog.detach(id);
                    Ok(Kind::Tcx)
                }
                Err(_) => Ok(Kind::Classic),
            }
        })
        .join()
        .unwrap_or_else(|_| Err(Error::ebpf("probe tcx", "probe thread panicked")))
    })
}

fn direction_name(d: TcAttachType) -> &'static str {
    match d {
        TcAttachType::Ingress => "ingress",
        _ => "egress",
    }
}

/// The record of the classic filters a lab added.
fn records(lab: &str) -> PathBuf {
    Path::new(crate::store::STATE_DIR)
        .join(lab)
        .join("tc-filters")
}

/// One classic filter: its name (as a tcx pin's), device, direction, priority,
/// handle, and whether netlab added the device's clsact qdisc.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Filter {
    name: String,
    iface: String,
    direction: TcAttachType,
    priority: u16,
    handle: (u16, u16),
    added_qdisc: bool,
}

impl Filter {
    fn line(&self) -> String {
        format!(
            "{} {} {} {} {}:{} {}",
            self.name,
            self.iface,
            direction_name(self.direction),
            self.priority,
            self.handle.0,
            self.handle.1,
            u8::from(self.added_qdisc)
        )
    }

    fn parse(line: &str) -> Option<Filter> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [name, iface, dir, prio, handle, added] = f[..] else {
            return None;
        };
        let (major, minor) = handle.split_once(':')?;
        Some(Filter {
            name: name.to_string(),
            iface: iface.to_string(),
            direction: if dir == "ingress" {
                TcAttachType::Ingress
            } else {
                TcAttachType::Egress
            },
            priority: prio.parse().ok()?,
            handle: (major.parse().ok()?, minor.parse().ok()?),
            added_qdisc: added == "1",
        })
    }
}

fn read(lab: &str) -> Vec<Filter> {
    fs::read_to_string(records(lab))
        .unwrap_or_default()
        .lines()
        .filter_map(Filter::parse)
        .collect()
}

fn write(lab: &str, filters: &[Filter]) -> Result<()> {
    let path = records(lab);
    let text: String = filters.iter().map(|f| f.line() + "\n").collect();
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).map_err(|e| Error::io("write", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))
}

/// Whether attachment `name` of the lab is there.
pub fn attached(kind: Kind, lab: &str, name: &str) -> bool {
    match kind {
        Kind::Tcx => pins::links(lab).join(name).exists(),
        Kind::Classic => read(lab).iter().any(|f| f.name == name),
    }
}

/// Attaches `prog` to `iface`'s `direction` in namespace `ns` as attachment `name` of
/// the lab; it stays attached after netlab exits.
pub fn attach(
    kind: Kind,
    lab: &str,
    prog: &mut SchedClassifier,
    ns: &Path,
    iface: &str,
    direction: TcAttachType,
    name: &str,
) -> Result<()> {
    match kind {
        Kind::Tcx => attach_tcx(prog, ns, iface, direction, &pins::links(lab).join(name)),
        Kind::Classic => {
            let filter = netns::run_in(ns, || {
                let added_qdisc = match aya::programs::tc::qdisc_add_clsact(iface) {
                    Ok(()) => true,
                    Err(aya::programs::tc::TcError::NetlinkError(e))
                        if e.raw_os_error() == Some(libc::EEXIST) =>
                    {
                        false
                    }
                    Err(e) => {
                        return Err(Error::ebpf("add clsact qdisc", format!("on {iface}: {e}")));
                    }
                };
                let id = prog
                    .attach_with_options(
                        iface,
                        direction,
                        TcAttachOptions::Netlink(NlOptions::default()),
                    )
                    .map_err(|e| Error::ebpf("attach cls_bpf", format!("on {iface}: {e}")))?;
                let link = prog
                    .take_link(id)
                    .map_err(|e| Error::ebpf("take link", e))?;
                let priority = link
                    .priority()
                    .map_err(|e| Error::ebpf("filter priority", e))?;
                let handle: u32 = link
                    .handle()
                    .map_err(|e| Error::ebpf("filter handle", e))?
                    .into();
                // The filter outlives this process; the record removes it.
                std::mem::forget(link);
                Ok(Filter {
                    name: name.to_string(),
                    iface: iface.to_string(),
                    direction,
                    priority,
                    handle: ((handle >> 16) as u16, handle as u16),
                    added_qdisc,
                })
            })?;
            let mut all = read(lab);
            all.retain(|f| f.name != name);
            all.push(filter);
            write(lab, &all)
        }
    }
}

/// Attaches by tcx, and pins the link at `pin` (removing the pin detaches it).
fn attach_tcx(
    prog: &mut SchedClassifier,
    ns: &Path,
    iface: &str,
    direction: TcAttachType,
    pin: &Path,
) -> Result<()> {
    netns::run_in(ns, || {
        let id = prog
            .attach_with_options(
                iface,
                direction,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(|e| Error::ebpf("attach", format!("on {iface}: {e}")))?;
        let link: FdLink = prog
            .take_link(id)
            .map_err(|e| Error::ebpf("take link", e))?
            .try_into()
            .map_err(|e| Error::ebpf("tcx link", e))?;
        link.pin(pin)
            .map_err(|e| Error::ebpf("pin link", format!("{}: {e}", pin.display())))?;
        Ok(())
    })
}

/// Detaches attachment `name` of the lab (in namespace `ns`); one that is gone already
/// (its device removed) is not an error.
pub fn detach(kind: Kind, lab: &str, ns: &Path, name: &str) -> Result<()> {
    match kind {
        Kind::Tcx => {
            let pin = pins::links(lab).join(name);
            match fs::remove_file(&pin) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io("remove pin", &pin, e)),
            }
        }
        Kind::Classic => {
            let mut all = read(lab);
            let Some(i) = all.iter().position(|f| f.name == name) else {
                return Ok(());
            };
            let f = all.remove(i);
            remove_filter(ns, &f, &all)?;
            write(lab, &all)
        }
    }
}

/// Detaches every classic filter of the lab (the tcx links go with the pins).
pub fn detach_all(lab: &str, ns: &Path) -> Result<()> {
    let mut all = read(lab);
    let mut errors = crate::error::Errors::default();
    while let Some(f) = all.pop() {
        errors.check(remove_filter(ns, &f, &all));
    }
    let _ = fs::remove_file(records(lab));
    errors.into_result()
}

/// Forgets the lab's classic filters without touching them: their namespace is gone,
/// or is someone else's now.
pub fn forget_all(lab: &str) {
    let _ = fs::remove_file(records(lab));
}

/// Removes one filter, and the device's clsact qdisc if netlab added it and no other
/// filter of the lab (`rest`) is on that device.
fn remove_filter(ns: &Path, f: &Filter, rest: &[Filter]) -> Result<()> {
    if !ns.exists() {
        return Ok(());
    }
    let last_on_device = !rest.iter().any(|o| o.iface == f.iface);
    netns::run_in(ns, || {
        // A device that is gone took the filter with it.
        if let Ok(link) = SchedClassifierLink::attached(
            &f.iface,
            f.direction,
            f.priority,
            TcHandle::new(f.handle.0, f.handle.1),
            None,
        ) {
            // Dropping the link detaches the filter.
            drop(link);
        }
        Ok(())
    })?;
    if f.added_qdisc && last_on_device {
        remove_clsact_if_empty(ns, &f.iface)?;
    }
    Ok(())
}

/// Removes the clsact qdisc of `iface` in `ns` if no filter is left on it, in either
/// direction: someone else's filters keep it.
fn remove_clsact_if_empty(ns: &Path, iface: &str) -> Result<()> {
    let name = iface.to_string();
    netns::netlink_in(ns, |h| async move {
        use futures::TryStreamExt;
        let Some(index) = crate::netlink::link::index(&h, &name).await? else {
            return Ok(());
        };
        for ingress in [true, false] {
            let req = h.traffic_filter(index as i32).get();
            let req = if ingress { req.ingress() } else { req.egress() };
            let mut filters = req.execute();
            if filters
                .try_next()
                .await
                .map_err(crate::netlink::nl("get filters", name.clone()))?
                .is_some()
            {
                return Ok(());
            }
        }
        // clsact: parent ffff:fff1, handle ffff:0.
        let mut del = h.qdisc().del(index as i32);
        del.message_mut().header.parent = rtnetlink::packet_route::tc::TcHandle {
            major: 0xffff,
            minor: 0xfff1,
        };
        del.message_mut().header.handle = rtnetlink::packet_route::tc::TcHandle {
            major: 0xffff,
            minor: 0,
        };
        match del.execute().await {
            Ok(()) => Ok(()),
            Err(e) if crate::netlink::is_errno(&e, libc::ENOENT) => Ok(()),
            Err(e) => Err(crate::netlink::nl("delete clsact qdisc", name)(e)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back() {
        let f = Filter {
            name: "uplink_ingress@3".into(),
            iface: "eth0".into(),
            direction: TcAttachType::Ingress,
            priority: 49152,
            handle: (0, 1),
            added_qdisc: true,
        };
        assert_eq!(f.line(), "uplink_ingress@3 eth0 ingress 49152 0:1 1");
        assert_eq!(Filter::parse(&f.line()), Some(f));
        assert_eq!(Filter::parse("short line"), None);
    }
}
