"""cgroup v1 experiments: memory (OOM kill + counters), pids, cpu; create/configure/remove timing."""
import os, sys, time, signal, statistics
sys.path.insert(0, os.path.dirname(__file__))
import conf

ROOT = "/sys/fs/cgroup"
NAME = "issue13-test"
CTRL = ("memory", "pids", "cpu")


def path(c, name=NAME): return f"{ROOT}/{c}/{name}"
def w(p, v):
    with open(p, "w") as f: f.write(str(v))
def r(p): return open(p).read().strip()


def create(name=NAME, mem=64 << 20, pids=20, quota=50000):
    for c in CTRL:
        os.mkdir(path(c, name))
    w(path("memory", name) + "/memory.limit_in_bytes", mem)
    if os.path.exists(path("memory", name) + "/memory.memsw.limit_in_bytes"):
        w(path("memory", name) + "/memory.memsw.limit_in_bytes", mem)
    w(path("pids", name) + "/pids.max", pids)
    w(path("cpu", name) + "/cpu.cfs_quota_us", quota)


def join(pid, name=NAME):
    for c in CTRL:
        w(path(c, name) + "/cgroup.procs", pid)


def remove(name=NAME):
    for c in CTRL:
        for _ in range(100):
            try:
                os.rmdir(path(c, name)); break
            except FileNotFoundError:
                break
            except OSError as e:  # EBUSY while the dead tasks are being released
                time.sleep(0.01)
        else:
            print("could not remove", path(c, name))


def run_in(fn, name=NAME):
    r_, w_ = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w_); os.read(r_, 1)
        try:
            fn()
        finally:
            os._exit(0)
    os.close(r_)
    join(pid, name)
    os.write(w_, b"g"); os.close(w_)
    return conf.shell_code(os.waitpid(pid, 0)[1])


def hog():
    chunks = []
    for i in range(16):  # at most 256 MiB
        chunks.append(bytearray(16 << 20))  # zero-filled: touched
        print(f"  allocated {16 * (i + 1)} MiB", flush=True)
    print("  hog: survived 256 MiB", flush=True)


def forker():
    kids, err = [], None
    for i in range(50):
        try:
            p = os.fork()
        except OSError as e:
            err = e; break
        if p == 0:
            time.sleep(2); os._exit(0)
        kids.append(p)
    print(f"  forked {len(kids)} children, then: {err}", flush=True)
    for k in kids:
        os.kill(k, signal.SIGKILL); os.waitpid(k, 0)


def spin():
    t = time.monotonic(); c0 = time.process_time()
    while time.monotonic() - t < 1.0:
        pass
    print(f"  spin: cpu {time.process_time() - c0:.2f}s in 1.0s wall", flush=True)


if __name__ == "__main__":
    print("memory.use_hierarchy at root:", r(f"{ROOT}/memory/memory.use_hierarchy"))
    create()
    try:
        print("files:", sorted(os.listdir(path("memory")))[:0], "memsw present:", os.path.exists(path("memory") + "/memory.memsw.limit_in_bytes"))
        print("memory test (limit 64 MiB):")
        code = run_in(hog)
        print("  exit code", code)
        print("  memory.oom_control:", r(path("memory") + "/memory.oom_control").replace("\n", "; "))
        print("  memory.failcnt:", r(path("memory") + "/memory.failcnt"), " max_usage:", r(path("memory") + "/memory.max_usage_in_bytes"))
        print("  memory.events exists:", os.path.exists(path("memory") + "/memory.events"))
        print("pids test (pids.max 20):")
        code = run_in(forker)
        print("  exit code", code, " pids.events:", r(path("pids") + "/pids.events") if os.path.exists(path("pids") + "/pids.events") else "n/a")
        print("cpu test (quota 50000/100000):")
        code = run_in(spin)
        print("  cpu.stat:", r(path("cpu") + "/cpu.stat").replace("\n", "; "))
    finally:
        remove()
    # timing
    ts = []
    for i in range(50):
        t = time.perf_counter()
        create(f"{NAME}-{i}")
        remove(f"{NAME}-{i}")
        ts.append((time.perf_counter() - t) * 1000)
    print(f"create(3 controllers)+configure+rmdir: median {statistics.median(ts):.2f} ms, max {max(ts):.2f} ms")
    ts = []
    for i in range(30):
        t = time.perf_counter()
        create(f"{NAME}-{i}")
        run_in(lambda: None, f"{NAME}-{i}")
        remove(f"{NAME}-{i}")
        ts.append((time.perf_counter() - t) * 1000)
    print(f"create+configure+fork+join+exit+rmdir: median {statistics.median(ts):.2f} ms, max {max(ts):.2f} ms")
    left = [f"{c}/{d}" for c in CTRL for d in os.listdir(f"{ROOT}/{c}") if d.startswith("issue13")]
    print("left behind:", left)
