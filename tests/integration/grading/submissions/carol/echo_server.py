"""A broken echo server: crashes at start."""
import socket

print("starting the echo server")
s = socket.socket()
s.bind(("", 9999))
s.listne(16)  # the student's typo
