"""Tries, once each, what a hostile submission would: every attempt must fail. One line per attempt
("NAME: blocked (why)" or "NAME: ESCAPED (what)"), then "escapes: N". Paths of the instructor's and
of the lab come in the environment (SECRET, RUN, LAB_PID): a real submission could guess them."""
import ctypes
import os
import socket
import subprocess

escapes = 0


def attempt(name, action):
    global escapes
    try:
        result = action()
    except Exception as e:  # noqa: BLE001 - every failure is the expected outcome
        print(f"{name}: blocked ({e.__class__.__name__}: {e})", flush=True)
        return
    escapes += 1
    print(f"{name}: ESCAPED ({result!r})"[:300], flush=True)


def write(path):
    with open(path, "w") as f:
        f.write("planted by a hostile node\n")
    return path


def signal_lab():
    os.kill(int(os.environ["LAB_PID"]), 0)
    return "the lab's test process is visible and signallable"


def host_init():
    cmdline = open("/proc/1/cmdline", "rb").read().split(b"\0")[0].decode()
    if "python" in cmdline or "lab" in cmdline:  # the node's own init: the lab's agent or orchestrator copy
        raise PermissionError(f"pid 1 here is the node's own init ({os.path.basename(cmdline)})")
    return cmdline


def processes():
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    if len(pids) > 8:
        return f"sees {len(pids)} processes"
    raise PermissionError(f"sees only {len(pids)} processes, its own")


def command(argv):
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise PermissionError(done.stderr.strip()[:120] or f"exit {done.returncode}")
    return done.stdout


attempt("write /etc", lambda: write("/etc/lab-hostile"))
attempt("write /var/tmp", lambda: write("/var/tmp/lab-hostile"))
attempt("write the scenario folder", lambda: write(os.path.join(os.environ["SCENARIO"], "planted")))
attempt("write the run folder", lambda: write(os.path.join(os.environ["RUN"], "nodes", "client.jsonl")))
attempt("read the instructor's solution", lambda: open(os.environ["SECRET"]).read())
attempt("read /root", lambda: open("/root/.bashrc").read())
attempt("read /etc/shadow", lambda: open("/etc/shadow").read())
attempt("see the host's processes", processes)
attempt("see the host's init", host_init)
attempt("signal the lab", signal_lab)
def become_root():
    os.setuid(0)  # (a rootless lab's node is uid 0 of the lab's own user namespace already)
    caps = next(line for line in open("/proc/self/status") if line.startswith("CapEff:")).split()[1]
    if int(caps, 16) == 0:
        raise PermissionError("uid 0 of its own user namespace at most, with no capability")
    return f"capabilities {caps}"


attempt("become root", become_root)
attempt("change a sysctl", lambda: write("/proc/sys/net/ipv4/ip_forward"))
attempt("add a route", lambda: command(["ip", "route", "add", "10.123.0.0/24", "dev", "lo"]))
attempt("sniff", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)))
attempt("raw socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
libc = ctypes.CDLL(None, use_errno=True)


def call(name, *args):
    if getattr(libc, name)(*args) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return f"{name} worked"


attempt("make a user namespace", lambda: call("unshare", 0x10000000))
ADD_KEY = {"x86_64": 248, "aarch64": 217}[os.uname().machine]
attempt("use a keyring", lambda: call("syscall", ADD_KEY, b"user", b"lab-hostile", b"x", 1, -4))  # KEY_SPEC_USER
attempt("signal every process", lambda: os.kill(-1, 0) or "kill(-1) may reach another process")
print(f"escapes: {escapes}", flush=True)
