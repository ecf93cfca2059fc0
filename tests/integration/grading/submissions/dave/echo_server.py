"""A broken echo server: accepts connections and never answers."""
import socket

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 9999))
s.listen(16)
held = []
while True:
    c, _ = s.accept()
    held.append(c)
