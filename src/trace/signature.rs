//! What each system call's arguments mean (how to print them) and which classes it belongs to.

use super::names::SYSCALL_COUNT;

/// How one argument register is decoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Arg {
    /// Signed decimal.
    Int,
    /// Unsigned decimal (sizes, counts).
    Uint,
    /// Hexadecimal (addresses, opaque words); 0 prints as NULL.
    Ptr,
    /// A file descriptor.
    Fd,
    /// A directory descriptor for *at calls (AT_FDCWD).
    DirFd,
    /// A NUL-terminated path, quoted.
    Path,
    /// A NUL-terminated string that is not a path, quoted and truncated.
    Str,
    /// Bytes the program hands to the kernel; their length is the argument at this index.
    BufIn(u8),
    /// Bytes the kernel fills; their length is the return value.
    BufOut,
    /// An iovec array the program hands in; its count is the argument at this index.
    IovIn(u8),
    /// An iovec array the kernel fills (total length = return value); count at this index.
    IovOut(u8),
    /// A NULL-terminated array of strings (argv).
    Argv,
    /// An environment array: printed as its address and count.
    Envp,
    /// `struct stat *` filled by the kernel.
    StatOut,
    /// `int[2]` filled by pipe/pipe2/socketpair.
    FdPairOut,
    /// A file offset (signed).
    Offset,
    /// `loff_t *` in/out (copy_file_range, splice, sendfile): printed as `[value]`.
    OffsetPtr,
    OpenFlags,
    Mode,
    /// The mode of open/openat: shown only when the flags create a file (O_CREAT, O_TMPFILE).
    CreateMode,
    AtFlags,
    Whence,
    MmapProt,
    MmapFlags,
    CloneFlags,
    Signal,
    FcntlCmd,
    AccessMode,
    FallocMode,
    SigHow,
    Madvise,
    Fadvise,
    SockDomain,
    SockType,
    RenameFlags,
    RwFlags,
    SyncRangeFlags,
    WaitOptions,
    /// Octal flags word (e.g. umask).
    Octal,
    /// Hexadecimal flags word with no symbolic table here.
    Hex,
}

/// How the return value is printed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ret {
    Int,
    /// Addresses (mmap, brk).
    Ptr,
    /// The call does not return to the caller (exit, exit_group, execve on success).
    NoReturn,
}

#[derive(Clone, Copy, Debug)]
pub struct Signature {
    pub args: &'static [Arg],
    pub ret: Ret,
    /// Bit set of [`Class`] values.
    pub classes: u8,
}

/// Groups of system calls for filtering (`-e file,data`), like strace's `%file` classes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Class {
    /// Calls that take a path name.
    File = 1 << 0,
    /// Calls that move or sync file data through a descriptor.
    Data = 1 << 1,
    Network = 1 << 2,
    /// Process and thread life cycle.
    Process = 1 << 3,
    Memory = 1 << 4,
    Signal = 1 << 5,
    /// Calls that take or return a file descriptor.
    Desc = 1 << 6,
}

impl Class {
    pub const ALL: [(&'static str, Class); 7] = [
        ("file", Class::File),
        ("data", Class::Data),
        ("network", Class::Network),
        ("process", Class::Process),
        ("memory", Class::Memory),
        ("signal", Class::Signal),
        ("desc", Class::Desc),
    ];

    pub fn from_name(name: &str) -> Option<Class> {
        let name = name.strip_prefix('%').unwrap_or(name);
        let name = if name == "net" { "network" } else { name };
        Class::ALL.iter().find(|(n, _)| *n == name).map(|&(_, c)| c)
    }
}

const F: u8 = Class::File as u8;
const D: u8 = Class::Data as u8;
const N: u8 = Class::Network as u8;
const P: u8 = Class::Process as u8;
const M: u8 = Class::Memory as u8;
const S: u8 = Class::Signal as u8;
const DS: u8 = Class::Desc as u8;

const fn sig(args: &'static [Arg], classes: u8) -> Signature {
    Signature { args, ret: Ret::Int, classes }
}

const fn sig_ret(args: &'static [Arg], ret: Ret, classes: u8) -> Signature {
    Signature { args, ret, classes }
}

/// Calls with no table entry: six hex words, no class.
const UNKNOWN: Signature = sig(&[Arg::Hex; 6], 0);

/// The signature of system call `nr`.
pub fn signature(nr: usize) -> Signature {
    if nr < SYSCALL_COUNT {
        SIGNATURES[nr]
    } else {
        UNKNOWN
    }
}

static SIGNATURES: [Signature; SYSCALL_COUNT] = build_table();

const fn build_table() -> [Signature; SYSCALL_COUNT] {
    use Arg::*;
    let mut t = [UNKNOWN; SYSCALL_COUNT];
    macro_rules! set {
        ($nr:ident, $sig:expr) => {
            t[libc::$nr as usize] = $sig;
        };
    }
    // Data: reads, writes and syncs through a descriptor.
    set!(SYS_read, sig(&[Fd, BufOut, Uint], D | DS));
    set!(SYS_write, sig(&[Fd, BufIn(2), Uint], D | DS));
    set!(SYS_pread64, sig(&[Fd, BufOut, Uint, Offset], D | DS));
    set!(SYS_pwrite64, sig(&[Fd, BufIn(2), Uint, Offset], D | DS));
    set!(SYS_readv, sig(&[Fd, IovOut(2), Uint], D | DS));
    set!(SYS_writev, sig(&[Fd, IovIn(2), Uint], D | DS));
    set!(SYS_preadv, sig(&[Fd, IovOut(2), Uint, Offset], D | DS));
    set!(SYS_pwritev, sig(&[Fd, IovIn(2), Uint, Offset], D | DS));
    set!(SYS_preadv2, sig(&[Fd, IovOut(2), Uint, Offset, Hex, RwFlags], D | DS));
    set!(SYS_pwritev2, sig(&[Fd, IovIn(2), Uint, Offset, Hex, RwFlags], D | DS));
    set!(SYS_lseek, sig(&[Fd, Offset, Whence], D | DS));
    set!(SYS_fsync, sig(&[Fd], D | DS));
    set!(SYS_fdatasync, sig(&[Fd], D | DS));
    set!(SYS_sync_file_range, sig(&[Fd, Offset, Offset, SyncRangeFlags], D | DS));
    set!(SYS_syncfs, sig(&[Fd], D | DS));
    set!(SYS_sync, sig(&[], D));
    set!(SYS_ftruncate, sig(&[Fd, Offset], D | DS));
    set!(SYS_fallocate, sig(&[Fd, FallocMode, Offset, Offset], D | DS));
    set!(SYS_fadvise64, sig(&[Fd, Offset, Offset, Fadvise], D | DS));
    set!(SYS_readahead, sig(&[Fd, Offset, Uint], D | DS));
    set!(SYS_copy_file_range, sig(&[Fd, OffsetPtr, Fd, OffsetPtr, Uint, Hex], D | DS));
    set!(SYS_sendfile, sig(&[Fd, Fd, OffsetPtr, Uint], D | DS | N));
    set!(SYS_splice, sig(&[Fd, OffsetPtr, Fd, OffsetPtr, Uint, Hex], D | DS));
    set!(SYS_tee, sig(&[Fd, Fd, Uint, Hex], D | DS));
    set!(SYS_vmsplice, sig(&[Fd, Ptr, Uint, Hex], D | DS));

    // Descriptors.
    set!(SYS_close, sig(&[Fd], DS));
    set!(SYS_close_range, sig(&[Fd, Fd, Hex], DS));
    set!(SYS_dup, sig(&[Fd], DS));
    set!(SYS_dup2, sig(&[Fd, Fd], DS));
    set!(SYS_dup3, sig(&[Fd, Fd, OpenFlags], DS));
    set!(SYS_fcntl, sig(&[Fd, FcntlCmd, Hex], DS));
    set!(SYS_ioctl, sig(&[Fd, Hex, Ptr], DS));
    set!(SYS_flock, sig(&[Fd, Hex], DS));
    set!(SYS_fstat, sig(&[Fd, StatOut], DS));
    set!(SYS_fchmod, sig(&[Fd, Mode], DS));
    set!(SYS_fchown, sig(&[Fd, Int, Int], DS));
    set!(SYS_fchdir, sig(&[Fd], DS));
    set!(SYS_getdents64, sig(&[Fd, Ptr, Uint], DS));
    set!(SYS_getdents, sig(&[Fd, Ptr, Uint], DS));
    set!(SYS_pipe, sig(&[FdPairOut], DS));
    set!(SYS_pipe2, sig(&[FdPairOut, OpenFlags], DS));
    set!(SYS_eventfd2, sig(&[Uint, Hex], DS));
    set!(SYS_epoll_create1, sig(&[Hex], DS));
    set!(SYS_epoll_ctl, sig(&[Fd, Int, Fd, Ptr], DS));
    set!(SYS_epoll_wait, sig(&[Fd, Ptr, Int, Int], DS));
    set!(SYS_epoll_pwait, sig(&[Fd, Ptr, Int, Int, Ptr, Uint], DS));
    set!(SYS_poll, sig(&[Ptr, Uint, Int], DS));
    set!(SYS_ppoll, sig(&[Ptr, Uint, Ptr, Ptr, Uint], DS));
    set!(SYS_select, sig(&[Int, Ptr, Ptr, Ptr, Ptr], DS));
    set!(SYS_pselect6, sig(&[Int, Ptr, Ptr, Ptr, Ptr, Ptr], DS));
    set!(SYS_memfd_create, sig(&[Str, Hex], DS));
    set!(SYS_fstatfs, sig(&[Fd, Ptr], DS));
    set!(SYS_fgetxattr, sig(&[Fd, Str, Ptr, Uint], DS));
    set!(SYS_fsetxattr, sig(&[Fd, Str, Ptr, Uint, Hex], DS));
    set!(SYS_flistxattr, sig(&[Fd, Ptr, Uint], DS));
    set!(SYS_fremovexattr, sig(&[Fd, Str], DS));
    set!(SYS_inotify_init1, sig(&[Hex], DS));
    set!(SYS_timerfd_create, sig(&[Int, Hex], DS));
    set!(SYS_signalfd4, sig(&[Fd, Ptr, Uint, Hex], DS | S));

    // Paths.
    set!(SYS_open, sig(&[Path, OpenFlags, CreateMode], F | DS));
    set!(SYS_openat, sig(&[DirFd, Path, OpenFlags, CreateMode], F | DS));
    set!(SYS_openat2, sig(&[DirFd, Path, Ptr, Uint], F | DS));
    set!(SYS_creat, sig(&[Path, Mode], F | DS));
    set!(SYS_stat, sig(&[Path, StatOut], F));
    set!(SYS_lstat, sig(&[Path, StatOut], F));
    set!(SYS_newfstatat, sig(&[DirFd, Path, StatOut, AtFlags], F | DS));
    set!(SYS_statx, sig(&[DirFd, Path, AtFlags, Hex, Ptr], F | DS));
    set!(SYS_access, sig(&[Path, AccessMode], F));
    set!(SYS_faccessat, sig(&[DirFd, Path, AccessMode], F | DS));
    set!(SYS_faccessat2, sig(&[DirFd, Path, AccessMode, AtFlags], F | DS));
    set!(SYS_readlink, sig(&[Path, BufOut, Uint], F));
    set!(SYS_readlinkat, sig(&[DirFd, Path, BufOut, Uint], F | DS));
    set!(SYS_truncate, sig(&[Path, Offset], F));
    set!(SYS_unlink, sig(&[Path], F));
    set!(SYS_unlinkat, sig(&[DirFd, Path, AtFlags], F | DS));
    set!(SYS_rename, sig(&[Path, Path], F));
    set!(SYS_renameat, sig(&[DirFd, Path, DirFd, Path], F | DS));
    set!(SYS_renameat2, sig(&[DirFd, Path, DirFd, Path, RenameFlags], F | DS));
    set!(SYS_link, sig(&[Path, Path], F));
    set!(SYS_linkat, sig(&[DirFd, Path, DirFd, Path, AtFlags], F | DS));
    set!(SYS_symlink, sig(&[Path, Path], F));
    set!(SYS_symlinkat, sig(&[Path, DirFd, Path], F | DS));
    set!(SYS_mkdir, sig(&[Path, Mode], F));
    set!(SYS_mkdirat, sig(&[DirFd, Path, Mode], F | DS));
    set!(SYS_rmdir, sig(&[Path], F));
    set!(SYS_mknod, sig(&[Path, Mode, Hex], F));
    set!(SYS_mknodat, sig(&[DirFd, Path, Mode, Hex], F | DS));
    set!(SYS_chdir, sig(&[Path], F));
    set!(SYS_chroot, sig(&[Path], F));
    set!(SYS_chmod, sig(&[Path, Mode], F));
    set!(SYS_fchmodat, sig(&[DirFd, Path, Mode], F | DS));
    set!(SYS_chown, sig(&[Path, Int, Int], F));
    set!(SYS_lchown, sig(&[Path, Int, Int], F));
    set!(SYS_fchownat, sig(&[DirFd, Path, Int, Int, AtFlags], F | DS));
    set!(SYS_utimensat, sig(&[DirFd, Path, Ptr, AtFlags], F | DS));
    set!(SYS_utime, sig(&[Path, Ptr], F));
    set!(SYS_utimes, sig(&[Path, Ptr], F));
    set!(SYS_statfs, sig(&[Path, Ptr], F));
    set!(SYS_getcwd, sig(&[BufOut, Uint], F));
    set!(SYS_getxattr, sig(&[Path, Str, Ptr, Uint], F));
    set!(SYS_lgetxattr, sig(&[Path, Str, Ptr, Uint], F));
    set!(SYS_setxattr, sig(&[Path, Str, Ptr, Uint, Hex], F));
    set!(SYS_lsetxattr, sig(&[Path, Str, Ptr, Uint, Hex], F));
    set!(SYS_listxattr, sig(&[Path, Ptr, Uint], F));
    set!(SYS_llistxattr, sig(&[Path, Ptr, Uint], F));
    set!(SYS_removexattr, sig(&[Path, Str], F));
    set!(SYS_lremovexattr, sig(&[Path, Str], F));
    set!(SYS_inotify_add_watch, sig(&[Fd, Path, Hex], F | DS));
    set!(SYS_mount, sig(&[Str, Path, Str, Hex, Ptr], F));
    set!(SYS_umount2, sig(&[Path, Hex], F));
    set!(SYS_swapon, sig(&[Path, Hex], F));
    set!(SYS_swapoff, sig(&[Path], F));
    set!(SYS_acct, sig(&[Path], F));

    // Processes.
    set!(SYS_clone, sig(&[CloneFlags, Ptr, Ptr, Ptr, Hex], P));
    set!(SYS_clone3, sig(&[Ptr, Uint], P));
    set!(SYS_fork, sig(&[], P));
    set!(SYS_vfork, sig(&[], P));
    set!(SYS_execve, sig_ret(&[Path, Argv, Envp], Ret::Int, F | P));
    set!(SYS_execveat, sig_ret(&[DirFd, Path, Argv, Envp, AtFlags], Ret::Int, F | P | DS));
    set!(SYS_exit, sig_ret(&[Int], Ret::NoReturn, P));
    set!(SYS_exit_group, sig_ret(&[Int], Ret::NoReturn, P));
    set!(SYS_wait4, sig(&[Int, Ptr, WaitOptions, Ptr], P));
    set!(SYS_waitid, sig(&[Int, Int, Ptr, WaitOptions, Ptr], P));
    set!(SYS_kill, sig(&[Int, Signal], P | S));
    set!(SYS_tkill, sig(&[Int, Signal], P | S));
    set!(SYS_tgkill, sig(&[Int, Int, Signal], P | S));
    set!(SYS_getpid, sig(&[], P));
    set!(SYS_getppid, sig(&[], P));
    set!(SYS_gettid, sig(&[], P));
    set!(SYS_set_tid_address, sig(&[Ptr], P));
    set!(SYS_setsid, sig(&[], P));
    set!(SYS_setpgid, sig(&[Int, Int], P));
    set!(SYS_getpgid, sig(&[Int], P));
    set!(SYS_prctl, sig(&[Int, Hex, Hex, Hex, Hex], P));
    set!(SYS_arch_prctl, sig(&[Hex, Ptr], P));
    set!(SYS_unshare, sig(&[CloneFlags], P));
    set!(SYS_setns, sig(&[Fd, CloneFlags], P | DS));
    set!(SYS_pidfd_open, sig(&[Int, Hex], P | DS));
    set!(SYS_rseq, sig(&[Ptr, Uint, Hex, Hex], P));
    set!(SYS_futex, sig(&[Ptr, Int, Int, Ptr, Ptr, Int], P));
    set!(SYS_sched_yield, sig(&[], P));
    set!(SYS_set_robust_list, sig(&[Ptr, Uint], P));
    set!(SYS_umask, sig(&[Octal], F));

    // Memory.
    set!(SYS_mmap, sig_ret(&[Ptr, Uint, MmapProt, MmapFlags, Fd, Offset], Ret::Ptr, M | DS));
    set!(SYS_munmap, sig(&[Ptr, Uint], M));
    set!(SYS_mprotect, sig(&[Ptr, Uint, MmapProt], M));
    set!(SYS_mremap, sig_ret(&[Ptr, Uint, Uint, Hex, Ptr], Ret::Ptr, M));
    set!(SYS_brk, sig_ret(&[Ptr], Ret::Ptr, M));
    set!(SYS_madvise, sig(&[Ptr, Uint, Madvise], M));
    set!(SYS_msync, sig(&[Ptr, Uint, Hex], M | D));
    set!(SYS_mlock, sig(&[Ptr, Uint], M));
    set!(SYS_munlock, sig(&[Ptr, Uint], M));
    set!(SYS_mincore, sig(&[Ptr, Uint, Ptr], M));
    set!(SYS_membarrier, sig(&[Hex, Hex, Int], M));

    // Signals.
    set!(SYS_rt_sigaction, sig(&[Signal, Ptr, Ptr, Uint], S));
    set!(SYS_rt_sigprocmask, sig(&[SigHow, Ptr, Ptr, Uint], S));
    set!(SYS_rt_sigreturn, sig_ret(&[], Ret::NoReturn, S));
    set!(SYS_rt_sigsuspend, sig(&[Ptr, Uint], S));
    set!(SYS_rt_sigtimedwait, sig(&[Ptr, Ptr, Ptr, Uint], S));
    set!(SYS_sigaltstack, sig(&[Ptr, Ptr], S));
    set!(SYS_pause, sig(&[], S));
    set!(SYS_alarm, sig(&[Uint], S));

    // Network.
    set!(SYS_socket, sig(&[SockDomain, SockType, Int], N | DS));
    set!(SYS_socketpair, sig(&[SockDomain, SockType, Int, FdPairOut], N | DS));
    set!(SYS_bind, sig(&[Fd, Ptr, Uint], N | DS));
    set!(SYS_connect, sig(&[Fd, Ptr, Uint], N | DS));
    set!(SYS_listen, sig(&[Fd, Int], N | DS));
    set!(SYS_accept, sig(&[Fd, Ptr, Ptr], N | DS));
    set!(SYS_accept4, sig(&[Fd, Ptr, Ptr, Hex], N | DS));
    set!(SYS_sendto, sig(&[Fd, BufIn(2), Uint, Hex, Ptr, Uint], N | DS));
    set!(SYS_recvfrom, sig(&[Fd, BufOut, Uint, Hex, Ptr, Ptr], N | DS));
    set!(SYS_sendmsg, sig(&[Fd, Ptr, Hex], N | DS));
    set!(SYS_recvmsg, sig(&[Fd, Ptr, Hex], N | DS));
    set!(SYS_sendmmsg, sig(&[Fd, Ptr, Uint, Hex], N | DS));
    set!(SYS_recvmmsg, sig(&[Fd, Ptr, Uint, Hex, Ptr], N | DS));
    set!(SYS_shutdown, sig(&[Fd, Int], N | DS));
    set!(SYS_getsockname, sig(&[Fd, Ptr, Ptr], N | DS));
    set!(SYS_getpeername, sig(&[Fd, Ptr, Ptr], N | DS));
    set!(SYS_setsockopt, sig(&[Fd, Int, Int, Ptr, Uint], N | DS));
    set!(SYS_getsockopt, sig(&[Fd, Int, Int, Ptr, Ptr], N | DS));
    t
}

/// Whether `nr` is in class `class`.
pub fn in_class(nr: usize, class: Class) -> bool {
    signature(nr).classes & class as u8 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_calls_have_their_classes() {
        assert!(in_class(libc::SYS_openat as usize, Class::File));
        assert!(in_class(libc::SYS_pwrite64 as usize, Class::Data));
        assert!(!in_class(libc::SYS_pwrite64 as usize, Class::File));
        assert!(in_class(libc::SYS_mmap as usize, Class::Memory));
        assert!(in_class(libc::SYS_socket as usize, Class::Network));
        assert!(in_class(libc::SYS_execve as usize, Class::Process));
        assert_eq!(signature(libc::SYS_exit_group as usize).ret, Ret::NoReturn);
    }

    #[test]
    fn unknown_numbers_decode_as_hex() {
        assert_eq!(signature(10_000).args, &[Arg::Hex; 6]);
        assert_eq!(signature(10_000).classes, 0);
    }

    #[test]
    fn class_names_parse() {
        assert_eq!(Class::from_name("%file"), Some(Class::File));
        assert_eq!(Class::from_name("net"), Some(Class::Network));
        assert_eq!(Class::from_name("nope"), None);
    }
}
