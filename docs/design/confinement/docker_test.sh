#!/bin/bash
# docker --user, limits, OOMKilled; run under the lock. All containers labelled issue13-research=1.
IMG=lab-node:35daaa31f561
D=/tmp/issue13-work/docker; rm -rf $D; mkdir -p $D/files $D/out $D/ctl; echo hello > $D/files/f; chmod 0644 $D/files/f
mkfifo -m 0600 $D/ctl/go; echo '{}' > $D/ctl/spec.json
touch $D/out/pre-root.log; touch $D/out/pre-chown.log; chown 65534:65534 $D/out/pre-chown.log
COMMON="--label issue13-research=1 --network none --cap-drop ALL --cap-add NET_BIND_SERVICE --security-opt no-new-privileges --user 65534:65534 -v $D/files:/lab/files:rw -v $D/out:/lab/out:rw -v $D/ctl:/lab/ctl:ro --entrypoint sh"
echo "== --user 65534:65534: identity, caps, files, log, fifo, port 80"
time docker run --rm $COMMON $IMG -c '
 id; grep -E "^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)" /proc/self/status | tr "\n" " "; echo
 cat /lab/files/f; echo w >> /lab/files/f 2>&1 || echo "cannot write own files (root 0644)"
 echo x >> /lab/out/new.log 2>&1 || echo "cannot create log in root 0755 dir"
 echo x >> /lab/out/pre-root.log 2>&1 || echo "cannot append to pre-created root 0644 log"
 echo x >> /lab/out/pre-chown.log && echo "pre-created log chowned to 65534: ok"
 (exec 3</lab/ctl/go) 2>&1 || echo "cannot open go fifo (root 0600)"
 cat /proc/sys/net/ipv4/ip_unprivileged_port_start
 python3 -c "import socket; s=socket.socket(); s.bind((\"0.0.0.0\",80)); print(\"bound 80 as non-root\")"
 echo x > /tmp/t && echo tmp-writable; touch /etc/x 2>&1 | tail -1'
echo "== no --user (today): id"; docker run --rm --label issue13-research=1 --network none --cap-drop ALL --cap-add NET_BIND_SERVICE --entrypoint id $IMG
echo "== memory 64m, hog up to 256 MiB"
docker run --name issue13-oom --label issue13-research=1 --network none --user 65534:65534 --memory 64m --memory-swap 64m --entrypoint python3 $IMG -c '
c=[]
for i in range(16):
    c.append(bytearray(16<<20)); print(16*(i+1), "MiB", flush=True)
' ; echo "exit=$?"
docker inspect issue13-oom --format 'OOMKilled={{.State.OOMKilled}} ExitCode={{.State.ExitCode}} Memory={{.HostConfig.Memory}}'
docker rm issue13-oom >/dev/null
echo "== memory 64m, hog in a child (pid 1 survives)"
docker run --name issue13-oom2 --label issue13-research=1 --network none --user 65534:65534 --memory 64m --memory-swap 64m --entrypoint sh $IMG -c 'python3 -c "c=[bytearray(16<<20) for i in range(16)]"; echo "child exit $?"; exit 0'; echo "exit=$?"
docker inspect issue13-oom2 --format 'OOMKilled={{.State.OOMKilled}} ExitCode={{.State.ExitCode}}'
docker rm issue13-oom2 >/dev/null
echo "== pids-limit 20, ulimit nofile 64, cpus 0.5"
docker run --rm --label issue13-research=1 --network none --user 65534:65534 --pids-limit 20 --ulimit nofile=64:64 --ulimit nproc=1000:1000 --cpus 0.5 --entrypoint python3 $IMG -c '
import os, time, resource
print("nofile", resource.getrlimit(resource.RLIMIT_NOFILE), "nproc", resource.getrlimit(resource.RLIMIT_NPROC))
k=[]
try:
    for i in range(50):
        p=os.fork()
        if p==0: time.sleep(2); os._exit(0)
        k.append(p)
except OSError as e: print("forked", len(k), "then", e)
fs=[]
try:
    for i in range(100): fs.append(open("/dev/null"))
except OSError as e: print("opened", len(fs), "then", e)
t=time.monotonic(); c=time.process_time()
while time.monotonic()-t<1: pass
print("cpu %.2f s in 1 s" % (time.process_time()-c))
print("cgroup:", open("/proc/self/cgroup").read().split())
'
echo "== leftovers"; docker ps -a --filter label=issue13-research=1 --format '{{.Names}}'
