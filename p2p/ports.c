/*
 * ports.c - moving the listeners to new random ports (see ports.h).
 *
 * TCP moves to a random port; reliable UDP then asks for the same port
 * number, so a plain ADDR:PORT dial (TCP, then UDP) and the handshake's
 * one advertised port reach both, and takes a random one if it is taken.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/addr.h"
#include "node.h"
#include "ports.h"
#include "rendezvous.h"

/* Move t's listeners to want on the bind address (0: random); the port in *port. */
static int move(struct crust_service *svc, struct transport *t, uint16_t want, uint16_t *port)
{
	if (!t->vt->rebind)
		return -EOPNOTSUPP;
	struct sockaddr_storage ss = svc->bind_addr;
	eng_addr_set_port(&ss, want);
	return t->vt->rebind(t, (struct sockaddr *)&ss, svc->bind_len, port);
}

/* listener_started for a move of t from old to port (want taken: fallback). */
static void announce(struct crust_service *svc, struct transport *t, uint16_t old, uint16_t want,
		     uint16_t port)
{
	struct crust_event ev;
	event_init(&ev, CRUST_EV_LISTENER_STARTED);
	ev.transport = t->vt->kind;
	ev.addr = svc->bind_addr;
	eng_addr_set_port(&ev.addr, port);
	ev.port = port;
	ev.fallback = want && port != want;
	if (ev.fallback)
		snprintf(ev.reason, sizeof(ev.reason),
			 "moved from port %u (rebind_interval_ms); port %u taken, using random port %u",
			 old, want, port);
	else
		snprintf(ev.reason, sizeof(ev.reason), "moved from port %u (rebind_interval_ms)", old);
	svc_log(svc, CRUST_LOG_INFO, "%s listeners moved from port %u to %u", t->vt->name, old, port);
	event_emit(svc, &ev);
}

int ports_rebind(struct crust_service *svc)
{
	pthread_mutex_lock(&svc->listen_lock);
	uint16_t old_tcp = svc->tcp_port, old_udp = svc->rudp_port, tcp = 0, udp = 0;
	int err = old_tcp ? move(svc, svc->tcp, 0, &tcp) : -ENOTCONN;
	int uerr = -ENOTCONN;
	if (!err) {
		svc->tcp_port = tcp;
		uerr = old_udp ? move(svc, svc->rudp, tcp, &udp) : -ENOTCONN;
		if (!uerr)
			svc->rudp_port = udp;
	}
	pthread_mutex_unlock(&svc->listen_lock);
	if (err) {
		if (err != -ENOTCONN)
			svc_log(svc, CRUST_LOG_WARN, "cannot move the listeners to a new port: %s",
				strerror(-err));
		return err;
	}
	announce(svc, svc->tcp, old_tcp, 0, tcp);
	rdv_listeners_moved(svc); /* peers must be handed the new ports' mappings */
	if (!uerr)
		announce(svc, svc->rudp, old_udp, tcp, udp);
	else if (uerr != -ENOTCONN)
		svc_log(svc, CRUST_LOG_WARN, "reliable UDP stays on port %u: %s", old_udp,
			strerror(-uerr));
	return 0;
}
