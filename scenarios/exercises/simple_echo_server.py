"""An echo server without threads: it serves one client at a time (the tutorial's first version)."""

import socket

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 9999))
s.listen(5)
print("Socket listening", flush=True)
while True:
    conn, addr = s.accept()
    print("Connected with", addr[0], addr[1], flush=True)
    with conn:
        while True:
            data = conn.recv(1024)
            if not data:
                break
            conn.sendall(data)
