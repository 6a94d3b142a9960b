"""Runs a command where io_uring is refused, as a container runtime's default seccomp profile
refuses it: `no_io_uring.py CMD ARGS...` installs a seccomp filter that fails io_uring_setup(2)
with EPERM (everything else is allowed), then execs CMD, so the pid stays CMD's."""

import ctypes
import os
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
EPERM = 1
IO_URING_SETUP = 425  # the same number on every architecture Debian ships (asm-generic)

# classic BPF: load seccomp_data.nr; if io_uring_setup return ERRNO(EPERM) else ALLOW
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
program = [
    (BPF_LD_W_ABS, 0, 0, 0),
    (BPF_JEQ_K, 0, 1, IO_URING_SETUP),
    (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM),
    (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
]


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: no_io_uring.py CMD [ARGS...]")
    code = b"".join(struct.pack("HBBI", *insn) for insn in program)
    filters = ctypes.create_string_buffer(code)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(len(program), ctypes.addressof(filters))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit(f"prctl(NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        sys.exit(f"prctl(SECCOMP): {os.strerror(ctypes.get_errno())}")
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
