"""A broken echo server: answers in upper case."""
import socket
import threading

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 9999))
s.listen(16)


def serve(c: socket.socket) -> None:
    with c:
        while data := c.recv(4096):
            c.sendall(data.upper())


while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
