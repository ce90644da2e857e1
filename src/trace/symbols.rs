//! Symbolic decoders for trace lines: errno and signal names, and strace-style renderings of
//! the flag, mode and enum arguments of file, memory, process and socket system calls.
//!
//! Everything here runs inside a system call hook, so nothing allocates: each `write_*`
//! function renders straight into a [`core::fmt::Write`] sink. Tables hold x86-64 values,
//! taken from `libc` where it has them. As strace prints them, a flag set is its known names
//! joined by `|` in strace's order, then any leftover bits as one hex number, or `0` when no
//! bit is set; an enum value without a name is hex. strace's `/* X_??? */` notes are left out.

use core::fmt::{self, Write};

/// (bits, name) pairs, tried in order. A flag entry matches when all its bits are set.
type Table = [(u64, &'static str)];

/// Builds a `&Table` from names: `NAME` takes its value from `libc::NAME` (widened from
/// `c_int`/`c_uint` without sign extension), `NAME = value` gives it literally.
macro_rules! table {
    ($($name:ident $(= $v:expr)?),* $(,)?) => {
        &[$((table!(@v $name $($v)?), stringify!($name))),*]
    };
    (@v $name:ident) => { libc::$name as u32 as u64 };
    (@v $name:ident $v:expr) => { $v };
}

/// Writes the names in `table` whose bits are set in `flags`, then leftover bits in hex,
/// joined by `|`; `sep` says a `|` is due before the first. Returns whether it wrote anything.
fn write_bits<W: Write>(w: &mut W, mut flags: u64, table: &Table, mut sep: bool) -> Result<bool, fmt::Error> {
    let mut wrote = false;
    for &(bits, name) in table {
        if bits != 0 && flags & bits == bits {
            w.write_str(if sep { "|" } else { "" })?;
            w.write_str(name)?;
            flags &= !bits;
            sep = true;
            wrote = true;
        }
    }
    if flags != 0 {
        w.write_str(if sep { "|" } else { "" })?;
        write!(w, "{flags:#x}")?;
        wrote = true;
    }
    Ok(wrote)
}

/// Writes a flag set, or `zero` when no bit is set.
fn write_flags_or<W: Write>(w: &mut W, flags: u64, table: &Table, zero: &str) -> fmt::Result {
    match flags {
        0 => w.write_str(zero),
        _ => write_bits(w, flags, table, false).map(drop),
    }
}

/// Writes a flag set, or `0` when no bit is set.
fn write_flags<W: Write>(w: &mut W, flags: u64, table: &Table) -> fmt::Result {
    write_flags_or(w, flags, table, "0")
}

fn lookup(value: u64, table: &Table) -> Option<&'static str> {
    table.iter().find(|&&(v, _)| v == value).map(|&(_, name)| name)
}

/// Writes the name of an enum value, or the value in hex when it has none.
fn write_enum<W: Write>(w: &mut W, value: u64, table: &Table) -> fmt::Result {
    match lookup(value, table) {
        Some(name) => w.write_str(name),
        None => write!(w, "{value:#x}"),
    }
}

/// The name of errno `e` as strace prints it ("ENOENT"), or "E?" when unknown.
pub fn errno_name(e: i32) -> &'static str {
    errno_entry(e).map_or("E?", |(name, _)| name)
}

/// The text strace prints after an errno name: glibc's strerror text ("No such file or
/// directory"), or strace's for the kernel's restart codes; "Unknown error" when unknown.
pub fn errno_text(e: i32) -> &'static str {
    match e {
        0 => "Success",
        _ => errno_entry(e).map_or("Unknown error", |(_, text)| text),
    }
}

fn errno_entry(e: i32) -> Option<(&'static str, &'static str)> {
    let entry = match e {
        1..=133 => ERRNOS[e as usize],
        512 => ("ERESTARTSYS", "To be restarted if SA_RESTART is set"),
        513 => ("ERESTARTNOINTR", "To be restarted"),
        514 => ("ERESTARTNOHAND", "To be restarted if no handler"),
        515 => ("ENOIOCTLCMD", "Unknown error 515"),
        516 => ("ERESTART_RESTARTBLOCK", "Interrupted by signal"),
        517 => ("EPROBE_DEFER", "Unknown error 517"),
        518 => ("EOPENSTALE", "Unknown error 518"),
        521 => ("EBADHANDLE", "Unknown error 521"),
        522 => ("ENOTSYNC", "Unknown error 522"),
        523 => ("EBADCOOKIE", "Unknown error 523"),
        524 => ("ENOTSUPP", "Unknown error 524"),
        525 => ("ETOOSMALL", "Unknown error 525"),
        526 => ("ESERVERFAULT", "Unknown error 526"),
        527 => ("EBADTYPE", "Unknown error 527"),
        528 => ("EJUKEBOX", "Unknown error 528"),
        529 => ("EIOCBQUEUED", "Unknown error 529"),
        530 => ("ERECALLCONFLICT", "Unknown error 530"),
        _ => return None,
    };
    Some(entry).filter(|(name, _)| !name.is_empty())
}

/// The name of signal `sig` ("SIGKILL"); as strace names the real-time ones, 32 is
/// "SIGRTMIN" and 33..=64 are "SIGRT_1".."SIGRT_32". "SIG?" when unknown (0 included).
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        1..=64 => SIGNALS[sig as usize - 1],
        _ => "SIG?",
    }
}

#[rustfmt::skip]
static SIGNALS: [&str; 64] = [
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL",
    "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD",
    "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ",
    "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS", "SIGRTMIN", "SIGRT_1",
    "SIGRT_2", "SIGRT_3", "SIGRT_4", "SIGRT_5", "SIGRT_6", "SIGRT_7", "SIGRT_8", "SIGRT_9",
    "SIGRT_10", "SIGRT_11", "SIGRT_12", "SIGRT_13", "SIGRT_14", "SIGRT_15", "SIGRT_16", "SIGRT_17",
    "SIGRT_18", "SIGRT_19", "SIGRT_20", "SIGRT_21", "SIGRT_22", "SIGRT_23", "SIGRT_24", "SIGRT_25",
    "SIGRT_26", "SIGRT_27", "SIGRT_28", "SIGRT_29", "SIGRT_30", "SIGRT_31", "SIGRT_32",
];

/// `open`/`openat` flags: the access mode, then the rest ("O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC").
/// O_LARGEFILE is the kernel's 0x8000, which strace shows on x86-64 too.
pub fn write_open_flags<W: Write>(w: &mut W, flags: u64) -> fmt::Result {
    #[rustfmt::skip]
    const FLAGS: &Table = table![
        O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC, O_APPEND, O_NONBLOCK, O_SYNC, O_DSYNC, O_DIRECT,
        O_LARGEFILE = 0x8000, O_NOFOLLOW, O_NOATIME, O_CLOEXEC, O_PATH, O_TMPFILE, O_DIRECTORY,
        __O_TMPFILE = 0x40_0000, FASYNC = libc::O_ASYNC as u64,
    ];
    w.write_str(["O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"][(flags & 3) as usize])?;
    write_bits(w, flags & !3, FLAGS, true).map(drop)
}

/// A numeric mode as strace prints it (C's `%#03o`): "0644", "04755", "007", "000".
pub fn write_mode<W: Write>(w: &mut W, mode: u64) -> fmt::Result {
    match mode {
        0..=0o77 => write!(w, "{mode:03o}"),
        _ => write!(w, "0{mode:o}"),
    }
}

/// A `st_mode`: file type, S_ISUID/S_ISGID/S_ISVTX by name, then the permissions in octal, as
/// strace prints it ("S_IFREG|0644", "S_IFDIR|S_ISVTX|0777"). Without type bits there is no
/// type ("S_ISUID|0755"); with an unknown type it is all octal ("0130644").
pub fn write_st_mode<W: Write>(w: &mut W, mode: u64) -> fmt::Result {
    #[rustfmt::skip]
    const TYPES: &Table = table![S_IFSOCK, S_IFLNK, S_IFREG, S_IFBLK, S_IFDIR, S_IFCHR, S_IFIFO];
    const SPECIAL: &Table = table![S_ISUID, S_ISGID, S_ISVTX];
    const IFMT: u64 = libc::S_IFMT as u64;
    let ifmt = mode & IFMT;
    if ifmt != 0 {
        match lookup(ifmt, TYPES) {
            Some(name) => write!(w, "{name}|")?,
            None => return write_mode(w, mode),
        }
    }
    for &(bit, name) in SPECIAL {
        if mode & bit != 0 {
            write!(w, "{name}|")?;
        }
    }
    write_mode(w, mode & !(IFMT | 0o7000))
}

/// `*at` flags ("AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH"), "0" for none. AT_EACCESS is the same bit
/// as AT_REMOVEDIR and prints as AT_REMOVEDIR, as in strace's generic table.
pub fn write_at_flags<W: Write>(w: &mut W, flags: u64) -> fmt::Result {
    #[rustfmt::skip]
    const FLAGS: &Table = table![
        AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_SYMLINK_FOLLOW, AT_NO_AUTOMOUNT, AT_EMPTY_PATH,
        AT_STATX_FORCE_SYNC, AT_STATX_DONT_SYNC, AT_RECURSIVE,
    ];
    write_flags(w, flags, FLAGS)
}

/// A directory fd: "AT_FDCWD" for -100, else the number. Only the low 32 bits count, as for
/// the kernel and strace (the argument is an `int`).
pub fn write_dirfd<W: Write>(w: &mut W, fd: i64) -> fmt::Result {
    match fd as i32 {
        libc::AT_FDCWD => w.write_str("AT_FDCWD"),
        fd => write!(w, "{fd}"),
    }
}

/// `lseek` whence: SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE, else hex.
pub fn write_whence<W: Write>(w: &mut W, whence: u64) -> fmt::Result {
    const WHENCE: &Table = table![SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE];
    write_enum(w, whence, WHENCE)
}

/// `mmap`/`mprotect` protection: "PROT_READ|PROT_WRITE", "PROT_NONE" for none.
pub fn write_mmap_prot<W: Write>(w: &mut W, prot: u64) -> fmt::Result {
    #[rustfmt::skip]
    const PROT: &Table = table![
        PROT_READ, PROT_WRITE, PROT_EXEC, PROT_SEM = 0x8, PROT_GROWSDOWN, PROT_GROWSUP,
    ];
    write_flags_or(w, prot, PROT, "PROT_NONE")
}

/// `mmap` flags as strace prints them: the mapping type (MAP_SHARED, MAP_PRIVATE,
/// MAP_SHARED_VALIDATE; MAP_FILE for 0; else hex), the other flags, leftover bits in hex,
/// then any huge page size as "21<<MAP_HUGE_SHIFT".
pub fn write_mmap_flags<W: Write>(w: &mut W, flags: u64) -> fmt::Result {
    const TYPE_MASK: u64 = 0xf;
    const HUGE_MASK: u64 = 0x3f << 26;
    #[rustfmt::skip]
    const FLAGS: &Table = table![
        MAP_FIXED, MAP_ANONYMOUS, MAP_32BIT, MAP_NORESERVE, MAP_POPULATE, MAP_NONBLOCK,
        MAP_GROWSDOWN, MAP_DENYWRITE, MAP_EXECUTABLE, MAP_LOCKED, MAP_STACK, MAP_HUGETLB, MAP_SYNC,
        MAP_FIXED_NOREPLACE,
    ];
    let types = table![MAP_FILE = 0, MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE];
    write_enum(w, flags & TYPE_MASK, types)?;
    write_bits(w, flags & !TYPE_MASK & !HUGE_MASK, FLAGS, true)?;
    match (flags & HUGE_MASK) >> 26 {
        0 => Ok(()),
        huge => write!(w, "|{huge}<<MAP_HUGE_SHIFT"),
    }
}

/// `clone` flags, then the exit signal in the low byte by name (a number when it has none):
/// "CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD"; "0" for none.
pub fn write_clone_flags<W: Write>(w: &mut W, flags: u64) -> fmt::Result {
    #[rustfmt::skip]
    const FLAGS: &Table = table![
        CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND, CLONE_PIDFD, CLONE_PTRACE, CLONE_VFORK,
        CLONE_PARENT, CLONE_THREAD, CLONE_NEWNS, CLONE_SYSVSEM, CLONE_SETTLS, CLONE_PARENT_SETTID,
        CLONE_CHILD_CLEARTID, CLONE_UNTRACED, CLONE_CHILD_SETTID, CLONE_NEWCGROUP, CLONE_NEWUTS,
        CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_IO,
        CLONE_CLEAR_SIGHAND = 0x1_0000_0000, CLONE_INTO_CGROUP = 0x2_0000_0000,
    ];
    let sep = write_bits(w, flags & !0xff, FLAGS, false)?;
    let sep = if sep { "|" } else { "" };
    match (flags & 0xff) as i32 {
        0 if sep.is_empty() => w.write_str("0"),
        0 => Ok(()),
        sig @ 1..=64 => write!(w, "{sep}{}", signal_name(sig)),
        sig => write!(w, "{sep}{sig}"),
    }
}

/// `fcntl` command: F_GETFL, F_SETLKW, F_DUPFD_CLOEXEC, F_ADD_SEALS, ..., else hex. 12..=14
/// are F_GETLK64/F_SETLK64/F_SETLKW64 as strace names them (not glibc's x86-64 aliases).
pub fn write_fcntl_cmd<W: Write>(w: &mut W, cmd: u64) -> fmt::Result {
    #[rustfmt::skip]
    const CMDS: &Table = table![
        F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW, F_SETOWN, F_GETOWN,
        F_SETSIG = 10, F_GETSIG = 11, F_GETLK64 = 12, F_SETLK64 = 13, F_SETLKW64 = 14,
        F_SETOWN_EX = 15, F_GETOWN_EX = 16, F_GETOWNER_UIDS = 17, F_OFD_GETLK, F_OFD_SETLK,
        F_OFD_SETLKW, F_SETLEASE, F_GETLEASE, F_NOTIFY, F_DUPFD_QUERY = 1027,
        F_CREATED_QUERY = 1028, F_CANCELLK, F_DUPFD_CLOEXEC, F_SETPIPE_SZ, F_GETPIPE_SZ,
        F_ADD_SEALS, F_GET_SEALS, F_GET_RW_HINT = 1035, F_SET_RW_HINT = 1036,
        F_GET_FILE_RW_HINT = 1037, F_SET_FILE_RW_HINT = 1038,
    ];
    write_enum(w, cmd, CMDS)
}

/// `F_GETFD`/`F_SETFD` flags: "FD_CLOEXEC", "0" for none.
pub fn write_fd_flags<W: Write>(w: &mut W, flags: u64) -> fmt::Result {
    write_flags(w, flags, table![FD_CLOEXEC])
}

/// `access`/`faccessat` mode: "R_OK|W_OK|X_OK", "F_OK" for none.
pub fn write_access_mode<W: Write>(w: &mut W, mode: u64) -> fmt::Result {
    write_flags_or(w, mode, table![R_OK, W_OK, X_OK], "F_OK")
}

/// `fallocate` mode: "FALLOC_FL_KEEP_SIZE|FALLOC_FL_PUNCH_HOLE", "0" for none.
pub fn write_fallocate_mode<W: Write>(w: &mut W, mode: u64) -> fmt::Result {
    #[rustfmt::skip]
    const FLAGS: &Table = table![
        FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_NO_HIDE_STALE = 4,
        FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_ZERO_RANGE, FALLOC_FL_INSERT_RANGE,
        FALLOC_FL_UNSHARE_RANGE,
    ];
    write_flags(w, mode, FLAGS)
}

/// `rt_sigprocmask` how: SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK, else hex.
pub fn write_sigprocmask_how<W: Write>(w: &mut W, how: u64) -> fmt::Result {
    write_enum(w, how, table![SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK])
}

/// `madvise` advice: MADV_DONTNEED, MADV_HUGEPAGE, ..., else hex.
pub fn write_madvise<W: Write>(w: &mut W, advice: u64) -> fmt::Result {
    #[rustfmt::skip]
    const ADVICE: &Table = table![
        MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED, MADV_FREE,
        MADV_REMOVE, MADV_DONTFORK, MADV_DOFORK, MADV_MERGEABLE, MADV_UNMERGEABLE, MADV_HUGEPAGE,
        MADV_NOHUGEPAGE, MADV_DONTDUMP, MADV_DODUMP, MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_COLD,
        MADV_PAGEOUT, MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_DONTNEED_LOCKED, MADV_COLLAPSE,
        MADV_HWPOISON, MADV_SOFT_OFFLINE, MADV_GUARD_INSTALL = 102, MADV_GUARD_REMOVE = 103,
    ];
    write_enum(w, advice, ADVICE)
}

/// `fadvise64` advice: POSIX_FADV_NORMAL ... POSIX_FADV_NOREUSE (x86-64 values), else hex.
pub fn write_fadvise<W: Write>(w: &mut W, advice: u64) -> fmt::Result {
    #[rustfmt::skip]
    const ADVICE: &Table = table![
        POSIX_FADV_NORMAL, POSIX_FADV_RANDOM, POSIX_FADV_SEQUENTIAL, POSIX_FADV_WILLNEED,
        POSIX_FADV_DONTNEED, POSIX_FADV_NOREUSE,
    ];
    write_enum(w, advice, ADVICE)
}

/// `socket` domain: AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, ..., else hex.
pub fn write_socket_domain<W: Write>(w: &mut W, d: u64) -> fmt::Result {
    #[rustfmt::skip]
    static DOMAINS: [&str; 46] = [
        "AF_UNSPEC", "AF_UNIX", "AF_INET", "AF_AX25", "AF_IPX", "AF_APPLETALK", "AF_NETROM",
        "AF_BRIDGE", "AF_ATMPVC", "AF_X25", "AF_INET6", "AF_ROSE", "AF_DECnet", "AF_NETBEUI",
        "AF_SECURITY", "AF_KEY", "AF_NETLINK", "AF_PACKET", "AF_ASH", "AF_ECONET", "AF_ATMSVC",
        "AF_RDS", "AF_SNA", "AF_IRDA", "AF_PPPOX", "AF_WANPIPE", "AF_LLC", "AF_IB", "AF_MPLS",
        "AF_CAN", "AF_TIPC", "AF_BLUETOOTH", "AF_IUCV", "AF_RXRPC", "AF_ISDN", "AF_PHONET",
        "AF_IEEE802154", "AF_CAIF", "AF_ALG", "AF_NFC", "AF_VSOCK", "AF_KCM", "AF_QIPCRTR",
        "AF_SMC", "AF_XDP", "AF_MCTP",
    ];
    match usize::try_from(d).ok().and_then(|i| DOMAINS.get(i)) {
        Some(name) => w.write_str(name),
        None => write!(w, "{d:#x}"),
    }
}

/// `socket` type: the type, then "SOCK_CLOEXEC|SOCK_NONBLOCK". An unknown type stays in the
/// leftover hex, as strace prints it ("SOCK_CLOEXEC|0xb").
pub fn write_socket_type<W: Write>(w: &mut W, t: u64) -> fmt::Result {
    #[rustfmt::skip]
    const TYPES: &Table = table![
        SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_RDM, SOCK_SEQPACKET, SOCK_DCCP, SOCK_PACKET = 10,
    ];
    const FLAGS: &Table = table![SOCK_CLOEXEC, SOCK_NONBLOCK];
    match lookup(t & 0xf, TYPES) {
        Some(name) => {
            w.write_str(name)?;
            write_bits(w, t & !0xf, FLAGS, true).map(drop)
        }
        None => write_flags(w, t, FLAGS),
    }
}

/// `renameat2` flags: "RENAME_NOREPLACE|RENAME_EXCHANGE|RENAME_WHITEOUT", "0" for none.
pub fn write_rename_flags<W: Write>(w: &mut W, f: u64) -> fmt::Result {
    const FLAGS: &Table = table![RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT];
    write_flags(w, f, FLAGS)
}

/// `preadv2`/`pwritev2` flags: "RWF_HIPRI|RWF_DSYNC|...", "0" for none.
pub fn write_rw_flags<W: Write>(w: &mut W, f: u64) -> fmt::Result {
    #[rustfmt::skip]
    const FLAGS: &Table = table![
        RWF_HIPRI, RWF_DSYNC, RWF_SYNC, RWF_NOWAIT, RWF_APPEND, RWF_NOAPPEND, RWF_ATOMIC,
        RWF_DONTCACHE,
    ];
    write_flags(w, f, FLAGS)
}

/// `sync_file_range` flags: "SYNC_FILE_RANGE_WAIT_BEFORE|SYNC_FILE_RANGE_WRITE|...", "0" for none.
pub fn write_sync_file_range_flags<W: Write>(w: &mut W, f: u64) -> fmt::Result {
    #[rustfmt::skip]
    const FLAGS: &Table = table![
        SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_AFTER,
    ];
    write_flags(w, f, FLAGS)
}

/// `wait4`/`waitid` options in strace's order, "0" for none: "WNOHANG|WSTOPPED|__WALL". The
/// WUNTRACED bit prints as WSTOPPED, its other name, as strace prints it.
pub fn write_wait_options<W: Write>(w: &mut W, f: u64) -> fmt::Result {
    #[rustfmt::skip]
    const FLAGS: &Table = table![
        WNOHANG, WEXITED, WSTOPPED, WCONTINUED, WNOWAIT, __WCLONE, __WALL, __WNOTHREAD,
    ];
    write_flags(w, f, FLAGS)
}

/// Errno names as strace prints them with glibc's strerror texts, by errno; a number Linux
/// does not use has ("", "").
#[rustfmt::skip]
static ERRNOS: [(&str, &str); 134] = [
    /*   0 */ ("", ""), ("EPERM", "Operation not permitted"),
              ("ENOENT", "No such file or directory"), ("ESRCH", "No such process"),
              ("EINTR", "Interrupted system call"), ("EIO", "Input/output error"),
              ("ENXIO", "No such device or address"), ("E2BIG", "Argument list too long"),
              ("ENOEXEC", "Exec format error"), ("EBADF", "Bad file descriptor"),
    /*  10 */ ("ECHILD", "No child processes"), ("EAGAIN", "Resource temporarily unavailable"),
              ("ENOMEM", "Cannot allocate memory"), ("EACCES", "Permission denied"),
              ("EFAULT", "Bad address"), ("ENOTBLK", "Block device required"),
              ("EBUSY", "Device or resource busy"), ("EEXIST", "File exists"),
              ("EXDEV", "Invalid cross-device link"), ("ENODEV", "No such device"),
    /*  20 */ ("ENOTDIR", "Not a directory"), ("EISDIR", "Is a directory"),
              ("EINVAL", "Invalid argument"), ("ENFILE", "Too many open files in system"),
              ("EMFILE", "Too many open files"), ("ENOTTY", "Inappropriate ioctl for device"),
              ("ETXTBSY", "Text file busy"), ("EFBIG", "File too large"),
              ("ENOSPC", "No space left on device"), ("ESPIPE", "Illegal seek"),
    /*  30 */ ("EROFS", "Read-only file system"), ("EMLINK", "Too many links"),
              ("EPIPE", "Broken pipe"), ("EDOM", "Numerical argument out of domain"),
              ("ERANGE", "Numerical result out of range"), ("EDEADLK", "Resource deadlock avoided"),
              ("ENAMETOOLONG", "File name too long"), ("ENOLCK", "No locks available"),
              ("ENOSYS", "Function not implemented"), ("ENOTEMPTY", "Directory not empty"),
    /*  40 */ ("ELOOP", "Too many levels of symbolic links"), ("", ""),
              ("ENOMSG", "No message of desired type"), ("EIDRM", "Identifier removed"),
              ("ECHRNG", "Channel number out of range"), ("EL2NSYNC", "Level 2 not synchronized"),
              ("EL3HLT", "Level 3 halted"), ("EL3RST", "Level 3 reset"),
              ("ELNRNG", "Link number out of range"), ("EUNATCH", "Protocol driver not attached"),
    /*  50 */ ("ENOCSI", "No CSI structure available"), ("EL2HLT", "Level 2 halted"),
              ("EBADE", "Invalid exchange"), ("EBADR", "Invalid request descriptor"),
              ("EXFULL", "Exchange full"), ("ENOANO", "No anode"),
              ("EBADRQC", "Invalid request code"), ("EBADSLT", "Invalid slot"), ("", ""),
              ("EBFONT", "Bad font file format"),
    /*  60 */ ("ENOSTR", "Device not a stream"), ("ENODATA", "No data available"),
              ("ETIME", "Timer expired"), ("ENOSR", "Out of streams resources"),
              ("ENONET", "Machine is not on the network"), ("ENOPKG", "Package not installed"),
              ("EREMOTE", "Object is remote"), ("ENOLINK", "Link has been severed"),
              ("EADV", "Advertise error"), ("ESRMNT", "Srmount error"),
    /*  70 */ ("ECOMM", "Communication error on send"), ("EPROTO", "Protocol error"),
              ("EMULTIHOP", "Multihop attempted"), ("EDOTDOT", "RFS specific error"),
              ("EBADMSG", "Bad message"), ("EOVERFLOW", "Value too large for defined data type"),
              ("ENOTUNIQ", "Name not unique on network"),
              ("EBADFD", "File descriptor in bad state"), ("EREMCHG", "Remote address changed"),
              ("ELIBACC", "Can not access a needed shared library"),
    /*  80 */ ("ELIBBAD", "Accessing a corrupted shared library"),
              ("ELIBSCN", ".lib section in a.out corrupted"),
              ("ELIBMAX", "Attempting to link in too many shared libraries"),
              ("ELIBEXEC", "Cannot exec a shared library directly"),
              ("EILSEQ", "Invalid or incomplete multibyte or wide character"),
              ("ERESTART", "Interrupted system call should be restarted"),
              ("ESTRPIPE", "Streams pipe error"), ("EUSERS", "Too many users"),
              ("ENOTSOCK", "Socket operation on non-socket"),
              ("EDESTADDRREQ", "Destination address required"),
    /*  90 */ ("EMSGSIZE", "Message too long"), ("EPROTOTYPE", "Protocol wrong type for socket"),
              ("ENOPROTOOPT", "Protocol not available"),
              ("EPROTONOSUPPORT", "Protocol not supported"),
              ("ESOCKTNOSUPPORT", "Socket type not supported"),
              ("EOPNOTSUPP", "Operation not supported"),
              ("EPFNOSUPPORT", "Protocol family not supported"),
              ("EAFNOSUPPORT", "Address family not supported by protocol"),
              ("EADDRINUSE", "Address already in use"),
              ("EADDRNOTAVAIL", "Cannot assign requested address"),
    /* 100 */ ("ENETDOWN", "Network is down"), ("ENETUNREACH", "Network is unreachable"),
              ("ENETRESET", "Network dropped connection on reset"),
              ("ECONNABORTED", "Software caused connection abort"),
              ("ECONNRESET", "Connection reset by peer"), ("ENOBUFS", "No buffer space available"),
              ("EISCONN", "Transport endpoint is already connected"),
              ("ENOTCONN", "Transport endpoint is not connected"),
              ("ESHUTDOWN", "Cannot send after transport endpoint shutdown"),
              ("ETOOMANYREFS", "Too many references: cannot splice"),
    /* 110 */ ("ETIMEDOUT", "Connection timed out"), ("ECONNREFUSED", "Connection refused"),
              ("EHOSTDOWN", "Host is down"), ("EHOSTUNREACH", "No route to host"),
              ("EALREADY", "Operation already in progress"),
              ("EINPROGRESS", "Operation now in progress"), ("ESTALE", "Stale file handle"),
              ("EUCLEAN", "Structure needs cleaning"), ("ENOTNAM", "Not a XENIX named type file"),
              ("ENAVAIL", "No XENIX semaphores available"),
    /* 120 */ ("EISNAM", "Is a named type file"), ("EREMOTEIO", "Remote I/O error"),
              ("EDQUOT", "Disk quota exceeded"), ("ENOMEDIUM", "No medium found"),
              ("EMEDIUMTYPE", "Wrong medium type"), ("ECANCELED", "Operation canceled"),
              ("ENOKEY", "Required key not available"), ("EKEYEXPIRED", "Key has expired"),
              ("EKEYREVOKED", "Key has been revoked"),
              ("EKEYREJECTED", "Key was rejected by service"),
    /* 130 */ ("EOWNERDEAD", "Owner died"), ("ENOTRECOVERABLE", "State not recoverable"),
              ("ERFKILL", "Operation not possible due to RF-kill"),
              ("EHWPOISON", "Memory page has hardware error"),
];

#[cfg(test)]
mod tests {
    use super::*;

    type Decoder = fn(&mut String, u64) -> fmt::Result;

    /// Expected renderings, taken from strace 6.1 where it names the value (it adds a
    /// `/* X_??? */` note after unknown values, which these decoders leave out).
    #[rustfmt::skip]
    const CASES: &[(Decoder, &[(u64, &str)])] = &[
        (write_open_flags, &[(0, "O_RDONLY"), (3, "O_ACCMODE"), (0x8000, "O_RDONLY|O_LARGEFILE"),
            (0o1101 | 0x80000, "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC"), (0x101000, "O_RDONLY|O_SYNC"),
            (0x410002, "O_RDWR|O_TMPFILE"), (0x402000, "O_RDONLY|__O_TMPFILE|FASYNC"),
            (0x290000, "O_RDONLY|O_CLOEXEC|O_PATH|O_DIRECTORY"),
            (0x4000_0000, "O_RDONLY|0x40000000"),
            (0x7fff_ffff, "O_ACCMODE|O_CREAT|O_EXCL|O_NOCTTY|O_TRUNC|O_APPEND|O_NONBLOCK|O_SYNC|\
                O_DIRECT|O_LARGEFILE|O_NOFOLLOW|O_NOATIME|O_CLOEXEC|O_PATH|O_TMPFILE|FASYNC|\
                0x7f80003c")]),
        (write_mode, &[(0, "000"), (7, "007"), (0o77, "077"), (0o644, "0644"), (0o4755, "04755"),
            (0o177777, "0177777")]),
        (write_st_mode, &[(0o100644, "S_IFREG|0644"), (0o40755, "S_IFDIR|0755"),
            (0o41777, "S_IFDIR|S_ISVTX|0777"), (0o107000, "S_IFREG|S_ISUID|S_ISGID|S_ISVTX|000"),
            (0o60600, "S_IFBLK|0600"), (0o4755, "S_ISUID|0755"), (0, "000"),
            (0o130644, "0130644")]),
        (write_at_flags, &[(0, "0"), (0x1900, "AT_SYMLINK_NOFOLLOW|AT_NO_AUTOMOUNT|AT_EMPTY_PATH"),
            (0xe200, "AT_REMOVEDIR|AT_STATX_FORCE_SYNC|AT_STATX_DONT_SYNC|AT_RECURSIVE"),
            (0x10001, "0x10001")]),
        (write_whence, &[(0, "SEEK_SET"), (2, "SEEK_END"), (4, "SEEK_HOLE"), (5, "0x5")]),
        (write_mmap_prot, &[(0, "PROT_NONE"), (3, "PROT_READ|PROT_WRITE"), (0x10, "0x10"),
            (0x11, "PROT_READ|0x10"),
            (0x0300_000f, "PROT_READ|PROT_WRITE|PROT_EXEC|PROT_SEM|PROT_GROWSDOWN|PROT_GROWSUP")]),
        (write_mmap_flags, &[(0, "MAP_FILE"), (1, "MAP_SHARED"), (3, "MAP_SHARED_VALIDATE"),
            (4, "0x4"), (0x24, "0x4|MAP_ANONYMOUS"), (0x22, "MAP_PRIVATE|MAP_ANONYMOUS"),
            (0x812, "MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE"),
            (0x40022 | 21 << 26, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|21<<MAP_HUGE_SHIFT"),
            (0xffff_fff2, "MAP_PRIVATE|MAP_FIXED|MAP_ANONYMOUS|MAP_32BIT|MAP_NORESERVE|\
                MAP_POPULATE|MAP_NONBLOCK|MAP_GROWSDOWN|MAP_DENYWRITE|MAP_EXECUTABLE|MAP_LOCKED|\
                MAP_STACK|MAP_HUGETLB|MAP_SYNC|MAP_FIXED_NOREPLACE|0x3e00680|63<<MAP_HUGE_SHIFT")]),
        (write_clone_flags, &[(0, "0"), (17, "SIGCHLD"), (0x100, "CLONE_VM"),
            (0x400000, "0x400000"),
            (0x0120_0011, "CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD"),
            (0x3d0f00, "CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|\
                CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID"),
            (0x800 | 65, "CLONE_SIGHAND|65"),
            (0x3_0000_0000, "CLONE_CLEAR_SIGHAND|CLONE_INTO_CGROUP")]),
        (write_fcntl_cmd, &[(0, "F_DUPFD"), (1, "F_GETFD"), (4, "F_SETFL"), (7, "F_SETLKW"),
            (12, "F_GETLK64"), (37, "F_OFD_SETLK"), (1030, "F_DUPFD_CLOEXEC"),
            (1033, "F_ADD_SEALS"), (1034, "F_GET_SEALS"), (99, "0x63")]),
        (write_fd_flags, &[(0, "0"), (1, "FD_CLOEXEC"), (3, "FD_CLOEXEC|0x2")]),
        (write_access_mode, &[(0, "F_OK"), (1, "X_OK"), (7, "R_OK|W_OK|X_OK"), (8, "0x8"),
            (15, "R_OK|W_OK|X_OK|0x8")]),
        (write_fallocate_mode, &[(0, "0"), (3, "FALLOC_FL_KEEP_SIZE|FALLOC_FL_PUNCH_HOLE"),
            (0x80, "0x80"), (0x74, "FALLOC_FL_NO_HIDE_STALE|FALLOC_FL_ZERO_RANGE|\
                FALLOC_FL_INSERT_RANGE|FALLOC_FL_UNSHARE_RANGE")]),
        (write_sigprocmask_how, &[(0, "SIG_BLOCK"), (1, "SIG_UNBLOCK"), (2, "SIG_SETMASK"),
            (3, "0x3")]),
        (write_madvise, &[(0, "MADV_NORMAL"), (4, "MADV_DONTNEED"), (5, "0x5"),
            (14, "MADV_HUGEPAGE"), (25, "MADV_COLLAPSE"), (26, "0x1a"), (100, "MADV_HWPOISON")]),
        (write_fadvise, &[(0, "POSIX_FADV_NORMAL"), (4, "POSIX_FADV_DONTNEED"),
            (5, "POSIX_FADV_NOREUSE"), (6, "0x6")]),
        (write_socket_domain, &[(0, "AF_UNSPEC"), (1, "AF_UNIX"), (2, "AF_INET"), (10, "AF_INET6"),
            (16, "AF_NETLINK"), (17, "AF_PACKET"), (40, "AF_VSOCK"), (45, "AF_MCTP"), (46, "0x2e"),
            (u64::MAX, "0xffffffffffffffff")]),
        (write_socket_type, &[(0, "0"), (1, "SOCK_STREAM"), (10, "SOCK_PACKET"), (0xb, "0xb"),
            (0x80801, "SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK"),
            (0x805, "SOCK_SEQPACKET|SOCK_NONBLOCK"), (0x8000b, "SOCK_CLOEXEC|0xb"),
            (0x4000_0001, "SOCK_STREAM|0x40000000"), (0xffff, "SOCK_NONBLOCK|0xf7ff")]),
        (write_rename_flags, &[(0, "0"), (1, "RENAME_NOREPLACE"), (0x100, "0x100"),
            (7, "RENAME_NOREPLACE|RENAME_EXCHANGE|RENAME_WHITEOUT")]),
        (write_rw_flags, &[(0, "0"), (0x100, "0x100"),
            (0x1f, "RWF_HIPRI|RWF_DSYNC|RWF_SYNC|RWF_NOWAIT|RWF_APPEND")]),
        (write_sync_file_range_flags, &[(0, "0"), (2, "SYNC_FILE_RANGE_WRITE"), (8, "0x8"),
            (7, "SYNC_FILE_RANGE_WAIT_BEFORE|SYNC_FILE_RANGE_WRITE|SYNC_FILE_RANGE_WAIT_AFTER")]),
        (write_wait_options, &[(0, "0"), (1, "WNOHANG"), (2, "WSTOPPED"), (0x4000_0000, "__WALL"),
            (0x81, "WNOHANG|0x80"), (0xf100_000f, "WNOHANG|WEXITED|WSTOPPED|WCONTINUED|WNOWAIT|\
                __WCLONE|__WALL|__WNOTHREAD|0x10000000")]),
    ];

    #[test]
    fn decoders_render_like_strace() {
        for (i, &(decode, cases)) in CASES.iter().enumerate() {
            for &(value, want) in cases {
                let mut got = String::new();
                decode(&mut got, value).unwrap();
                assert_eq!(got, want, "decoder #{i}, value {value:#x}");
            }
        }
    }

    #[test]
    fn dirfd() {
        for (fd, want) in [(-100, "AT_FDCWD"), (0xffff_ff9c, "AT_FDCWD"), (3, "3"), (-5, "-5")] {
            let mut got = String::new();
            write_dirfd(&mut got, fd).unwrap();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn errnos() {
        #[rustfmt::skip]
        let cases = [(2, "ENOENT", "No such file or directory"),
            (11, "EAGAIN", "Resource temporarily unavailable"),
            (libc::EDEADLK, "EDEADLK", "Resource deadlock avoided"),
            (libc::EOPNOTSUPP, "EOPNOTSUPP", "Operation not supported"),
            (libc::EHWPOISON, "EHWPOISON", "Memory page has hardware error"),
            (libc::EPERM, "EPERM", "Operation not permitted"),
            (libc::ELOOP, "ELOOP", "Too many levels of symbolic links"),
            (libc::EBFONT, "EBFONT", "Bad font file format"),
            (512, "ERESTARTSYS", "To be restarted if SA_RESTART is set"),
            (524, "ENOTSUPP", "Unknown error 524"), (0, "E?", "Success"),
            (41, "E?", "Unknown error"), (58, "E?", "Unknown error"), (134, "E?", "Unknown error"),
            (519, "E?", "Unknown error"), (-2, "E?", "Unknown error"),
            (i32::MIN, "E?", "Unknown error"), (i32::MAX, "E?", "Unknown error")];
        for (e, name, text) in cases {
            assert_eq!((errno_name(e), errno_text(e)), (name, text), "{e}");
        }
    }

    /// Every text is what this glibc's strerror says (std prints it as "TEXT (os error N)").
    #[cfg(target_env = "gnu")]
    #[test]
    fn errno_texts_match_glibc() {
        for e in (1..=133).filter(|&e| e != 41 && e != 58) {
            assert!(errno_name(e).starts_with('E'), "{e}");
            let want = std::io::Error::from_raw_os_error(e).to_string();
            assert_eq!(format!("{} (os error {e})", errno_text(e)), want);
        }
    }

    #[test]
    fn signals() {
        #[rustfmt::skip]
        let cases = [(1, "SIGHUP"), (6, "SIGABRT"), (9, "SIGKILL"), (16, "SIGSTKFLT"),
            (17, "SIGCHLD"), (29, "SIGIO"), (30, "SIGPWR"), (libc::SIGSYS, "SIGSYS"),
            (32, "SIGRTMIN"), (33, "SIGRT_1"), (34, "SIGRT_2"), (64, "SIGRT_32"), (0, "SIG?"),
            (-1, "SIG?"), (65, "SIG?")];
        for (sig, name) in cases {
            assert_eq!(signal_name(sig), name);
        }
    }
}
