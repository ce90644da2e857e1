#!/usr/bin/env python3
"""Threads hand a managed file to the kernel (closing its last descriptor, mapping it) while
other threads open it, stat it or read it (found by scripts/fsx --threads).
usage: handover_races.py DIR SECONDS [PART...]  (parts 1 2 3, all by default)

1. Four threads each write 100 bytes of their own through a descriptor they open and close,
   then read them back and fstat through another: every read must give the thread's last
   write (a file opened while its last descriptor was closing was served by the kernel alone,
   and the closing checkpoint wrote stale blocks over what that descriptor wrote).
2. One thread cuts a file 100 bytes short and writes them back past 64 KiB (in place, with
   room kept for appends past the end) through a descriptor it opens and closes, while three
   others stat the file: every size is the old or the cut one (a stat that ran while the file
   was being handed to the kernel showed the data file's size with the room).
3. Two threads read 36 bytes at offsets they seek to, through descriptors they open for 5
   reads and close, while another maps the file: every read moves the offset by 36 (a read
   served while the file was being handed to the kernel moved an offset already handed over).
Prints "ok", or what went wrong (exit status 1).
"""
import mmap, os, sys, threading, time

directory, seconds = sys.argv[1], float(sys.argv[2])
parts = sys.argv[3:] or ["1", "2", "3"]
bad = []


def run(threads, until):
    ts = [threading.Thread(target=t, args=(until,)) for t in threads]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def own_bytes(path, i, until):
    for n in range(1, 1 << 62):
        if time.time() > until or bad:
            return
        data = bytes([(i * 50 + n) % 251 + 1]) * 100
        fd = os.open(path, os.O_RDWR)
        os.pwrite(fd, data, i * 100)
        os.close(fd)
        fd = os.open(path, os.O_RDONLY)
        got, size = os.pread(fd, 100, i * 100), os.fstat(fd).st_size
        os.close(fd)
        if got != data or not (i + 1) * 100 <= size <= 400:
            bad.append(f"thread {i}, round {n}: read {got[:2]!r}.. wrote {data[:2]!r}.., size {size}")


BIG = 200_000


def cut_and_extend(path, until):
    while time.time() < until and not bad:
        fd = os.open(path, os.O_RDWR)
        os.ftruncate(fd, BIG - 100)
        os.pwrite(fd, bytes(100), BIG - 100)
        os.close(fd)


def stat_sizes(path, until):
    while time.time() < until and not bad:
        if (size := os.stat(path).st_size) not in (BIG - 100, BIG):
            bad.append(f"stat gave size {size}")


def seek_and_read(path, i, until):
    n = 0
    while time.time() < until and not bad:
        fd = os.open(path, os.O_RDWR)
        for _ in range(5):
            n += 1
            at = (n * 4099 + i * 777) % 90000
            os.lseek(fd, at, os.SEEK_SET)
            got = len(os.read(fd, 36))
            if (pos := os.lseek(fd, 0, os.SEEK_CUR)) != at + 36 or got != 36:
                bad.append(f"thread {i}, read {n}: {got} bytes at {at}, then the offset is {pos}")
        os.close(fd)


def map_now_and_then(path, until):
    while time.time() < until and not bad:
        fd = os.open(path, os.O_RDONLY)
        with mmap.mmap(fd, 4096, prot=mmap.PROT_READ) as m:
            m[0]
        os.close(fd)


small, big = os.path.join(directory, "own-bytes.dat"), os.path.join(directory, "cut.dat")
until = time.time()
if "1" in parts:
    with open(small, "wb"):
        pass
    until += seconds / len(parts)
    run([lambda until, i=i: own_bytes(small, i, until) for i in range(4)], until)
    os.unlink(small)
if "2" in parts:
    with open(big, "wb") as f:
        f.write(bytes(BIG))
    until += seconds / len(parts)
    run([lambda until: cut_and_extend(big, until)] + [lambda until: stat_sizes(big, until)] * 3, until)
    os.unlink(big)
if "3" in parts:
    with open(big, "wb") as f:
        f.write(bytes(range(256)) * 400)
    until += seconds / len(parts)
    readers = [lambda until, i=i: seek_and_read(big, i, until) for i in range(2)]
    run(readers + [lambda until: map_now_and_then(big, until)], until)
    os.unlink(big)
print("\n".join(bad[:3]) if bad else "ok")
sys.exit(1 if bad else 0)
