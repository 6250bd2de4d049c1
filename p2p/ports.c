/* ports.c - moving the listeners to a new random port (see ports.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/addr.h"
#include "node.h"
#include "ports.h"

int ports_rebind(struct crust_service *svc)
{
	pthread_mutex_lock(&svc->listen_lock);
	uint16_t old = svc->tcp_port, port = 0;
	int err = old && svc->tcp->vt->rebind ? 0 : -ENOTCONN;
	if (!err)
		err = svc->tcp->vt->rebind(svc->tcp, (struct sockaddr *)&svc->bind_addr, svc->bind_len,
					   &port);
	if (!err)
		svc->tcp_port = port;
	pthread_mutex_unlock(&svc->listen_lock);
	if (err) {
		if (err != -ENOTCONN)
			svc_log(svc, CRUST_LOG_WARN, "cannot move the listeners to a new port: %s",
				strerror(-err));
		return err;
	}
	struct crust_event ev;
	event_init(&ev, CRUST_EV_LISTENER_STARTED);
	ev.transport = CRUST_TRANSPORT_TCP;
	ev.addr = svc->bind_addr;
	eng_addr_set_port(&ev.addr, port);
	ev.port = port;
	snprintf(ev.reason, sizeof(ev.reason), "moved from port %u (rebind_interval_ms)", old);
	svc_log(svc, CRUST_LOG_INFO, "listeners moved from port %u to %u", old, port);
	event_emit(svc, &ev);
	return 0;
}
