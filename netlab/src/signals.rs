//! Signals held across a step that must not stop half-way: `up` (a lab is made whole,
//! then taken away again when a signal came), `down` (a lab is taken away whole), and
//! a change of the conntrack table and its count. Only SIGKILL can cut such a step;
//! the journal and the state's markers cover that.

/// The signals a user or a service manager sends to stop a command.
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Runs `f` with SIGINT, SIGTERM and SIGHUP held; returns its result and the first of
/// them that came meanwhile, taken (not delivered).
pub fn hold<T>(f: impl FnOnce() -> T) -> (T, Option<i32>) {
    // SAFETY: plain signal-mask calls on sigset_t values this function owns.
    unsafe {
        let mut held: libc::sigset_t = std::mem::zeroed();
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut held);
        for sig in SIGNALS {
            libc::sigaddset(&mut held, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &held, &mut before);
        let out = f();
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut pending);
        let came = SIGNALS
            .into_iter()
            .find(|&sig| libc::sigismember(&pending, sig) == 1);
        if came.is_some() {
            let now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            while libc::sigtimedwait(&held, std::ptr::null_mut(), &now) > 0 {}
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
        (out, came)
    }
}

/// Runs `f` with the signals held, then delivers the one that came (its default action
/// ends the process, as it would have without the hold).
pub fn deferred<T>(f: impl FnOnce() -> T) -> T {
    let (out, came) = hold(f);
    if let Some(sig) = came {
        // SAFETY: raising a signal at this process.
        unsafe { libc::raise(sig) };
    }
    out
}
