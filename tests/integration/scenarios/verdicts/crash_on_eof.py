"""A common student bug: the server parses each read before checking for EOF, so it crashes
(IndexError) the moment its client hangs up, a few milliseconds after serving it."""
import socket
import sys

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", int(sys.argv[1])))
s.listen(5)
while True:
    conn, addr = s.accept()
    while True:
        data = conn.recv(1024)
        command = data.split()[0]
        conn.sendall(data)
