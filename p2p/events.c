/*
 * events.c - events from the shards to the user.
 *
 * With an on_event callback set, events run on the shard thread as they
 * happen (the fastest path). Otherwise they go into one MPSC queue
 * (engine/mailbox.h) that crust_poll drains, and an eventfd is made
 * readable when the queue goes from empty to non-empty, so the user can
 * put crust_event_fd() into an epoll/poll loop of their own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "node.h"

int events_init(struct crust_service *svc)
{
	eng_mailbox_init(&svc->events);
	pthread_mutex_init(&svc->poll_lock, NULL);
	svc->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return svc->event_fd < 0 ? -errno : 0;
}

/* After the shards stopped: free what nobody polled (messages included). */
void events_destroy(struct crust_service *svc)
{
	struct eng_mail *m;
	while ((m = eng_mailbox_pop(&svc->events))) {
		struct event_node *n = (struct event_node *)m;
		eng_msg_free(n->ev.msg);
		free(n);
	}
	if (svc->event_fd >= 0)
		close(svc->event_fd);
	svc->event_fd = -1;
	pthread_mutex_destroy(&svc->poll_lock);
}

void event_init(struct crust_event *ev, enum crust_event_type type)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
}

static void signal_user(struct crust_service *svc)
{
	uint64_t one = 1;
	if (write(svc->event_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		svc_log(svc, CRUST_LOG_ERROR, "event fd write: %s", strerror(errno));
}

static void deliver(struct crust_service *svc, struct crust_event *ev);

void event_emit(struct crust_service *svc, struct crust_event *ev)
{
	deliver(svc, ev);
	/* after the user's event, so bootstrap's reaction follows it */
	if (ev->type == CRUST_EV_CONNECT_FAILED)
		boot_on_connect_failed(svc, ev);
}

static void deliver(struct crust_service *svc, struct crust_event *ev)
{
	if (svc->cfg.on_event) {
		svc->cfg.on_event(svc->cfg.on_event_ctx, ev);
		return;
	}
	struct event_node *n = malloc(sizeof(*n));
	if (!n) {
		svc_log(svc, CRUST_LOG_ERROR, "out of memory: %s event lost",
			crust_event_name(ev->type));
		eng_msg_free(ev->msg);
		return;
	}
	n->ev = *ev;
	eng_mailbox_push(&svc->events, &n->link);
	if (!atomic_exchange(&svc->events.doorbell_rung, true))
		signal_user(svc);
}

static int take(struct crust_service *svc, struct crust_event *out, int n)
{
	int got = 0;
	struct eng_mail *m;
	while (got < n && (m = eng_mailbox_pop(&svc->events))) {
		struct event_node *node = (struct event_node *)m;
		out[got++] = node->ev;
		free(node);
	}
	return got;
}

static int poll_locked(struct crust_service *svc, struct crust_event *out, int n, int timeout_ms)
{
	uint64_t deadline = timeout_ms > 0 ? eng_clock_ms() + (uint64_t)timeout_ms : 0;
	for (;;) {
		uint64_t v;
		/* clear the doorbell before looking, so a push after the look rings again */
		if (read(svc->event_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			return -errno;
		atomic_store(&svc->events.doorbell_rung, false);
		int got = take(svc, out, n);
		if (got == n) {
			/* more may wait: keep the fd readable */
			atomic_store(&svc->events.doorbell_rung, true);
			signal_user(svc);
		}
		if (got > 0 || timeout_ms == 0)
			return got;
		int wait = -1;
		if (timeout_ms > 0) {
			uint64_t now = eng_clock_ms();
			if (now >= deadline)
				return 0;
			wait = (int)(deadline - now);
		}
		struct pollfd pfd = { .fd = svc->event_fd, .events = POLLIN };
		if (poll(&pfd, 1, wait) < 0 && errno != EINTR)
			return -errno;
	}
}

CRUST_API int crust_poll(struct crust_service *svc, struct crust_event *events, int n,
			 int timeout_ms)
{
	if (!svc || !events || n <= 0)
		return -EINVAL;
	pthread_mutex_lock(&svc->poll_lock);
	int ret = poll_locked(svc, events, n, timeout_ms);
	pthread_mutex_unlock(&svc->poll_lock);
	return ret;
}

CRUST_API int crust_event_fd(struct crust_service *svc)
{
	return svc->event_fd;
}
