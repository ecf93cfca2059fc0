"""The Python socket HOWTO's server: it binds to socket.gethostname(), i.e. to the address its own
name resolves to, which must be the address other nodes connect to."""
import socket
import sys
import threading


def serve(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((socket.gethostname(), int(sys.argv[1])))
print("bound to", s.getsockname()[0], flush=True)
s.listen(5)
while True:
    client, _ = s.accept()
    threading.Thread(target=serve, args=(client,), daemon=True).start()
