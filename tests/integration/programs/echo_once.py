"""An echo server that serves its first client, then exits with the code given (argv[1])."""
import socket
import sys

code = int(sys.argv[1])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("", 9999))
server.listen(16)
print("listening on 9999", flush=True)
conn, peer = server.accept()
print(f"serving {peer[0]}", flush=True)
with conn:
    while data := conn.recv(4096):
        conn.sendall(data)
print(f"served one client, exiting with {code}", flush=True)
sys.exit(code)
