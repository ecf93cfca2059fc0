"""100 sequential starts of a trivial program, per variant; median over runs of ms/start."""
import os, sys, time, statistics, signal
sys.path.insert(0, os.path.dirname(__file__))
import conf

N = int(os.environ.get("N", 100))
RUNS = int(os.environ.get("RUNS", 5))
BWRAP = ["bwrap", "--unshare-pid", "--unshare-ipc", "--ro-bind", "/", "/", "--tmpfs", "/tmp",
         "--dev", "/dev", "--proc", "/proc", "--die-with-parent"]
WDIR = "/tmp/issue13-work/nodefiles"
os.makedirs(WDIR, exist_ok=True)
MYPID = os.open("/proc/self/ns/pid", os.O_RDONLY)


def child_exit(fn):
    try:
        fn()
    except BaseException as e:
        os.write(2, f"child: {e!r}\n".encode())
    os._exit(127)


def run_plain(argv):
    pid = os.fork()
    if pid == 0:
        child_exit(lambda: os.execv(argv[0], argv))
    return os.waitpid(pid, 0)[1]


def run_today(argv):
    def c():
        conf.unshare(conf.CLONE_NEWNS | conf.CLONE_NEWUTS)
        conf.mount(None, "/", None, conf.MS_REC | conf.MS_SLAVE)
        os.execv(argv[0], argv)
    pid = os.fork()
    if pid == 0:
        child_exit(c)
    return os.waitpid(pid, 0)[1]


def run_bwrap(argv, user=False):
    def c():
        if user:
            os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
        os.execvp("bwrap", BWRAP + argv)
    pid = os.fork()
    if pid == 0:
        child_exit(c)
    return os.waitpid(pid, 0)[1]


def run_own(argv, full=False, method="setattr", pidtrick=True, drop=True, flags=None, proc=True):
    def init():
        conf.unshare(conf.CLONE_NEWNS | conf.CLONE_NEWIPC | conf.CLONE_NEWUTS if flags is None else flags)
        if not proc:
            pass
        elif full:
            conf.readonly_host(writable=[WDIR], method=method)
        else:
            conf.mount(None, "/", None, conf.MS_REC | conf.MS_SLAVE)
            conf.umount("/proc", conf.MNT_DETACH)
            conf.mount("proc", "/proc", "proc", conf.MS_NOSUID | conf.MS_NODEV | conf.MS_NOEXEC)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, lambda *a: None)
        c = os.fork()
        if c == 0:
            def prog():
                os.setsid()
                for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(s, signal.SIG_DFL)
                if drop:
                    conf.drop_privileges()
                os.execv(argv[0], argv)
            child_exit(prog)
        os._exit(conf.init_loop(c))
    if pidtrick:
        conf.unshare(conf.CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:
            child_exit(init)
        conf.setns(MYPID, conf.CLONE_NEWPID)
        return os.waitpid(pid, 0)[1]
    # classic: an extra process outside that unshares and forks the init
    pid = os.fork()
    if pid == 0:
        def outer():
            conf.unshare(conf.CLONE_NEWPID)
            b = os.fork()
            if b == 0:
                child_exit(init)
            os._exit(conf.shell_code(os.waitpid(b, 0)[1]))
        child_exit(outer)
    return os.waitpid(pid, 0)[1]


VARIANTS = {
    "plain": run_plain,
    "today(unshare NS|UTS)": run_today,
    "own: pidns+ns+proc+drop": lambda a: run_own(a),
    "own: +ro host(setattr)+/tmp+shm": lambda a: run_own(a, full=True),
    "own: +ro host(remount each)": lambda a: run_own(a, full=True, method="classic"),
    "own: full, extra fork (no pid trick)": lambda a: run_own(a, full=True, pidtrick=False),
    "brk: pidns only, no mounts, no drop": lambda a: run_own(a, flags=0, proc=False, drop=False),
    "brk: pidns+drop": lambda a: run_own(a, flags=0, proc=False),
    "brk: pidns+NS|UTS+drop (no IPC, no proc)": lambda a: run_own(a, flags=conf.CLONE_NEWNS | conf.CLONE_NEWUTS, proc=False),
    "brk: pidns+NS|UTS|IPC+drop (no proc)": lambda a: run_own(a, proc=False),
    "brk: pidns+NS|UTS+proc+drop (no IPC)": lambda a: run_own(a, flags=conf.CLONE_NEWNS | conf.CLONE_NEWUTS),
    "bwrap as root": run_bwrap,
    "bwrap as 65534 (userns)": lambda a: run_bwrap(a, user=True),
}

PROGS = {"/bin/true": ["/bin/true"], "python3 -c pass": ["/usr/bin/python3", "-c", "pass"]}

if __name__ == "__main__":
    only = sys.argv[1:]
    results = {}
    for pname, argv in PROGS.items():
        for vname, fn in VARIANTS.items():
            if only and not any(o in vname for o in only):
                continue
            st = fn(argv)
            if st != 0:
                print(f"{vname} {pname}: status {st}", flush=True)
                continue
        for r in range(RUNS):
            for vname, fn in VARIANTS.items():
                if only and not any(o in vname for o in only):
                    continue
                t = time.perf_counter()
                for _ in range(N):
                    fn(argv)
                results.setdefault((pname, vname), []).append((time.perf_counter() - t) * 1000 / N)
    for (p, v), xs in results.items():
        print(f"{p:16s} {v:40s} median {statistics.median(xs):7.2f} ms/start  runs {' '.join(f'{x:.2f}' for x in xs)}")
