//! The machine's name, for shipped log records and transactional ids.

/// The host name: gethostname(2), else `$HOSTNAME`, else `unknown`.
pub(crate) fn hostname() -> String {
    system_hostname()
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(unix)]
fn system_hostname() -> Option<String> {
    let mut buf = [0_u8; 256];
    // SAFETY: the pointer and length describe `buf`, which gethostname(2)
    // writes at most `len` bytes into.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    // POSIX leaves the name unterminated when it was truncated.
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec())
        .ok()
        .filter(|h| !h.is_empty())
}

#[cfg(not(unix))]
fn system_hostname() -> Option<String> {
    std::env::var("COMPUTERNAME").ok().filter(|h| !h.is_empty())
}
