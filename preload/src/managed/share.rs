//! Files shared between processes: a file is served by the engine only while one process under
//! nvmmio has it open; as soon as a second one opens it, the first hands it to the kernel and
//! both use the kernel path for as long as they keep it open. Each then sees every byte the
//! other wrote, and the sizes agree, exactly as without nvmmio.
//!
//! Coordination goes through one lock file per managed directory, `DIR/.nvmmio/users`, where
//! each file owns two lock bytes (picked by its inode number):
//! - the *users* byte: every process with the file open holds a shared lock on it (an open file
//!   description lock, so that the kernel drops it when the process dies). A process that can
//!   turn it into an exclusive lock is alone with the file and may serve it with the engine; it
//!   holds the exclusive lock while it recovers and opens the log, so that nobody joins midway.
//! - the *owner* byte: the process serving the file with the engine holds a process lock on it,
//!   whose owner `F_GETLK` names. A newcomer asks that process, on its socket
//!   `@nvmmio-PID` (served by a thread of its own), to hand the file over, and waits for the
//!   answer: the owner checkpoints, hands its offsets to the kernel and drops the owner byte.
//!
//! The owner can also be asked for the file's size, so that `stat` in another process under
//! nvmmio reports the size the owner's writes gave the file.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use nvmmio_core::sys::ipc::{self, LockKind};
use nvmmio_core::sys::{self, Errno};

use super::table::{self, State};
use crate::reserved_fd;

/// How a process serves a file it opens.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// Alone with the file: the engine serves it (the users byte is held exclusively until
    /// [`settle`]).
    Owner,
    /// Others have it open: the kernel serves it.
    Kernel,
}

/// What one process asks another.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Ask {
    HandOver = 1,
    Size = 2,
}

/// The answer when the asked process does not serve the file.
const NOT_HERE: u64 = u64::MAX;

/// Each managed directory's lock file, opened once per process (close-on-exec, reserved).
static USERS: Mutex<Vec<(String, i32)>> = Mutex::new(Vec::new());

/// The listening socket of this process's answering thread, or -1.
static LISTENER: AtomicI32 = AtomicI32::new(-1);
static LISTENER_STARTING: AtomicBool = AtomicBool::new(false);

fn users_byte(key: (u64, u64)) -> i64 {
    ((key.1 % (1 << 61)) * 2) as i64
}

fn owner_byte(key: (u64, u64)) -> i64 {
    users_byte(key) + 1
}

fn users_path(dir: &str) -> Result<std::ffi::CString, Errno> {
    cstring(format!("{dir}/.nvmmio/users"))
}

/// This process's descriptor of `dir`'s lock file (opened and created on first use).
fn users_fd(dir: &str) -> Result<i32, Errno> {
    let mut users = USERS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&(_, fd)) = users.iter().find(|(d, _)| d == dir) {
        return Ok(fd);
    }
    let _ = sys::mkdir(&cstring(format!("{dir}/.nvmmio"))?, 0o700);
    let fd = sys::open(&users_path(dir)?, libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC, 0o600)?;
    let fd = reserved_fd::reserve(fd)?;
    users.push((dir.to_string(), fd));
    Ok(fd)
}

/// Whether `fd` is still the lock file of its directory: the last process to exit removes it
/// (see [`at_exit`]), and a lock taken on a removed one coordinates nothing.
fn still_current(fd: i32) -> bool {
    sys::fstat(fd).is_ok_and(|st| st.st_nlink > 0)
}

/// [`still_current`], for the lock file of `dir` in which this process just took a lock (the
/// opening lock held). A lock it held already, for another file it has open, kept it current:
/// the last process removes it only when it can lock all of it.
fn current_with_lock(fd: i32, dir: &str) -> bool {
    table::any_inode_in(dir) || still_current(fd)
}

/// Forgets this process's descriptor of `dir`'s lock file (it was removed).
fn forget_users_fd(dir: &str) {
    let mut users = USERS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(i) = users.iter().position(|(d, _)| d == dir) {
        reserved_fd::release_and_close(users.swap_remove(i).1);
    }
}

/// At exit (or exec): the lock files go, each removed if no other process holds a lock in it.
pub fn at_exit() {
    for (dir, fd) in std::mem::take(&mut *USERS.lock().unwrap_or_else(|p| p.into_inner())) {
        if ipc::description_lock_all(fd, LockKind::Exclusive).is_ok() && still_current(fd) {
            if let Ok(path) = users_path(&dir) {
                let _ = sys::unlink(&path);
            }
        }
        reserved_fd::release_and_close(fd);
    }
}

fn cstring(s: String) -> Result<std::ffi::CString, Errno> {
    std::ffi::CString::new(s).map_err(|_| Errno(libc::EINVAL))
}

/// Joins the processes that have the file `key` in `dir` open, and decides who serves it: this
/// process, with the engine, if it is alone and `engine` asks for it; else the kernel (see
/// `short_lived` for files joined without `engine`: while this process holds the users byte no
/// other can become the owner). An owner elsewhere is asked to hand the file to the kernel
/// first (and waited for). The opening lock is held.
pub fn join(dir: &str, key: (u64, u64), engine: bool) -> Result<Role, Errno> {
    if !engine && join_unowned(dir, key) {
        return Ok(Role::Kernel);
    }
    // An owner that never answers (stopped, say) is given up on after about 10 s.
    for _ in 0..10_000 {
        let fd = users_fd(dir)?;
        ipc::description_lock(fd, LockKind::Shared, users_byte(key), true)?;
        if !current_with_lock(fd, dir) {
            forget_users_fd(dir);
            continue;
        }
        if engine && ipc::description_lock(fd, LockKind::Exclusive, users_byte(key), false).is_ok() {
            if ensure_listener() && ipc::process_lock(fd, LockKind::Exclusive, owner_byte(key)).is_ok() {
                return Ok(Role::Owner);
            }
            ipc::description_lock(fd, LockKind::Shared, users_byte(key), false)?;
            return Ok(Role::Kernel);
        }
        let Some(pid) = ipc::lock_holder(fd, owner_byte(key))? else { return Ok(Role::Kernel) };
        match ask(pid, Ask::HandOver, key) {
            Ok(_) => return Ok(Role::Kernel),
            // The owner died or is not listening yet: look again.
            Err(_) => {
                sys::sleep_ms(1);
            }
        }
    }
    Ok(Role::Kernel)
}

/// Joins the users of a file that no process serves with the engine nor is setting up, with
/// one call: shared locks on its users byte and its owner byte at once (an owner holds the owner
/// byte exclusively, one setting up the users byte). Holding the owner byte shared too changes
/// nothing for others: while the users byte is held no other process can become the owner, and
/// [`lock_holder`](ipc::lock_holder) names no process for a description lock. False: the slow
/// way (an owner to ask, or one to wait for).
fn join_unowned(dir: &str, key: (u64, u64)) -> bool {
    let Ok(fd) = users_fd(dir) else { return false };
    if ipc::description_lock_pair(fd, LockKind::Shared, users_byte(key)).is_err() {
        return false;
    }
    if current_with_lock(fd, dir) {
        return true;
    }
    let _ = ipc::description_lock_pair(fd, LockKind::Unlock, users_byte(key));
    forget_users_fd(dir);
    false
}

/// The owner has set the file up: others may join (and will ask it to hand over).
pub fn settle(dir: &str, key: (u64, u64)) {
    if let Ok(fd) = users_fd(dir) {
        let _ = ipc::description_lock(fd, LockKind::Shared, users_byte(key), false);
    }
}

/// This process no longer serves the file (`owner`: it may have owned it) or no longer has it
/// open (`users`).
pub fn leave(dir: &str, key: (u64, u64), owner: bool, users: bool) {
    let Ok(fd) = users_fd(dir) else { return };
    if owner {
        let _ = ipc::process_lock(fd, LockKind::Unlock, owner_byte(key));
    }
    if users {
        // The owner byte too, which `join_unowned` holds shared (a description lock: this
        // process's own lock as the owner, a process lock, stays).
        let _ = ipc::description_lock_pair(fd, LockKind::Unlock, users_byte(key));
    }
}

/// If another process serves file `key` in `dir` with the engine, asks it to hand the file
/// to the kernel.
pub fn hand_over_elsewhere(dir: &str, key: (u64, u64)) {
    if let Some(pid) = owner_elsewhere(dir, key) {
        let _ = ask(pid, Ask::HandOver, key);
    }
}

/// The process serving file `key` in `dir` with the engine, if another one does.
fn owner_elsewhere(dir: &str, key: (u64, u64)) -> Option<i32> {
    let mut fd = users_fd(dir).ok()?;
    if !still_current(fd) {
        forget_users_fd(dir);
        fd = users_fd(dir).ok()?;
    }
    ipc::lock_holder(fd, owner_byte(key)).ok()?
}

/// The logical size of file `key` in `dir` as its owner in another process sees it, and when
/// a call it served last changed the file (ns since the epoch, 0 if none), if one serves it
/// with the engine.
pub fn size_elsewhere(dir: &str, key: (u64, u64)) -> Option<(u64, u64)> {
    let pid = owner_elsewhere(dir, key)?;
    ask(pid, Ask::Size, key).ok().filter(|&(size, _)| size != NOT_HERE)
}

/// Asks process `pid` about file `key`; waits for the answer (two words) while `pid` still
/// exists.
fn ask(pid: i32, what: Ask, key: (u64, u64)) -> Result<(u64, u64), Errno> {
    let conn = ipc::connect_abstract(socket_name(pid).as_bytes())?;
    let mut request = [0u8; 17];
    request[0] = what as u8;
    request[1..9].copy_from_slice(&key.0.to_ne_bytes());
    request[9..].copy_from_slice(&key.1.to_ne_bytes());
    let answer = ipc::send_all(conn, &request).and_then(|()| {
        while !ipc::wait_readable(conn, 1000)? {
            if !sys::process_exists(pid) {
                return Err(Errno(libc::ESRCH));
            }
        }
        let mut answer = [0u8; 16];
        ipc::read_exact(conn, &mut answer)?;
        let word = |i: usize| u64::from_ne_bytes(answer[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        Ok((word(0), word(1)))
    });
    let _ = sys::close(conn);
    answer
}

fn socket_name(pid: i32) -> String {
    format!("nvmmio-{pid}")
}

/// Starts this process's answering thread if it is not running; false if it cannot be.
fn ensure_listener() -> bool {
    if LISTENER.load(Relaxed) >= 0 {
        return true;
    }
    if LISTENER_STARTING.swap(true, Relaxed) {
        // Another thread is starting it.
        while LISTENER_STARTING.load(Relaxed) && LISTENER.load(Relaxed) < 0 {
            std::thread::yield_now();
        }
        return LISTENER.load(Relaxed) >= 0;
    }
    let started =
        ipc::listen_abstract(socket_name(sys::getpid()).as_bytes()).and_then(reserved_fd::reserve).and_then(|fd| {
            let builder = std::thread::Builder::new().name("nvmmio-share".into()).stack_size(256 << 10);
            let spawned = super::spawn_quiet(builder, move || answer(fd));
            match spawned {
                Ok(_) => Ok(fd),
                Err(_) => {
                    reserved_fd::release_and_close(fd);
                    Err(Errno(libc::EAGAIN))
                }
            }
        });
    if let Ok(fd) = started {
        LISTENER.store(fd, Relaxed);
    }
    LISTENER_STARTING.store(false, Relaxed);
    started.is_ok()
}

/// The answering thread: one question at a time.
fn answer(listener: i32) {
    let _inside = crate::guard::enter();
    // Wait with poll, then accept: a blocked accept would hold the program's next descriptor
    // number (the kernel reserves it before it waits).
    loop {
        if !ipc::wait_readable(listener, -1).unwrap_or(false) {
            continue;
        }
        let Ok(conn) = ipc::accept(listener) else { continue };
        let mut request = [0u8; 17];
        if ipc::wait_readable(conn, 1000).unwrap_or(false) && ipc::read_exact(conn, &mut request).is_ok() {
            let key = (
                u64::from_ne_bytes(request[1..9].try_into().unwrap_or_default()),
                u64::from_ne_bytes(request[9..].try_into().unwrap_or_default()),
            );
            let (first, second) = match request[0] {
                x if x == Ask::HandOver as u8 => (hand_over(key), 0),
                x if x == Ask::Size as u8 => size_here(key),
                _ => (NOT_HERE, 0),
            };
            let mut reply = [0u8; 16];
            reply[..8].copy_from_slice(&first.to_ne_bytes());
            reply[8..].copy_from_slice(&second.to_ne_bytes());
            let _ = ipc::send_all(conn, &reply);
        }
        let _ = sys::close(conn);
    }
}

/// Another process opened file `key`: the kernel serves it here from now on.
fn hand_over(key: (u64, u64)) -> u64 {
    let Some(inode) = table::find_inode(key) else { return NOT_HERE };
    if matches!(&*inode.read(), State::Engine(_)) {
        // It gives up the owner byte too.
        super::hand_to_kernel(&inode);
    } else {
        leave(&inode.dir, key, true, false);
    }
    0
}

fn size_here(key: (u64, u64)) -> (u64, u64) {
    let Some(inode) = table::find_inode(key) else { return (NOT_HERE, 0) };
    let state = inode.read();
    match &*state {
        State::Engine(engine) => (engine.size(), inode.modified_for_stat()),
        State::Kernel => (NOT_HERE, 0),
    }
}

/// In a forked child: the parent's lock descriptions and socket are the parent's. The child
/// opens its own lock files and holds the users byte of every file it inherited (all served by
/// the kernel: the parent handed them over before the fork).
pub fn after_fork_in_child(files: &[Arc<table::Inode>]) {
    for (_, fd) in std::mem::take(&mut *USERS.lock().unwrap_or_else(|p| p.into_inner())) {
        reserved_fd::release_and_close(fd);
    }
    let listener = LISTENER.swap(-1, Relaxed);
    if listener >= 0 {
        reserved_fd::release_and_close(listener);
    }
    LISTENER_STARTING.store(false, Relaxed);
    for inode in files {
        if let Ok(fd) = users_fd(&inode.dir) {
            let _ = ipc::description_lock(fd, LockKind::Shared, users_byte(inode.key), true);
        }
    }
}
