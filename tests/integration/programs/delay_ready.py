"""Becomes ready (listens on argv[2]) only after argv[1] seconds: nodes `after` it start that late."""
import socket
import sys
import time

time.sleep(float(sys.argv[1]))
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("", int(sys.argv[2])))
server.listen(1)
print(f"ready after {sys.argv[1]}s", flush=True)
while True:
    time.sleep(60)
