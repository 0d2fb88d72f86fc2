//! Who is running the console: the operator name sent with every action (the
//! `x-dnsd-operator` header, which dnsd logs beside the socket peer's uid and pid), and
//! the user name the demo logs into its members as.

/// `console <user>@<host>`: who is acting, for the daemon's log.
pub fn operator() -> String {
    let user = user_name()
        .ok()
        .or_else(|| std::env::var("USER").ok())
        // SAFETY: geteuid has no preconditions and cannot fail.
        .unwrap_or_else(|| format!("uid{}", unsafe { libc::geteuid() }));
    format!("console {user}@{}", hostname())
}

/// The effective user is not in the password database.
#[derive(Debug, thiserror::Error)]
#[error("user {uid} is not in the password database")]
pub struct UnknownUser {
    /// The effective uid looked up.
    pub uid: libc::uid_t,
}

/// The name of the user this process runs as, from the password database.
pub fn user_name() -> Result<String, UnknownUser> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    // SAFETY: passwd is plain old data (integers and pointers); all-zero is a valid value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; getpwuid_r writes into pwd and buf
    // (of the length given) and sets result to &pwd or null.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return Err(UnknownUser { uid });
    }
    // SAFETY: pw_name points into buf, NUL-terminated by getpwuid_r, which outlives this.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Ok(name.to_string_lossy().into_owned())
}

/// This machine's host name ("localhost" if it cannot be read).
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_names_user_and_host() {
        let op = operator();
        let user = user_name().unwrap();
        assert!(op.starts_with(&format!("console {user}@")), "{op}");
    }
}
