"""An interactive echo server as many tutorials write it: a welcome line, then a `> ` prompt before
each input, each written with its own send (so they may arrive apart). Binary-safe: it echoes each
line's bytes as they came, line end included."""
import socket
import sys
import threading


def serve(conn: socket.socket) -> None:
    with conn:
        conn.sendall(b"Welcome to the echo server. Type a line, get it back.\r\n")
        conn.sendall(b"> ")
        pending = b""
        while data := conn.recv(1024):
            pending += data
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                conn.sendall(line + b"\n")
                conn.sendall(b"> ")


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("", int(sys.argv[1])))
server.listen(128)
while True:
    client, _ = server.accept()
    threading.Thread(target=serve, args=(client,), daemon=True).start()
