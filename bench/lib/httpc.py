"""Tiny HTTP/1.1 client over TCP or a unix socket (stdlib http.client), keep-alive, JSON bodies."""
import http.client
import json
import socket
from decimal import Decimal


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class NotSent(ConnectionError):
    """`Client.once` could not send its request: the server never got it."""


class Client:
    """`base` is 'http://127.0.0.1:8001' or 'unix:/path/to.sock'. Reconnects once on a dropped connection."""

    def __init__(self, base, timeout=2.0, headers=None):
        self.base, self.timeout, self.headers = base, timeout, dict(headers or {})
        self.conn = None

    def _connect(self):
        if self.base.startswith("unix:"):
            return _UnixConnection(self.base[5:], self.timeout)
        hostport = self.base.split("://", 1)[1].rstrip("/")
        return http.client.HTTPConnection(hostport, timeout=self.timeout)

    def request(self, method, path, body=None):
        """Returns (status, parsed JSON or None). Decimals stay exact (parse_float=Decimal)."""
        status, data = self.raw(method, path, body)
        try:
            parsed = json.loads(data, parse_float=Decimal) if data else None
        except ValueError:
            parsed = None
        return status, parsed

    def raw(self, method, path, body=None):
        """Returns (status, body bytes); a dropped keep-alive connection is retried once."""
        payload = None if body is None else json.dumps(body).encode()
        for attempt in (0, 1):
            try:
                return self.once(method, path, payload)
            except (OSError, http.client.HTTPException):
                if attempt:
                    raise

    def once(self, method, path, payload=None):
        """One attempt, never repeated: (status, body bytes), or the connection error
        (the connection is then closed). For POSTs whose every copy the caller must see."""
        headers = {"Host": "localhost", **self.headers}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if self.conn is None:
            self.conn = self._connect()
        try:
            self.conn.request(method, path, body=payload, headers=headers)
        except (BrokenPipeError, ConnectionResetError) as e:
            # The request (one send of head and body) found the connection already
            # broken by the other end: nothing of it reached a server that reads it.
            self.close()
            raise NotSent(f"{type(e).__name__} while sending") from e
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        try:
            resp = self.conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def get(self, path):
        return self.request("GET", path)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
