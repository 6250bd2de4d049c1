#!/usr/bin/env python3
"""Port fallback: a node asked for a taken --tcp-port listens on another,
random port, says so (listener_started fallback true), and a third node
can reach it there. The port is taken (1) by a plain python listening
socket and (2) by another crust node that was given that --tcp-port."""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import (CrustNode, NodeError, check, connect_pair, exchange, free_port,  # noqa: E402
                       log, run)


def check_fallback(node, taken):
    ev = node.listener
    check(ev["fallback"] is True, "%s: listener_started fallback is true (%r)" % (node.name, ev),
          node)
    check(ev["port"] != taken and ev["port"] > 0,
          "%s: fell back to another port (%d, taken %d)" % (node.name, ev["port"], taken), node)
    check(ev["addr"] == "127.0.0.1:%d" % ev["port"],
          "%s: listener_started addr names the fallback port" % node.name, node)
    check(str(taken) in ev.get("reason", ""),
          "%s: listener_started reason names the taken port (%r)" % (node.name, ev.get("reason")),
          node)


def reachable(node, via_port, name):
    """A fresh node dials via_port and must meet node (not whoever else)."""
    c = CrustNode(name)
    c.connect(via_port)
    ec = c.wait_for("new_connection")
    check(ec["peer"] == node.peer, "%s reached %s on port %d" % (name, node.name, via_port),
          node, c)
    node.wait_for("new_connection", lambda e: e["peer"] == c.peer)
    exchange(c, node, "hi %s" % node.name)
    exchange(node, c, "hi %s" % name)
    check(c.quit() == 0, "%s quits with status 0" % name, c)
    node.wait_for("lost_connection", lambda e: e["peer"] == c.peer)


def python_socket_case():
    log("--- port taken by a python listening socket")
    for bind_addr in ("127.0.0.1", "0.0.0.0"):
        hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        hold.bind((bind_addr, 0))
        hold.listen(16)
        taken = hold.getsockname()[1]
        log("holding %s:%d" % (bind_addr, taken))
        try:
            n = CrustNode("fallback-py-%s" % bind_addr, tcp_port=taken)
            check_fallback(n, taken)
            reachable(n, n.port, "dialer")
            # nobody knocked on the python socket
            hold.setblocking(False)
            try:
                hold.accept()
                knocked = True
            except BlockingIOError:
                knocked = False
            check(not knocked, "the holder of port %d saw no connection" % taken)
            check(n.quit() == 0, "%s quits with status 0" % n.name, n)
        finally:
            hold.close()


def crust_node_case():
    log("--- port taken by another crust node")
    # the first node gets the port it asks for (retry if someone grabbed it meanwhile)
    for _ in range(5):
        want = free_port()
        first = CrustNode("first", tcp_port=want, shards=2)
        if not first.listener["fallback"]:
            break
        log("port %d was taken meanwhile, trying another" % want)
        first.kill()
    else:
        raise NodeError("could not start a node on a free port without fallback")
    check(first.port == want and first.listener["fallback"] is False,
          "first node listens on its --tcp-port %d, no fallback" % want, first)

    second = CrustNode("second", tcp_port=want, shards=2)
    check_fallback(second, want)
    # the reported port reaches the second node, the live port still the first
    reachable(second, second.port, "dialer-2")
    reachable(first, want, "dialer-1")
    # and the two can talk to each other
    connect_pair(first, second)
    exchange(first, second, "ports")
    exchange(second, first, "differ")
    check(second.quit() == 0 and first.quit() == 0, "both quit with status 0", first, second)

    # a node with --tcp-port 0 never reports fallback
    z = CrustNode("zero", tcp_port=0)
    check(z.listener["fallback"] is False, "--tcp-port 0 is not a fallback", z)
    check(z.quit() == 0, "zero quits with status 0", z)


def main():
    python_socket_case()
    crust_node_case()


if __name__ == "__main__":
    run(main)
