//! Turns one system call (number, argument registers, result, duration) into an strace-style line.

use core::fmt::Write;

use super::line::LineBuf;
use super::memory::UserMemory;
use super::names::NAMES;
use super::signature::{signature, Arg, Ret};
use super::symbols as sym;

/// Display options that apply to every line.
#[derive(Clone, Copy, Debug)]
pub struct DecodeOptions {
    /// How many bytes of a data buffer to show (strace -s); paths are shown up to PATH_MAX.
    pub string_limit: usize,
    /// Append ` <seconds>` with the time spent in the call.
    pub show_time: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions { string_limit: 32, show_time: true }
    }
}

/// What happened to the call.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    /// The kernel's raw result (negative errno on failure) and the time it took.
    Returned { raw: isize, nanos: u64 },
    /// The call does not come back (exit_group, a successful execve): printed as `= ?`.
    Pending,
}

pub struct Call {
    pub nr: usize,
    pub args: [usize; 6],
}

const PATH_SHOWN: usize = 4096;
const ARGV_SHOWN: usize = 32;
const IOV_SHOWN: usize = 8;

/// The name of system call `nr` (`syscall_NNN` when the table does not know it).
pub fn write_name(out: &mut LineBuf, nr: usize) {
    match NAMES.get(nr) {
        Some(name) if !name.is_empty() => out.push_bytes(name.as_bytes()),
        _ => {
            let _ = write!(out, "syscall_{nr}");
        }
    }
}

/// Appends `name(args) = result <time>` for `call`.
pub fn write_call(out: &mut LineBuf, call: &Call, outcome: Outcome, opts: &DecodeOptions) {
    let sig = signature(call.nr);
    let ret = match outcome {
        Outcome::Returned { raw, .. } => Some(raw),
        Outcome::Pending => None,
    };
    let failed = matches!(ret, Some(r) if (-4095..0).contains(&r));
    // Pointers were accessed by the kernel only if the call succeeded.
    let mem = UserMemory { trusted: matches!(ret, Some(r) if r >= 0) };
    let result = ret.filter(|r| *r >= 0).map(|r| r as usize);

    write_name(out, call.nr);
    out.push(b'(');
    for (i, arg) in sig.args.iter().enumerate() {
        if *arg == Arg::CreateMode && !creates_file(call.args[i - 1]) {
            continue;
        }
        if i > 0 {
            out.push_bytes(b", ");
        }
        write_arg(out, *arg, call, i, result, mem, opts);
    }
    out.push_bytes(b") = ");
    match ret {
        None => out.push(b'?'),
        Some(raw) if failed => {
            let e = (-raw) as i32;
            let _ = write!(out, "-1 {} ({})", sym::errno_name(e), sym::errno_text(e));
        }
        Some(raw) => match sig.ret {
            Ret::Ptr => {
                let _ = write!(out, "{:#x}", raw as usize);
            }
            Ret::Int | Ret::NoReturn => {
                let _ = write!(out, "{raw}");
            }
        },
    }
    if let (Outcome::Returned { nanos, .. }, true) = (outcome, opts.show_time) {
        let _ = write!(out, " <{}.{:06}>", nanos / 1_000_000_000, (nanos % 1_000_000_000) / 1000);
    }
}

fn write_arg(
    out: &mut LineBuf,
    arg: Arg,
    call: &Call,
    i: usize,
    result: Option<usize>,
    mem: UserMemory,
    opts: &DecodeOptions,
) {
    let v = call.args[i];
    let v64 = v as u64;
    let _ = match arg {
        Arg::Int => write!(out, "{}", v as i64 as i32),
        Arg::Uint => write!(out, "{v}"),
        Arg::Offset => write!(out, "{}", v as i64),
        Arg::Hex if v == 0 => out.write_str("0"),
        Arg::Hex => write!(out, "{v:#x}"),
        Arg::Octal => write!(out, "{v:03o}"),
        Arg::Ptr => write_ptr(out, v),
        Arg::Fd => write!(out, "{}", v as i32),
        Arg::DirFd => sym::write_dirfd(out, v as i32 as i64),
        Arg::Path => {
            write_cstr(out, v, mem, PATH_SHOWN);
            Ok(())
        }
        Arg::Str => {
            write_cstr(out, v, mem, opts.string_limit);
            Ok(())
        }
        Arg::BufIn(len_arg) => {
            // The kernel consumed only `result` bytes: the rest may be unmapped.
            let consumed = result.unwrap_or(0);
            write_buffer(out, v, call.args[len_arg as usize], consumed, opts);
            Ok(())
        }
        Arg::BufOut => {
            match result {
                Some(n) => write_buffer(out, v, n, n, opts),
                None => {
                    let _ = write_ptr(out, v);
                }
            }
            Ok(())
        }
        Arg::IovIn(count_arg) => {
            let count = call.args[count_arg as usize];
            write_iovec(out, v, count, Transfer::In, result, mem, opts);
            Ok(())
        }
        Arg::IovOut(count_arg) => {
            match result {
                Some(_) => write_iovec(out, v, call.args[count_arg as usize], Transfer::Out, result, mem, opts),
                None => {
                    let _ = write_ptr(out, v);
                }
            }
            Ok(())
        }
        Arg::Argv => {
            write_argv(out, v, mem);
            Ok(())
        }
        Arg::Envp => write_envp(out, v, mem),
        Arg::StatOut => {
            if result.is_some() && v != 0 {
                write_stat(out, v)
            } else {
                write_ptr(out, v)
            }
        }
        Arg::FdPairOut => match (result, mem.read_word(v)) {
            (Some(_), Some(w)) => write!(out, "[{}, {}]", w as u32 as i32, (w >> 32) as u32 as i32),
            _ => write_ptr(out, v),
        },
        Arg::OffsetPtr => match mem.read_word(v) {
            Some(off) if v != 0 => write!(out, "[{}]", off as i64),
            _ => write_ptr(out, v),
        },
        Arg::OpenFlags => sym::write_open_flags(out, v64),
        Arg::Mode | Arg::CreateMode => sym::write_mode(out, v64),
        Arg::AtFlags => sym::write_at_flags(out, v64),
        Arg::Whence => sym::write_whence(out, v64),
        Arg::MmapProt => sym::write_mmap_prot(out, v64),
        Arg::MmapFlags => sym::write_mmap_flags(out, v64),
        Arg::CloneFlags => sym::write_clone_flags(out, v64),
        Arg::Signal => match v as i32 {
            s if (1..=64).contains(&s) => out.write_str(sym::signal_name(s)),
            s => write!(out, "{s}"),
        },
        Arg::FcntlCmd => sym::write_fcntl_cmd(out, v64),
        Arg::AccessMode => sym::write_access_mode(out, v64),
        Arg::FallocMode => sym::write_fallocate_mode(out, v64),
        Arg::SigHow => sym::write_sigprocmask_how(out, v64),
        Arg::Madvise => sym::write_madvise(out, v64),
        Arg::Fadvise => sym::write_fadvise(out, v64),
        Arg::SockDomain => sym::write_socket_domain(out, v64),
        Arg::SockType => sym::write_socket_type(out, v64),
        Arg::RenameFlags => sym::write_rename_flags(out, v64),
        Arg::RwFlags => sym::write_rw_flags(out, v64),
        Arg::SyncRangeFlags => sym::write_sync_file_range_flags(out, v64),
        Arg::WaitOptions => sym::write_wait_options(out, v64),
    };
}

/// Whether open flags create a file, so that the mode argument means something.
fn creates_file(flags: usize) -> bool {
    let flags = flags as i32;
    flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE
}

fn write_ptr(out: &mut LineBuf, v: usize) -> core::fmt::Result {
    if v == 0 {
        out.write_str("NULL")
    } else {
        write!(out, "{v:#x}")
    }
}

/// Appends `bytes` as a C-style quoted string body.
fn write_escaped(out: &mut LineBuf, bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => out.push_bytes(b"\\\""),
            b'\\' => out.push_bytes(b"\\\\"),
            b'\n' => out.push_bytes(b"\\n"),
            b'\t' => out.push_bytes(b"\\t"),
            b'\r' => out.push_bytes(b"\\r"),
            0x20..=0x7e => out.push(b),
            _ => {
                // Short octal as strace does, unless a digit follows.
                let next_is_digit = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
                let _ = if next_is_digit { write!(out, "\\{b:03o}") } else { write!(out, "\\{b:o}") };
            }
        }
    }
}

fn write_cstr(out: &mut LineBuf, addr: usize, mem: UserMemory, limit: usize) {
    // Read in small chunks: the hook may run on a small (signal) stack.
    let mut chunk = [0u8; 128];
    let mut done = 0;
    while done < limit {
        let want = chunk.len().min(limit - done);
        match mem.read_cstr(addr + done, &mut chunk[..want]) {
            Some((len, terminated)) => {
                if done == 0 {
                    out.push(b'"');
                }
                write_escaped(out, &chunk[..len]);
                done += len;
                if terminated {
                    out.push(b'"');
                    return;
                }
                if len < want {
                    break;
                }
            }
            None if done == 0 => {
                let _ = write_ptr(out, addr);
                return;
            }
            None => break,
        }
    }
    out.push_bytes(b"\"...");
}

/// `"bytes"...` for `len` bytes at `addr`, of which the kernel accessed the first `accessed`
/// (those are read directly; a display reaching past them goes through the safe copy).
fn write_buffer(out: &mut LineBuf, addr: usize, len: usize, accessed: usize, opts: &DecodeOptions) {
    let mut buf = [0u8; 128];
    let shown = len.min(opts.string_limit).min(buf.len());
    let mem = UserMemory { trusted: shown <= accessed };
    if addr == 0 || mem.read(addr, &mut buf[..shown]) < shown {
        let _ = write_ptr(out, addr);
        return;
    }
    out.push(b'"');
    write_escaped(out, &buf[..shown]);
    out.push(b'"');
    if shown < len {
        out.push_bytes(b"...");
    }
}

/// Which way an iovec array's bytes went.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transfer {
    /// From the program to the kernel: each buffer is shown whole (up to the limit).
    In,
    /// From the kernel: only the bytes it filled are shown.
    Out,
}

/// `[{iov_base="..", iov_len=N}, ...]`. `result` bytes were moved, spread over the buffers in
/// order; the array itself was read by the kernel when the call succeeded (`mem`).
fn write_iovec(
    out: &mut LineBuf,
    addr: usize,
    count: usize,
    transfer: Transfer,
    result: Option<usize>,
    mem: UserMemory,
    opts: &DecodeOptions,
) {
    if count > 1024 || addr == 0 {
        let _ = write_ptr(out, addr);
        return;
    }
    let mut moved = result.unwrap_or(0);
    out.push(b'[');
    for i in 0..count {
        if i == IOV_SHOWN {
            out.push_bytes(b", ...");
            break;
        }
        let (Some(base), Some(len)) = (mem.read_word(addr + 16 * i), mem.read_word(addr + 16 * i + 8)) else {
            let _ = write_ptr(out, addr);
            break;
        };
        if i > 0 {
            out.push_bytes(b", ");
        }
        out.push_bytes(b"{iov_base=");
        let accessed = (len as usize).min(moved);
        let shown = if transfer == Transfer::Out { accessed } else { len as usize };
        write_buffer(out, base as usize, shown, accessed, opts);
        moved -= accessed;
        let _ = write!(out, ", iov_len={len}}}");
    }
    out.push(b']');
}

fn write_argv(out: &mut LineBuf, addr: usize, mem: UserMemory) {
    if addr == 0 {
        out.push_bytes(b"NULL");
        return;
    }
    out.push(b'[');
    for i in 0.. {
        let Some(p) = mem.read_word(addr + 8 * i) else {
            out.push_bytes(b"...");
            break;
        };
        if p == 0 {
            break;
        }
        if i > 0 {
            out.push_bytes(b", ");
        }
        if i == ARGV_SHOWN {
            out.push_bytes(b"...");
            break;
        }
        write_cstr(out, p as usize, mem, 256);
    }
    out.push(b']');
}

fn write_envp(out: &mut LineBuf, addr: usize, mem: UserMemory) -> core::fmt::Result {
    write_ptr(out, addr)?;
    if addr != 0 {
        let count = (0..4096).take_while(|&i| mem.read_word(addr + 8 * i).is_some_and(|p| p != 0)).count();
        write!(out, " /* {count} vars */")?;
    }
    Ok(())
}

/// `{st_mode=S_IFREG|0644, st_size=123, ...}`; only called after the kernel filled the struct.
fn write_stat(out: &mut LineBuf, addr: usize) -> core::fmt::Result {
    let mem = UserMemory { trusted: true };
    let mut raw = [0u8; core::mem::size_of::<libc::stat>()];
    mem.read(addr, &mut raw);
    let field = |offset: usize, size: usize| {
        let mut b = [0u8; 8];
        b[..size].copy_from_slice(&raw[offset..offset + size]);
        u64::from_ne_bytes(b)
    };
    let mode = field(core::mem::offset_of!(libc::stat, st_mode), 4);
    let size = field(core::mem::offset_of!(libc::stat, st_size), 8);
    out.write_str("{st_mode=")?;
    sym::write_st_mode(out, mode)?;
    write!(out, ", st_size={}, ...}}", size as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(nr: i64, args: [usize; 6], raw: isize) -> String {
        let mut out = LineBuf::new();
        let call = Call { nr: nr as usize, args };
        let opts = DecodeOptions { string_limit: 32, show_time: false };
        write_call(&mut out, &call, Outcome::Returned { raw, nanos: 0 }, &opts);
        String::from_utf8(out.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn openat_decodes_like_strace() {
        let path = b"/etc/passwd\0";
        let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as usize;
        let line = render(libc::SYS_openat, [libc::AT_FDCWD as usize, path.as_ptr() as usize, flags, 0, 0, 0], 3);
        assert_eq!(line, "openat(AT_FDCWD, \"/etc/passwd\", O_RDONLY|O_CLOEXEC) = 3");
    }

    #[test]
    fn errors_show_name_and_text() {
        let path = b"/nope\0";
        let line = render(libc::SYS_openat, [libc::AT_FDCWD as usize, path.as_ptr() as usize, 0, 0, 0, 0], -2);
        assert_eq!(line, "openat(AT_FDCWD, \"/nope\", O_RDONLY) = -1 ENOENT (No such file or directory)");
    }

    #[test]
    fn buffers_are_quoted_and_truncated() {
        let data = [b'x'; 100];
        let line = render(libc::SYS_write, [1, data.as_ptr() as usize, 100, 0, 0, 0], 100);
        assert_eq!(line, format!("write(1, \"{}\"..., 100) = 100", "x".repeat(32)));
        let line = render(libc::SYS_write, [1, b"a\nb".as_ptr() as usize, 3, 0, 0, 0], 3);
        assert_eq!(line, "write(1, \"a\\nb\", 3) = 3");
    }

    #[test]
    fn bad_pointers_print_as_addresses() {
        let line = render(libc::SYS_write, [1, 8, 3, 0, 0, 0], -(libc::EFAULT as isize));
        assert_eq!(line, "write(1, 0x8, 3) = -1 EFAULT (Bad address)");
        let line = render(libc::SYS_read, [0, 8, 3, 0, 0, 0], -(libc::EFAULT as isize));
        assert_eq!(line, "read(0, 0x8, 3) = -1 EFAULT (Bad address)");
    }

    #[test]
    fn lseek_and_mmap() {
        let line = render(libc::SYS_lseek, [3, 10, libc::SEEK_END as usize, 0, 0, 0], 110);
        assert_eq!(line, "lseek(3, 10, SEEK_END) = 110");
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as usize;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as usize;
        let line = render(libc::SYS_mmap, [0, 4096, prot, flags, usize::MAX, 0], 0x7f0000000000);
        assert_eq!(line, "mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000");
    }

    #[test]
    fn iovecs_show_each_buffer() {
        let a = b"abc";
        let b = b"defg";
        let iov = [
            libc::iovec { iov_base: a.as_ptr() as *mut _, iov_len: 3 },
            libc::iovec { iov_base: b.as_ptr() as *mut _, iov_len: 4 },
        ];
        let line = render(libc::SYS_writev, [1, iov.as_ptr() as usize, 2, 0, 0, 0], 7);
        assert_eq!(line, "writev(1, [{iov_base=\"abc\", iov_len=3}, {iov_base=\"defg\", iov_len=4}], 2) = 7");
    }

    #[test]
    fn partial_vectors_never_read_what_the_kernel_skipped() {
        let a = b"abc";
        let iov = [
            libc::iovec { iov_base: a.as_ptr() as *mut _, iov_len: 3 },
            libc::iovec { iov_base: 8 as *mut _, iov_len: 4 },
        ];
        // A short writev: only the first buffer was consumed; the second is unmapped.
        let line = render(libc::SYS_writev, [1, iov.as_ptr() as usize, 2, 0, 0, 0], 3);
        assert_eq!(line, "writev(1, [{iov_base=\"abc\", iov_len=3}, {iov_base=0x8, iov_len=4}], 2) = 3");
    }

    #[test]
    fn exits_are_pending() {
        let mut out = LineBuf::new();
        let call = Call { nr: libc::SYS_exit_group as usize, args: [3, 0, 0, 0, 0, 0] };
        write_call(&mut out, &call, Outcome::Pending, &DecodeOptions::default());
        assert_eq!(out.as_bytes(), b"exit_group(3) = ?");
    }
}
