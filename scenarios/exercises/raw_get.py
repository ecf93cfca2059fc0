"""HTTP GET over a raw socket, as in the tutorial: connect, send the request, print the answer."""

import socket
import sys

host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(5)
s.connect((host, port))
s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
reply = b""
while chunk := s.recv(4096):
    reply += chunk
s.close()
print(reply.decode(errors="replace"))
