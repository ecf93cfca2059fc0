"""A server that floods every client with lines, forever, and never echoes."""
import socket
import sys
import threading


def flood(conn: socket.socket) -> None:
    block = b"flood " * 10_000 + b"\n"
    try:
        while True:
            conn.sendall(block)
    except OSError:
        conn.close()


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", int(sys.argv[1])))
s.listen(5)
while True:
    client, _ = s.accept()
    threading.Thread(target=flood, args=(client,), daemon=True).start()
