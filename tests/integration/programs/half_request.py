"""Half an HTTP request, then hang up, several times: the server writes its 400 answer to a peer
that is gone (EPIPE). Then a whole request: the server must still answer it."""
import socket
import sys
import time

for _ in range(20):
    with socket.create_connection(("web", 8080), timeout=5) as sock:
        sock.sendall(b"GET / HTT")
    time.sleep(0.01)
with socket.create_connection(("web", 8080), timeout=5) as sock:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
    answer = sock.recv(100).decode(errors="replace")
print(answer.splitlines()[0] if answer else "no answer", flush=True)
sys.exit(0 if answer.startswith("HTTP/1.1 200") else 1)
