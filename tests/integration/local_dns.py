"""A DNS server on 127.0.0.1 that answers one name with several IPv4 addresses.

For tests of gRPC's dns resolver with several replicas behind one name
(`dns://127.0.0.1:DNS_PORT/replicas.convserve.test:PORT`) without touching
/etc/hosts or any real DNS: A queries for the name get every address, other
types for it an empty answer, other names NXDOMAIN. UDP only; enough for
c-ares, which gRPC's dns resolver uses.
"""

import socket
import struct
import threading


class LocalDns:
    def __init__(self, name, addresses):
        self.name = name.lower().rstrip(".")
        self.addresses = list(addresses)
        self.queries = 0
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def _serve(self):
        while not self._stop.is_set():
            try:
                query, peer = self._socket.recvfrom(4096)
            except socket.timeout:
                continue
            answer = self._answer(query)
            if answer is not None:
                self._socket.sendto(answer, peer)

    def _answer(self, query):
        if len(query) < 12:
            return None
        (query_id, flags, question_count) = struct.unpack("!HHH", query[:6])
        if question_count != 1:
            return None
        # The question: length-prefixed labels, a zero byte, type and class.
        labels, offset = [], 12
        while offset < len(query) and query[offset] != 0:
            length = query[offset]
            labels.append(query[offset + 1:offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length
        offset += 1
        if offset + 4 > len(query):
            return None
        (query_type, query_class) = struct.unpack("!HH", query[offset:offset + 4])
        question = query[12:offset + 4]
        self.queries += 1
        name = ".".join(labels).lower()
        records = []
        if name == self.name and query_type == 1 and query_class == 1:  # A, IN
            for address in self.addresses:
                # Name: a pointer to the question's name at offset 12.
                records.append(struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4)
                               + socket.inet_aton(address))
        response_code = 0 if name == self.name else 3  # NOERROR or NXDOMAIN
        # QR, the query's RD, RA; one question, the answers, nothing else.
        response_flags = 0x8000 | (flags & 0x0100) | 0x0080 | response_code
        header = struct.pack("!HHHHHH", query_id, response_flags, 1, len(records), 0, 0)
        return header + question + b"".join(records)
