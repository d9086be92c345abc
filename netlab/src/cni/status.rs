//! STATUS (spec 1.1): 0 when an ADD can be served; 50 when it cannot (not root, or the
//! network's name taken by a lab in another namespace).

use super::{
    config::NetConf,
    error::{CniError, CniResult, code},
    network,
};
use crate::ops::Session;

pub fn run(conf: &NetConf) -> CniResult<()> {
    conf.check_fields()?;
    let lab = conf.up_request()?.lab;
    if !nix::unistd::geteuid().is_root() {
        return Err(CniError::new(
            code::NOT_AVAILABLE,
            "netlab-cni needs root (it creates links and loads eBPF programs)",
        ));
    }
    if let Some(s) = Session::open_if_up(&lab)? {
        network::check_namespace(&s.state)
            .map_err(|e| CniError::new(code::NOT_AVAILABLE, e.msg))?;
    }
    Ok(())
}
