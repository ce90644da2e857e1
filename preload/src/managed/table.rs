//! The process's managed files: one [`Inode`] per file (engine state, shared by every
//! descriptor), one [`OpenFile`] per open file description (offset and flags, shared by dup'd
//! descriptors), and the descriptor numbers that point to them.

use std::cell::Cell;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU64, AtomicU8,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use nvmmio_core::engine::ManagedFile;
use nvmmio_core::persist::{LogFile, MappedStorage};

pub type Engine = ManagedFile<LogFile, MappedStorage>;

/// What serves a managed file's data calls.
pub enum State {
    /// The engine (logs in user space).
    Engine(Box<Engine>),
    /// The kernel: the file was handed back (the program mapped it, or sharing requires it).
    /// The log was checkpointed and removed first.
    Kernel,
}

pub struct Inode {
    pub key: (u64, u64),
    /// The managed directory the file is in (its log lives in `dir/.nvmmio`).
    pub dir: String,
    /// The log file's path (NUL-terminated), removed when the last descriptor closes.
    pub log_path: std::ffi::CString,
    /// The second log's path, once the file has one (background checkpoints).
    pub spare_path: Mutex<Option<std::ffi::CString>>,
    /// Written by every call that changes the file; shared by reads.
    pub state: RwLock<State>,
    /// The engine's descriptor of the data file after the kernel took the file over, kept open
    /// until the program's last descriptor closes (see [`MappedStorage::into_fd`]), or -1.
    ///
    /// [`MappedStorage::into_fd`]: nvmmio_core::persist::MappedStorage::into_fd
    pub parked_fd: AtomicI32,
    /// When a served call last changed the file (ns since the epoch; 0: none yet): `stat`
    /// reports it as mtime and ctime, which the kernel moves only when the data file changes.
    pub modified_ns: AtomicU64,
    /// A stat reported `modified_ns` since it last moved (see [`Inode::touch`]).
    pub modified_seen: AtomicBool,
    /// The file system's largest file size (past it writes fail with EFBIG, seeks with EINVAL).
    pub max_size: u64,
    /// The log files the file's mark names ([`nvmmio_core::persist::mark`]), and the
    /// `DURABLE` and `UNSUPPORTED` flags of `managed::marks`.
    pub mark: AtomicU8,
    /// The checkpoint thread's own mapping of the data file (tmpfs only; made at its first
    /// job, dropped when the engine lets go of the file; see `background`).
    pub checkpoint_view: Mutex<Option<nvmmio_core::persist::Mapping>>,
    /// The hash of the file's real path if this process created it empty (or found it so),
    /// else 0: learned as short-lived if the file dies before its log is applied.
    pub short_lived_name: u64,
}

impl Inode {
    /// A file this process has open while other processes do too: the kernel serves it.
    pub fn served_by_kernel(key: (u64, u64), dir: &str) -> Inode {
        Inode {
            key,
            dir: dir.to_string(),
            log_path: std::ffi::CString::default(),
            spare_path: Mutex::new(None),
            state: RwLock::new(State::Kernel),
            parked_fd: AtomicI32::new(-1),
            modified_ns: AtomicU64::new(0),
            modified_seen: AtomicBool::new(false),
            max_size: i64::MAX as u64,
            mark: AtomicU8::new(0),
            checkpoint_view: Mutex::new(None),
            short_lived_name: 0,
        }
    }

    /// A served call changed the file now. As the kernel stamps file times (multigrain
    /// timestamps): with the last tick's time, unless a stat reported the time since it last
    /// moved; then with the fine clock, so that a change after a stat always shows. Never
    /// backwards (a tick's time may be older than a fine time given before). The fine clock
    /// on every write cost 8% of a 128-byte append.
    pub fn touch(&self) {
        let now = if self.modified_seen.load(Relaxed) {
            self.modified_seen.store(false, Relaxed);
            nvmmio_core::sys::realtime_ns()
        } else {
            nvmmio_core::sys::realtime_coarse_ns()
        };
        if now > self.modified_ns.load(Relaxed) {
            self.modified_ns.store(now, Relaxed);
        }
    }

    /// When a served call last changed the file, for a stat that reports it.
    pub fn modified_for_stat(&self) -> u64 {
        if !self.modified_seen.load(Relaxed) {
            self.modified_seen.store(true, Relaxed);
        }
        self.modified_ns.load(Relaxed)
    }

    /// Closes the parked data descriptor (the program is closing its last one).
    pub fn close_parked(&self) {
        let fd = self.parked_fd.swap(-1, Relaxed);
        if fd >= 0 {
            crate::reserved_fd::release_and_close(fd);
        }
    }

    pub fn lock(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The file alone if no other thread has it now.
    pub fn try_lock(&self) -> Option<RwLockWriteGuard<'_, State>> {
        match self.state.try_write() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct OpenFile {
    pub inode: Arc<Inode>,
    /// The file offset of this open file description.
    pub pos: Mutex<u64>,
    /// Open flags (access mode, O_APPEND), updated by F_SETFL.
    pub flags: AtomicI32,
}

impl OpenFile {
    pub fn readable(&self) -> bool {
        self.flags.load(Relaxed) & libc::O_ACCMODE != libc::O_WRONLY
    }

    pub fn writable(&self) -> bool {
        self.flags.load(Relaxed) & libc::O_ACCMODE != libc::O_RDONLY
    }

    pub fn append(&self) -> bool {
        self.flags.load(Relaxed) & libc::O_APPEND != 0
    }

    pub fn lock_pos(&self) -> MutexGuard<'_, u64> {
        self.pos.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Descriptor number -> open file description.
static FDS: RwLock<Vec<Option<Arc<OpenFile>>>> = RwLock::new(Vec::new());
/// Open inodes, by (device, inode number).
static INODES: Mutex<Vec<Arc<Inode>>> = Mutex::new(Vec::new());

/// Bumped by every change to the descriptor table: a thread's remembered lookup stands while
/// it is unchanged.
static GENERATION: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's last lookup on its data path: descriptor, generation, open file.
    static LAST: Cell<Option<(i32, u64, Arc<OpenFile>)>> = const { Cell::new(None) };
}

/// Runs `f` on the open file of `fd`, if it is managed. A thread calling on the same
/// descriptor again and again (the data path) finds it without the table's lock and without a
/// reference count to move: four locked instructions a call, on cache lines every thread
/// writes (`bench/write_loop.c`: 128-byte appends 5% faster with one thread, 9% with two; 4 KiB
/// random writes 13% with two).
///
/// The remembered file stays alive until the thread's next lookup or its exit (a closed file's
/// `Inode`, not its engine). Not in the program's signal handlers: the first use of the
/// thread-local registers its destructor, which allocates with glibc's malloc.
pub fn with_file<R>(fd: i32, f: impl FnOnce(&Arc<OpenFile>) -> Option<R>) -> Option<R> {
    if crate::handler_alloc::in_handler() {
        return get(fd).and_then(|file| f(&file));
    }
    let generation = GENERATION.load(Acquire);
    // Taken out while in use: a nested call (a handler that interrupted this one) finds nothing.
    let last = LAST.try_with(Cell::take).ok().flatten();
    let file = match last {
        Some((cached_fd, cached_generation, file)) if cached_fd == fd && cached_generation == generation => file,
        _ => get(fd)?,
    };
    let result = f(&file);
    let _ = LAST.try_with(|last| last.set(Some((fd, generation, file))));
    result
}

pub fn get(fd: i32) -> Option<Arc<OpenFile>> {
    let fds = FDS.read().unwrap_or_else(|p| p.into_inner());
    fds.get(usize::try_from(fd).ok()?)?.clone()
}

pub fn set(fd: i32, file: Option<Arc<OpenFile>>) {
    let Ok(i) = usize::try_from(fd) else { return };
    let mut fds = FDS.write().unwrap_or_else(|p| p.into_inner());
    if fds.len() <= i {
        if file.is_none() {
            return;
        }
        fds.resize(i + 1, None);
    }
    fds[i] = file;
    GENERATION.fetch_add(1, Release);
    super::mark(fd, fds[i].is_some());
}

/// Every descriptor with its open file (for exec, fork and exit).
pub fn all_fds() -> Vec<(i32, Arc<OpenFile>)> {
    let fds = FDS.read().unwrap_or_else(|p| p.into_inner());
    fds.iter().enumerate().filter_map(|(i, f)| Some((i as i32, f.clone()?))).collect()
}

/// Whether any descriptor still refers to `inode`.
pub fn inode_in_use(inode: &Arc<Inode>) -> bool {
    let fds = FDS.read().unwrap_or_else(|p| p.into_inner());
    fds.iter().flatten().any(|f| Arc::ptr_eq(&f.inode, inode))
}

pub fn find_inode(key: (u64, u64)) -> Option<Arc<Inode>> {
    INODES.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|i| i.key == key).cloned()
}

/// Whether any open file is in managed directory `dir` (each holds a lock in its lock file,
/// see `share`).
pub fn any_inode_in(dir: &str) -> bool {
    INODES.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|i| i.dir == dir)
}

pub fn add_inode(inode: Arc<Inode>) {
    let mut inodes = INODES.lock().unwrap_or_else(|p| p.into_inner());
    inodes.push(inode);
}

pub fn remove_inode(inode: &Arc<Inode>) {
    let mut inodes = INODES.lock().unwrap_or_else(|p| p.into_inner());
    inodes.retain(|i| !Arc::ptr_eq(i, inode));
}

pub fn all_inodes() -> Vec<Arc<Inode>> {
    INODES.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The tables' locks and every file's, held across a fork so that the child never inherits
/// one locked by another thread (it would wait forever).
pub struct TablesHeld {
    _files: Vec<RwLockWriteGuard<'static, State>>,
    _fds: std::sync::RwLockWriteGuard<'static, Vec<Option<Arc<OpenFile>>>>,
    _inodes: MutexGuard<'static, Vec<Arc<Inode>>>,
}

/// Lock order: a file's lock before the descriptor table (a file handed to the kernel looks
/// its descriptors up with its lock held).
pub fn hold() -> TablesHeld {
    let inodes = INODES.lock().unwrap_or_else(|p| p.into_inner());
    // A guard must outlive the fork, so each file it locks is kept alive for good: a few
    // bytes per open file and fork, for a guard the borrow checker can see is sound.
    let files = inodes
        .iter()
        .map(|inode| {
            let kept: &'static Arc<Inode> = Box::leak(Box::new(inode.clone()));
            kept.lock()
        })
        .collect();
    let fds = FDS.write().unwrap_or_else(|p| p.into_inner());
    TablesHeld { _files: files, _fds: fds, _inodes: inodes }
}
