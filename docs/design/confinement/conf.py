"""Confinement primitives (ctypes, stdlib only) for the issue-13 experiments."""
import ctypes, ctypes.util, os, signal, struct

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x4000000, 0x8000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE, MS_SLAVE = 1, 2, 4, 8, 32, 0x1000, 0x4000, 1 << 18, 1 << 19
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_KEEPCAPS, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 8, 24, 38, 47
PR_CAP_AMBIENT_RAISE = 2
CAP_NET_BIND_SERVICE, CAP_NET_ADMIN = 10, 12
SYS_mount_setattr = 442
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 1, 2, 4
CAP_LAST = int(open("/proc/sys/kernel/cap_last_cap").read())


def check(r, what):
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def unshare(flags): check(libc.unshare(flags), "unshare")
def setns(fd, t): check(libc.setns(fd, t), "setns")


def mount(src, tgt, fstype, flags, data=None):
    enc = [s.encode() if s is not None else None for s in (src, tgt, fstype, data)]
    check(libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {tgt}")


def umount(t, flags=0): check(libc.umount2(t.encode(), flags), f"umount {t}")


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr(path, set_=0, clr=0, recursive=True, propagation=0):
    a = MountAttr(set_, clr, propagation, 0)
    r = libc.syscall(ctypes.c_long(SYS_mount_setattr), ctypes.c_int(AT_FDCWD), path.encode(),
                     ctypes.c_uint(AT_RECURSIVE if recursive else 0), ctypes.byref(a), ctypes.c_size_t(ctypes.sizeof(a)))
    check(r, f"mount_setattr {path}")


def prctl(op, a=0, b=0, c=0, d=0):
    check(libc.prctl(ctypes.c_int(op), ctypes.c_ulong(a), ctypes.c_ulong(b), ctypes.c_ulong(c), ctypes.c_ulong(d)), f"prctl {op}")


class CapHdr(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def capset(caps):
    mask = 0
    for c in caps:
        mask |= 1 << c
    hdr = CapHdr(0x20080522, 0)
    data = (CapData * 2)()
    for i in range(2):
        m = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = data[i].inheritable = m
    check(libc.capset(ctypes.byref(hdr), data), "capset")


def drop_privileges(uid=65534, gid=65534, keep=(CAP_NET_BIND_SERVICE,)):
    """Root -> uid/gid with only `keep` (bounding, permitted, effective, inheritable, ambient), no_new_privs."""
    for cap in range(CAP_LAST + 1):
        if cap not in keep:
            prctl(PR_CAPBSET_DROP, cap)
    prctl(PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    capset(keep)
    for cap in keep:
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def readonly_host(writable=(), tmp_size="64m", proc=True, method="setattr"):
    """In a fresh mount namespace (after unshare NEWNS): host read-only, `writable` binds rw, private /tmp, /proc."""
    mount(None, "/", None, MS_REC | MS_SLAVE)
    fds = [os.open(w, os.O_PATH | os.O_DIRECTORY) for w in writable]  # still reachable once /tmp is covered
    if method == "setattr":
        mount_setattr("/", set_=MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID)
    else:  # classic: remount every mount of mountinfo, deepest last
        mounts = [line.split()[4] for line in open("/proc/self/mountinfo")]
        for m in mounts:
            if m in writable:
                continue
            try:
                mount(None, m, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
            except OSError:
                pass
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmp_size},mode=1777")
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=1777")
    for w, fd in zip(writable, fds):  # a fresh bind is rw: the node's own folder
        os.makedirs(w, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", w, None, MS_BIND | MS_REC)
        mount_setattr(w, clr=MOUNT_ATTR_RDONLY, recursive=False)
        os.close(fd)
    if proc:
        umount("/proc", MNT_DETACH)
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def shell_code(status):
    c = os.waitstatus_to_exitcode(status)
    return c if c >= 0 else 128 - c


def init_loop(child):
    """pid 1: forward TERM/INT/HUP to the child's group, reap everything, return the child's shell code."""
    def fwd(signum, frame):
        try:
            os.killpg(child, signum)
        except ProcessLookupError:
            pass
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, fwd)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 127
        if pid == child:
            return shell_code(status)
