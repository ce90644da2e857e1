"""Small full-file-system cases for tests/full_disk.rs, each the shortest way found to show one
behaviour. usage: enospc_cases.py CASE MOUNT [STEP SIDE]. The managed directory is MOUNT/m (made
by the test); MOUNT/filler, outside it, fills the file system; SIDE, a file elsewhere, carries
what one step tells the next. A case prints what it saw, then
"ok" if the file behaved as it does through the kernel, else "FAIL: ..."."""

import os
import sys
import time

case, mount = sys.argv[1], sys.argv[2]
step, side = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else ("", "")
path = f"{mount}/m/f"


def fill(leave=0):
    """Fills the file system with MOUNT/filler, then gives back `leave` bytes."""
    with open(f"{mount}/filler", "ab", buffering=0) as f:
        try:
            while True:
                f.write(b"z" * 4096)
        except OSError:
            pass
        if leave:
            f.truncate(f.tell() - leave)


def result(failures):
    print("ok" if not failures else "FAIL: " + "; ".join(failures))


def attempt(what, call):
    """Runs `call`; returns its result, or the OSError's errno name."""
    try:
        r = call()
        print(f"{what}: {r}")
        return r
    except OSError as e:
        import errno

        print(f"{what}: {errno.errorcode[e.errno]}")
        return errno.errorcode[e.errno]


if case == "failed-write":
    # A 100 KiB overwrite on a full file system: all of it, or none of it.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.pwrite(fd, b"a" * (256 << 10), 0)
    os.fsync(fd)
    fill()
    r = attempt("pwrite of 100 KiB", lambda: os.pwrite(fd, b"b" * (100 << 10), 0))
    changed = os.pread(fd, 256 << 10, 0).count(b"b")
    print("bytes changed:", changed)
    result([] if changed == (r if isinstance(r, int) else 0) else [f"{changed} bytes changed by a call that returned {r}"])

elif case == "room-made":
    # Overwrites until ENOSPC, then 1 MiB removed: a 100-byte overwrite must go through.
    with open(f"{mount}/filler", "wb") as f:
        f.write(b"z" * (1 << 20))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.pwrite(fd, b"a" * (256 << 10), 0)
    os.fsync(fd)
    n = 0
    try:
        while n < 5000:  # the kernel never runs out: overwrites need no room
            os.pwrite(fd, b"b" * 4096, (n % 64) * 4096)
            os.fsync(fd)
            n += 1
    except OSError as e:
        print(f"overwrite and fsync {n}: {os.strerror(e.errno)}")
    os.unlink(f"{mount}/filler")
    st = os.statvfs(mount)
    print("free KiB after removing 1 MiB:", st.f_bavail * st.f_frsize >> 10)
    r = attempt("100-byte overwrite", lambda: os.pwrite(fd, b"c" * 100, 0))
    result([] if r == 100 else [f"a 100-byte overwrite with {st.f_bavail * st.f_frsize >> 10} KiB free: {r}"])

elif case == "background-checkpoint":
    # With NVMMIO_IN_PLACE_FROM=1g NVMMIO_CHECKPOINT_AT=64k: the checkpoint thread finds no room
    # for the blocks it applies; the fsynced blocks must stay, through close and reopen.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    for i in range(3):  # both logs grow to hold 1 MiB of blocks
        os.pwrite(fd, bytes([i + 1]) * (1 << 20), 0)
        os.fsync(fd)
        time.sleep(0.1)
    fill()
    data = bytes(range(256)) * 16 * 32
    n = attempt("pwrite of 32 blocks past the end", lambda: os.pwrite(fd, data, 1 << 20))
    data = data[: n if isinstance(n, int) else 0]  # the kernel finds no room
    attempt("fsync", lambda: os.fsync(fd))
    time.sleep(0.2)  # the checkpoint thread runs out of room
    failures = []
    back = attempt("read back", lambda: os.pread(fd, 1 << 20, 1 << 20) == data)
    if back is not True:
        failures.append(f"reading the fsynced blocks back: {back}")
    os.unlink(f"{mount}/filler")
    for i in range(3):  # room again: go on writing elsewhere, then close
        os.pwrite(fd, b"\x09" * (256 << 10), 0)
        os.fsync(fd)
        time.sleep(0.1)
    os.close(fd)
    with open(path, "rb") as f:
        kept = f.read()[1 << 20:] == data
    print("fsynced blocks in the file after close:", kept)
    if not kept:
        failures.append("fsynced blocks lost after close")
    result(failures)

elif case == "holes":
    # A sparse file (MOUNT/m/f made with truncate -s 256K by the test) on a full file system:
    # holes read as zeros, a write into one fails with ENOSPC.
    fd = os.open(path, os.O_RDWR)
    os.pwrite(fd, b"x", 0)
    os.fsync(fd)
    print("read before:", os.pread(fd, 4096, 8192) == bytes(4096))
    fill()
    zeros = attempt("read a hole", lambda: os.pread(fd, 4096, 100000) == bytes(4096))
    wrote = attempt("pwrite 100 bytes into a hole", lambda: os.pwrite(fd, b"y" * 100, 150000))
    failures = [] if zeros is True else [f"reading a hole: {zeros}"]
    if wrote not in (100, "ENOSPC"):
        failures.append(f"writing into a hole: {wrote}")
    result(failures)

elif case == "hole-write":
    # A logged write into a hole below the committed size (a truncate upwards, fsynced) on a
    # full file system: ENOSPC from the write, as the kernel gives it (a checkpoint that met it
    # later would leave the log, and refuse the next open); fsync, close and a reopen go on.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.pwrite(fd, b"x" * 4096, 0)
    os.ftruncate(fd, 1 << 20)
    os.fsync(fd)
    fill()
    wrote = attempt("pwrite 100 bytes into the hole", lambda: os.pwrite(fd, b"y" * 100, 512 << 10))
    synced = attempt("fsync", lambda: os.fsync(fd))
    os.close(fd)
    failures = [] if wrote == "ENOSPC" else [f"a write into a hole on a full file system: {wrote}"]
    if synced is not None:
        failures.append(f"fsync: {synced}")
    fd = attempt("reopen", lambda: os.open(path, os.O_RDWR))
    if isinstance(fd, int):
        want = b"x" * 4096 + bytes((1 << 20) - 4096)
        if os.pread(fd, 2 << 20, 0) != want:
            failures.append("contents after reopen differ")
    else:
        failures.append(f"reopen: {fd}")
    result(failures)

elif case == "extend-keeps-reserved":
    # ext4 with NVMMIO_IN_PLACE_FROM=64k: 8 KiB logged past the data file's end (below 64 KiB)
    # have their blocks reserved there; an append in place that finds too little room fails,
    # and must not give those blocks back (whoever takes them would leave the fsync without
    # room to publish them).
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.pwrite(fd, b"a" * 8192, 0)
    fill(leave=16 << 10)
    n = attempt("pwrite 1 MiB at 1 MiB", lambda: os.pwrite(fd, b"b" * (1 << 20), 1 << 20))
    fill()
    synced = attempt("fsync", lambda: os.fsync(fd))
    os.close(fd)
    with open(path, "rb") as f:
        back = f.read()
    want = b"a" * 8192
    if isinstance(n, int) and n > 0:  # the kernel writes what fits
        want += bytes((1 << 20) - 8192) + b"b" * n
    failures = [] if synced is None else [f"fsync: {synced}"]
    if back != want:
        failures.append(f"contents differ: {len(back)} bytes, {back[:8192].count(b'a')} of the 8 KiB logged")
    result(failures)

elif case == "recover":
    # step crash: an fsync whose commit is logged but whose blocks may never reach the data file
    # (no room), then SIGKILL; step later: the file system still full, the file is opened,
    # overwritten and fsynced; step reopen: with room, opened again.
    if step == "crash":
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.pwrite(fd, b"a" * 100, 0)
        os.fsync(fd)
        fill()
        n = attempt("pwrite 8 KiB", lambda: os.pwrite(fd, b"b" * 8192, 0))
        with open(side, "w") as f:
            f.write(str(n if isinstance(n, int) else 0))
        attempt("fsync", lambda: os.fsync(fd))
        sys.stdout.flush()
        os.kill(os.getpid(), 9)
    fd = os.open(path, os.O_RDWR)
    head, size = os.pread(fd, 3, 0), os.fstat(fd).st_size
    print("after open:", head, size)
    with open(side) as f:
        written = int(f.read())
    failures = []
    if step == "later":
        # What the last fsync covered, or that plus the whole 8 KiB write.
        if (head, size) not in ((b"aaa", 100), (b"bbb", max(100, written))):
            failures.append(f"neither the fsynced state nor the write after it: {head} {size}")
        os.pwrite(fd, b"NEW", 0)
        os.fsync(fd)
        os.close(fd)
        with open(path, "rb") as f:
            head = f.read(3)
        print("after fsync and close:", head)
        if head != b"NEW":
            failures.append(f"fsynced NEW lost at close: {head}")
    elif head != b"NEW":
        failures.append(f"fsynced NEW lost at a later open: {head}")
    result(failures)

else:
    sys.exit(f"unknown case {case}")
