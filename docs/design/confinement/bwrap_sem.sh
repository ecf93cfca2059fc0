#!/bin/bash
# bwrap semantics; run as root under the lock
B="bwrap --unshare-pid --unshare-ipc --ro-bind / / --tmpfs /tmp --dev /dev --proc /proc --die-with-parent"
st='grep -E "^(Uid|Gid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)" /proc/self/status | tr "\n" " "; echo'
echo "== bwrap as root, defaults"; $B sh -c "$st"
echo "== bwrap as root, --cap-add CAP_NET_BIND_SERVICE"; $B --cap-drop ALL --cap-add CAP_NET_BIND_SERVICE sh -c "$st"
echo "== bwrap as root --unshare-user --uid 65534"; $B --unshare-user --uid 65534 --gid 65534 sh -c "$st; echo host view:"; 
echo "== bwrap as 65534 (setpriv), no options"; setpriv --reuid 65534 --regid 65534 --clear-groups $B sh -c "$st"
echo "== bwrap as 65534 --cap-add"; setpriv --reuid 65534 --regid 65534 --clear-groups $B --cap-add CAP_NET_BIND_SERVICE sh -c "$st"; echo "rc=$?"
echo '== host uid of bwrap --unshare-user --uid 65534 started by root:'; $B --unshare-user --uid 65534 sleep 1 & sleep 0.3; ps -eo uid,args | grep '[s]leep 1$'; wait
echo "== write to host file under ro-bind:"; $B sh -c 'echo x > /work/notes/x 2>&1; echo rc=$?; echo y > /tmp/y && echo tmp-ok; ls /proc | grep -c "^[0-9]"'
echo "== exit codes"; $B sh -c 'exit 3'; echo "exit 3 -> $?"; $B sh -c 'kill -TERM $$'; echo "self TERM -> $?"; $B sh -c 'kill -KILL $$'; echo "self KILL -> $?"
echo "== SIGTERM to bwrap (outer pid) while program traps TERM"
$B sh -c 'trap "echo got TERM; exit 7" TERM; sleep 5 & wait' & p=$!; sleep 0.3; kill -TERM $p; wait $p; echo "kill -TERM bwrap -> $?"
echo "== SIGTERM to bwrap process group (setsid'ed)"
setsid bash -c "$B sh -c 'trap \"echo got TERM; exit 7\" TERM; sleep 5 & wait'" & sleep 0.3; pg=$(pgrep -n -x bwrap); pgid=$(ps -o pgid= $pg | tr -d ' '); kill -TERM -- -$pgid; wait; echo "killpg TERM -> $?"
echo "== inside a netns (unshare -n) as root: links seen"; unshare -n $B ip -o link | awk '{print $2}'
echo "== port 80 as 65534 via bwrap (userns) inside a fresh netns (owned by init userns)"
unshare -n sh -c "ip link set lo up; setpriv --reuid 65534 --regid 65534 --clear-groups $B /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",80)); print(\"bound 80\")' 2>&1 | tail -1"
echo "== same with per-netns net.ipv4.ip_unprivileged_port_start=0 (inside that netns only)"
unshare -n sh -c "ip link set lo up; echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start; setpriv --reuid 65534 --regid 65534 --clear-groups $B /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",80)); print(\"bound 80\")' 2>&1 | tail -1"
echo "host ip_unprivileged_port_start still: $(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)"
echo "== bwrap as root --cap-add NET_BIND_SERVICE then program bind 80 (uid 0, no other caps)"
unshare -n sh -c "ip link set lo up; $B --cap-drop ALL --cap-add CAP_NET_BIND_SERVICE /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",80)); print(\"bound 80\")' 2>&1 | tail -1"
