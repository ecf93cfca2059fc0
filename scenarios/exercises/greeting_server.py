"""The classic first server: every client is thanked for connecting, then the connection closes."""

import socket

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 12345))
s.listen(5)
print("Socket listening", flush=True)
while True:
    c, addr = s.accept()
    print("Got connection from", addr, flush=True)
    c.sendall(b"Thank you for connecting\r\n")
    c.close()
