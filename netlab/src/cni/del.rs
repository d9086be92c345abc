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
    // An attachment the lab does not record is none of this runtime's: nothing to
    // remove, even where the lab cannot be worked on (brought up in another mount
    // namespace, whose namespaces are out of sight from this one). Looked at under
    // the lab's lock, after any ADD in flight; one that is recorded is looked at
    // again when the lab is opened.
    let recorded = |s: &crate::lab::LabState| {
        s.container(&name)
            .is_some_and(|c| attachment::is(c, &a.container_id, &a.ifname))
    };
    // Or one an ADD killed half-way was making (the lab's journal says so): opening the
    // lab rolls it back, so that a DEL that succeeds leaves no interface of netlab's in
    // the container (before, it stayed until another command on the network, a review).
    let lock = crate::store::Locked::acquire(lab)?;
    let being_made = matches!(
        lock.read_journal::<ops::journal::Entry>()?,
        Some(ops::journal::Entry::Attach { container, .. })
            if container.name == name && attachment::is(&container, &a.container_id, &a.ifname)
    );
    let has_it = being_made || lock.load()?.is_some_and(|s| recorded(&s));
    drop(lock);
    if !has_it {
        return Ok(());
    }
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
    if !recorded(&s.state) {
        return Ok(());
    }
    ops::detach(&mut s, &name)?;
    Ok(())
}
