"""Runs file calls read from stdin, one JSON list a line, and answers each with a JSON line:
["open", path, flags] -> fd; ["write", fd, text]; ["pwrite", fd, text, off]; ["pread", fd, n, off]
-> text; ["read", fd, n]; ["seek", fd, off, whence]; ["fstat", fd] / ["stat", path] -> size;
["truncate", path, len]; ["truncate_fd", fd, len];
["fsync", fd]; ["close", fd]; ["unlink", path]. Text is latin-1. An OSError answers ["error", errno]. A test
drives two of these at once to interleave two processes' calls on one file exactly."""
import json
import os
import sys

FLAGS = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR, "creat": os.O_CREAT,
         "trunc": os.O_TRUNC, "append": os.O_APPEND}


def run(op, *a):
    if op == "open":
        flags = 0
        for f in a[1].split("|"):
            flags |= FLAGS[f]
        return os.open(a[0], flags, 0o644)
    if op == "write":
        return os.write(a[0], a[1].encode("latin-1"))
    if op == "pwrite":
        return os.pwrite(a[0], a[1].encode("latin-1"), a[2])
    if op == "pread":
        return os.pread(a[0], a[1], a[2]).decode("latin-1")
    if op == "read":
        return os.read(a[0], a[1]).decode("latin-1")
    if op == "seek":
        return os.lseek(a[0], a[1], a[2])
    if op == "fstat":
        return os.fstat(a[0]).st_size
    if op == "stat":
        return os.stat(a[0]).st_size
    if op == "truncate_fd":
        return os.ftruncate(a[0], a[1])
    if op == "truncate":
        return os.truncate(a[0], a[1])
    if op == "fsync":
        return os.fsync(a[0])
    if op == "close":
        return os.close(a[0])
    if op == "unlink":
        return os.unlink(a[0])
    if op == "pid":
        return os.getpid()
    raise ValueError(op)


for line in sys.stdin:
    call = json.loads(line)
    try:
        reply = ["ok", run(*call)]
    except OSError as e:
        reply = ["error", e.errno]
    print(json.dumps(reply), flush=True)
