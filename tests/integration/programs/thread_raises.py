"""A threaded echo server whose serving thread raises on the first line: the server lives on, the
client's connection ends without a reply."""
import socket
import threading


def serve(conn: socket.socket) -> None:
    line = conn.recv(4096)
    print(f"got {line!r}", flush=True)
    print(f"ratio {len(line) / 0}")  # the student's bug: the thread dies, the connection with it


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("", 9999))
server.listen(16)
print("listening on 9999", flush=True)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,)).start()
