"""Becomes ready (listens on argv[3]) once the server at argv[1]:argv[2] is gone, i.e. refuses
connections: nodes `after` it start only then, whatever the machine's speed. Each look connects and
leaves without a word, which echo_once.py does not count as a client. Bounded by the node's `ready:`
timeout."""
import signal
import socket
import sys
import time

host, port, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
while True:
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        break
    time.sleep(0.01)  # still there: look again
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("", ready))
server.listen(1)
print(f"{host}:{port} is gone: ready", flush=True)
while True:
    signal.pause()
