/*
 * ports.h - listeners on random ports that move: with rebind_interval_ms
 * set, the bootstrap thread moves the TCP listeners to a new random port
 * that often, and the reliable-UDP ones to the same port number (random
 * if taken), so a node shows up on several ports over time. Connections
 * already made stay up; new ones learn the new port from the handshake.
 */
#ifndef CRUST_P2P_PORTS_H
#define CRUST_P2P_PORTS_H

struct crust_service;

/* Move the listeners (if listening); emits listener_started per moved transport. Any thread. */
int ports_rebind(struct crust_service *svc);

#endif
