"""A wrong echo server for `concurrent`: it serves one client at a time (no thread per client)."""
import socket
import sys

server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("", int(sys.argv[1])))
server.listen(16)
while True:
    conn, _ = server.accept()
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)
