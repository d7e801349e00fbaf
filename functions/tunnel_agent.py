"""Runs inside a Cloud Run sandbox whose command may use the network: its one way out.

A Cloud Run sandbox gets no host Unix socket (gVisor refuses them) and, without --allow-egress, no
network; what `sandbox do` does give is the command's standard input and output
(https://docs.cloud.google.com/run/docs/reference/sandbox-cli). So this agent listens on a local
port in the sandbox's own loopback, and carries each connection as frames on its standard output
(to the job) and input (from the job), where the job hands them to the egress proxy
(functions/stdio_tunnel.py). The command's own output goes in frames too; its standard error is
passed straight through. Started as `python -I -S -c SOURCE PORT CMD...`; exits with the
command's status. Standard library only.
"""

import io  # noqa: F401 (annotations)
import os
import socket
import struct
import subprocess
import sys
import threading

HEADER = struct.Struct(">cII")  # kind, connection, payload length
OUTPUT, OPEN, DATA, CLOSE = b"O", b"N", b"D", b"C"
CHUNK = 65536

write_lock = threading.Lock()
connections: dict[int, socket.socket] = {}


def send(kind: bytes, connection: int, payload: bytes = b"") -> None:
    frame = HEADER.pack(kind, connection, len(payload)) + payload
    with write_lock:
        view = memoryview(frame)
        while view:
            view = view[os.write(1, view) :]


def read_exactly(size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(0, size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def from_job() -> None:
    """Frames from the job: data for a connection, or its end."""
    try:
        while True:
            kind, connection, length = HEADER.unpack(read_exactly(HEADER.size))
            payload = read_exactly(length)
            target = connections.get(connection)
            if target is None:
                continue
            try:
                if kind == DATA:
                    target.sendall(payload)
                else:
                    target.shutdown(socket.SHUT_WR)
            except OSError:
                pass
    except (EOFError, OSError):
        pass


def to_job(connection: int, client: socket.socket) -> None:
    try:
        while chunk := client.recv(CHUNK):
            send(DATA, connection, chunk)
    except OSError:
        pass
    send(CLOSE, connection)


def serve(listener: socket.socket) -> None:
    number = 0
    while True:
        client, _ = listener.accept()
        number += 1
        connections[number] = client
        send(OPEN, number)
        threading.Thread(target=to_job, args=(number, client), daemon=True).start()


def pump(stdout: "io.BufferedReader") -> None:
    while chunk := stdout.read1(CHUNK):
        send(OUTPUT, 0, chunk)


def main() -> None:
    port, command = int(sys.argv[1]), sys.argv[2:]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
    threading.Thread(target=from_job, daemon=True).start()
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    output = threading.Thread(target=pump, args=(child.stdout,), daemon=True)
    output.start()
    status = child.wait()
    output.join(timeout=0.5)  # what the command wrote before it ended; not what it left running writes
    os._exit(status if status >= 0 else 128 - status)


if __name__ == "__main__":
    main()
