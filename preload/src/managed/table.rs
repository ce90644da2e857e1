//! The process's managed files: one [`Inode`] per file (engine state, shared by every
//! descriptor), one [`OpenFile`] per open file description (offset and flags, shared by dup'd
//! descriptors), and the descriptor numbers that point to them.

use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
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
}

impl Inode {
    pub fn lock(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
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

/// Files currently managed, readable without a lock (most stat calls then need nothing else).
static INODE_COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn any_inode() -> bool {
    INODE_COUNT.load(Relaxed) > 0
}

pub fn find_inode(key: (u64, u64)) -> Option<Arc<Inode>> {
    INODES.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|i| i.key == key).cloned()
}

pub fn add_inode(inode: Arc<Inode>) {
    let mut inodes = INODES.lock().unwrap_or_else(|p| p.into_inner());
    inodes.push(inode);
    INODE_COUNT.store(inodes.len(), Relaxed);
}

pub fn remove_inode(inode: &Arc<Inode>) {
    let mut inodes = INODES.lock().unwrap_or_else(|p| p.into_inner());
    inodes.retain(|i| !Arc::ptr_eq(i, inode));
    INODE_COUNT.store(inodes.len(), Relaxed);
}

pub fn all_inodes() -> Vec<Arc<Inode>> {
    INODES.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The tables' locks, held across a fork so that the child never inherits one locked by
/// another thread (it would wait forever).
pub struct TablesHeld {
    _fds: std::sync::RwLockWriteGuard<'static, Vec<Option<Arc<OpenFile>>>>,
    _inodes: MutexGuard<'static, Vec<Arc<Inode>>>,
}

pub fn hold() -> TablesHeld {
    let fds = FDS.write().unwrap_or_else(|p| p.into_inner());
    let inodes = INODES.lock().unwrap_or_else(|p| p.into_inner());
    TablesHeld { _fds: fds, _inodes: inodes }
}

/// Forgets everything (a forked child hands its files to the kernel).
pub fn clear() {
    let mut fds = FDS.write().unwrap_or_else(|p| p.into_inner());
    for (i, f) in fds.iter_mut().enumerate() {
        if f.take().is_some() {
            super::mark(i as i32, false);
        }
    }
    INODES.lock().unwrap_or_else(|p| p.into_inner()).clear();
    INODE_COUNT.store(0, Relaxed);
}
