"""Clients that hang up mid-request: half a request line, then many pipelined requests followed by
half of one, each time leaving without reading. The server's answers then go to a peer that is
gone (EPIPE). Last, a whole request: the server must still answer it."""
import socket
import sys
import time

PIPELINED = b"GET / HTTP/1.1\r\nHost: web\r\n\r\n" * 200 + b"GET / HTT"
for request in [b"GET / HTT"] * 10 + [PIPELINED] * 5:
    with socket.create_connection(("web", 8080), timeout=5) as sock:
        sock.sendall(request)
    time.sleep(0.01)
with socket.create_connection(("web", 8080), timeout=5) as sock:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
    answer = sock.recv(100).decode(errors="replace")
print(answer.splitlines()[0] if answer else "no answer", flush=True)
sys.exit(0 if answer.startswith("HTTP/1.1 200") else 1)
