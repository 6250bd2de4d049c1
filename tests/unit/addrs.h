/*
 * addrs.h - socket addresses from text for unit tests (one copy for every
 * test that needs them); a malformed literal fails the test.
 */
#ifndef CRUST_TEST_ADDRS_H
#define CRUST_TEST_ADDRS_H

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

static inline struct sockaddr_storage v4(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *a = (struct sockaddr_in *)&ss;
	memset(&ss, 0, sizeof(ss));
	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	cr_assert(eq(int, inet_pton(AF_INET, ip, &a->sin_addr), 1), "%s", ip);
	return ss;
}

static inline struct sockaddr_storage v6(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
	memset(&ss, 0, sizeof(ss));
	a->sin6_family = AF_INET6;
	a->sin6_port = htons(port);
	cr_assert(eq(int, inet_pton(AF_INET6, ip, &a->sin6_addr), 1), "%s", ip);
	return ss;
}

#endif
