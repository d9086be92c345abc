//! DEL: withdraws the attachment's ports and removes its interface. Idempotent: an
//! attachment, a network or a namespace that is already gone is not an error.

use super::{attachment, config::NetConf, env::Attachment, error::CniResult, network};
use crate::ops::{self, Session};

pub fn run(conf: &NetConf, a: &Attachment) -> CniResult<()> {
    // What netlab cannot name it cannot have made (a DEL after a refused ADD).
    let (Ok(lab), Ok(name)) = (
        conf.lab(),
        attachment::container_name(&a.container_id, &a.ifname),
    ) else {
        return Ok(());
    };
    let Some(mut s) = Session::open_if_up(lab)? else {
        return Ok(());
    };
    // A lab of that name that another namespace's runtime uses is not this network:
    // as for a network that is not up, there is nothing of this runtime's to remove.
    if network::check_namespace(&s.state).is_err() {
        return Ok(());
    }
    // Only this attachment: never a container of netlab's own that shares its name, nor
    // another attachment whose id and interface make the same name.
    let ours = s
        .state
        .container(&name)
        .is_some_and(|c| attachment::is(c, &a.container_id, &a.ifname));
    if !ours {
        return Ok(());
    }
    ops::detach(&mut s, &name)?;
    Ok(())
}
