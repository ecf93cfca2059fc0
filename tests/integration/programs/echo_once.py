"""An echo server that serves its first client, then exits with the code given (argv[1]). A
connection that ends without a word (after_gone.py looking) is no client. The listening socket
stays open until the process ends: once connections are refused, the server has exited."""
import os
import socket
import sys

code = int(sys.argv[1])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("", 9999))
server.listen(16)
print("listening on 9999", flush=True)
while True:
    conn, peer = server.accept()
    with conn:
        data = conn.recv(4096)
        if not data:
            continue
        print(f"serving {peer[0]}", flush=True)
        while data:
            conn.sendall(data)
            data = conn.recv(4096)
    break
print(f"served one client, exiting with {code}", flush=True)
os._exit(code)  # at once: no interpreter shutdown between the listener's close and the exit
