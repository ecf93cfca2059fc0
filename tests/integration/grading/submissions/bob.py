"""A broken echo server: serves one client at a time (no thread per connection)."""
import socket

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 9999))
s.listen(16)
while True:
    c, _ = s.accept()
    with c:
        while data := c.recv(4096):
            c.sendall(data)
