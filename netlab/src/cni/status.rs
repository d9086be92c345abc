//! STATUS (spec 1.1): 0 when an ADD can be served; 50 when it cannot (not root, the
//! network's name taken by a lab in another namespace, or, before the network is up,
//! a kernel without what its datapath or device needs: flowtables, netkit).

use super::{
    config::NetConf,
    error::{CniError, CniResult, code},
    network,
};
use crate::{datapath::nftables, lab::DatapathKind, netlink::netns, ops::Session, topology};

pub fn run(conf: &NetConf) -> CniResult<()> {
    conf.check_fields()?;
    let lab = conf.up_request()?.lab;
    if !nix::unistd::geteuid().is_root() {
        return Err(CniError::new(
            code::NOT_AVAILABLE,
            "netlab-cni needs root (it creates links and loads eBPF programs)",
        ));
    }
    let not_available = |e: crate::error::Error| CniError::new(code::NOT_AVAILABLE, e.to_string());
    match Session::open_if_up(&lab)? {
        Some(s) => network::check_namespace(&s.state)
            .map_err(|e| CniError::new(code::NOT_AVAILABLE, e.msg))?,
        None => {
            let req = conf.up_request()?;
            topology::require_device(req.device).map_err(not_available)?;
            if req.datapath == DatapathKind::NftablesFlowtable {
                nftables::require_flowtables_in(&netns::current()).map_err(not_available)?;
            }
        }
    }
    Ok(())
}
