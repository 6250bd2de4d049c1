#!/usr/bin/env python3
"""fakegw.py - a gateway that answers port-mapping clients with garbage, for
the port-mapping tests (tests/e2e/test_upnp.py), run in a router namespace.

  fakegw.py --mode garbage --addr LAN_IP [--http-port 5000]

SSDP (UDP 1900, multicast 239.255.255.250 joined on the interface holding
LAN_IP): every M-SEARCH gets an answer whose LOCATION is our HTTP server;
HTTP: every request gets 200 with bytes that are no device description;
UDP 5351 (NAT-PMP and PCP): every request gets 7 random-looking bytes, then
a 60-byte PCP-shaped answer with the wrong version and opcode. Prints
"ready" once every socket is bound; stops on SIGTERM (the test's lab stops
it by PID). Python standard library only.
"""
import argparse
import http.server
import os
import select
import signal
import socket
import struct
import sys
import threading

SSDP_GROUP = "239.255.255.250"


class Garbage(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        body = b"\x00\xffthis is <not <xml" + os.urandom(64)
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="garbage", choices=["garbage"])
    ap.add_argument("--addr", required=True)
    ap.add_argument("--http-port", type=int, default=5000)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    httpd = http.server.HTTPServer((a.addr, a.http_port), Garbage)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    ssdp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ssdp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ssdp.bind(("", 1900))
    mreq = struct.pack("4s4s", socket.inet_aton(SSDP_GROUP), socket.inet_aton(a.addr))
    ssdp.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)

    pmp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pmp.bind((a.addr, 5351))
    print("ready", flush=True)

    location = "http://%s:%d/rootDesc.xml" % (a.addr, a.http_port)
    while True:
        r, _, _ = select.select([ssdp, pmp], [], [])
        if ssdp in r:
            data, src = ssdp.recvfrom(2048)
            if data.startswith(b"M-SEARCH"):
                st = b"urn:schemas-upnp-org:device:InternetGatewayDevice:1"
                ans = (b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: " + st +
                       b"\r\nUSN: uuid:garbage::" + st + b"\r\nLOCATION: " +
                       location.encode() + b"\r\n\r\n")
                ssdp.sendto(ans, src)
        if pmp in r:
            data, src = pmp.recvfrom(2048)
            pmp.sendto(b"\x07\x99garb", src)
            pmp.sendto(b"\x03\x81" + os.urandom(58), src)


if __name__ == "__main__":
    main()
