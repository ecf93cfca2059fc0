"""A student's HTTP server on raw sockets: every GET gets "<h1>hello</h1>" in 3 chunks and a trailer.

Usage: python3 chunked_http.py PORT [crlf|lf|cut]
  crlf  header lines end in CRLF (the default)
  lf    header lines end in a bare LF, as many hand-written servers do
  cut   the connection is closed before the last (0-size) chunk
"""
import socket
import sys
import threading
import time

PORT = int(sys.argv[1])
MODE = sys.argv[2] if len(sys.argv) > 2 else "crlf"
EOL = b"\n" if MODE == "lf" else b"\r\n"
CHUNKS = [b"<h1>", b"hello", b"</h1>"]


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        more = conn.recv(1024)
        if not more:
            break
        data += more
    return data


def chunk(data):
    return b"%x\r\n" % len(data) + data + b"\r\n"


def serve(conn):
    with conn:
        request = read_request(conn)
        if not request.startswith(b"GET "):
            return
        head = [b"HTTP/1.1 200 OK", b"Content-Type: text/html", b"Transfer-Encoding: chunked", b"Trailer: X-Done"]
        conn.sendall(EOL.join(head) + EOL + EOL)
        for i, data in enumerate(CHUNKS):
            if MODE == "cut" and i == len(CHUNKS) - 1:
                return  # forgot the last chunk
            conn.sendall(chunk(data))
            time.sleep(0.05)  # the client gets the body in pieces
        conn.sendall(b"0\r\n" + b"X-Done: yes" + EOL + EOL)


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("", PORT))
server.listen(16)
while True:
    client, _ = server.accept()
    threading.Thread(target=serve, args=(client,), daemon=True).start()
