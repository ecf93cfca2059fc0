"""A threaded echo server on port 9999: the classic socket-tutorial exercise.

Every client gets its own thread; whatever a client sends comes straight back.
"""

import socket
import threading

HOST, PORT = "", 9999


def handle(conn: socket.socket, addr: tuple[str, int]) -> None:
    print(f"Connected with {addr[0]}:{addr[1]}", flush=True)
    with conn:
        while True:
            data = conn.recv(4096)
            if not data:
                break
            conn.sendall(data)
    print(f"Closed {addr[0]}:{addr[1]}", flush=True)


def main() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((HOST, PORT))
    s.listen(10)
    print("Socket listening", flush=True)
    while True:
        conn, addr = s.accept()
        threading.Thread(target=handle, args=(conn, addr), daemon=True).start()


if __name__ == "__main__":
    main()
