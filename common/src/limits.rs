//! The process limits Weir raises for itself at start. Open files: a driver holds a connection per
//! executor (and per peer that reaches its ports), an executor a Kafka client per partition it
//! reads; distributions often start services with a soft limit of 1024 and a far higher hard
//! one. A process may raise its own soft limit up to the hard one, so it does, as Kafka's and
//! Go's runtimes do.

/// Raises the soft limit of open files to the hard limit; returns the limit now in force (`None`
/// if the system would not say).
pub fn raise_open_files() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Some(raised.rlim_cur);
            }
        }
    }
    Some(limit.rlim_cur)
}
