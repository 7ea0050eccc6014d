"""A loopback TCP proxy for one direction of a peer link, which the chaos campaign can
cut (every live connection closed) and make refuse (new connections closed at accept)."""
import socket
import threading


class LinkProxy:
    """Listens on 127.0.0.1:`port` (0 = any free port) and relays to 127.0.0.1:`target`."""

    def __init__(self, target, port=0):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self.refusing = False
        self.live = set()
        self.lock = threading.Lock()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=1.0)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.live.update((client, upstream))
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        self._drop(src, dst)

    def _drop(self, *socks):
        with self.lock:
            for s in socks:
                self.live.discard(s)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def cut(self, refuse=True):
        """Closes every relayed connection; with `refuse`, new ones too until `heal`."""
        self.refusing = refuse
        with self.lock:
            socks = list(self.live)
        self._drop(*socks)

    def heal(self):
        self.refusing = False

    def close(self):
        self.cut()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.listener.close()
