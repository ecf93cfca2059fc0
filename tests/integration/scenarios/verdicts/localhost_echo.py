"""A server that binds to 'localhost': it listens, but no other node can ever reach it."""
import socket
import sys

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("localhost", int(sys.argv[1])))
s.listen(5)
while True:
    conn, _ = s.accept()
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)
