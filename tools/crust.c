/*
 * crust.c - the crust command: node, coordinator, bench.
 * Logs go to stderr, results and events to stdout; a bad option exits 2.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f)
{
	fputs("usage: crust node [options]        run a node: JSON events on stdout, commands on stdin\n"
	      "       crust coordinator --listen ADDR:PORT [--listen ADDR2:PORT]... [options]\n"
	      "       crust bench SCENARIO [options]\n"
	      "       crust help | crust node --help | crust bench --help\n", f);
}

bool cli_uint(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = s ? strtoull(s, &end, 10) : 0;
	if (!s || errno || *end || end == s || s[0] == '-' || v < min || v > max) {
		fprintf(stderr, "crust: %s: expected a number from %llu to %llu, got '%s'\n", opt,
			(unsigned long long)min, (unsigned long long)max, s ? s : "");
		return false;
	}
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "node"))
		return cmd_node(argc - 1, argv + 1);
	if (!strcmp(cmd, "bench"))
		return cmd_bench(argc - 1, argv + 1);
	if (!strcmp(cmd, "coordinator"))
		return cmd_coordinator(argc - 1, argv + 1);
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "crust: unknown command '%s'\n", cmd);
	usage(stderr);
	return EXIT_USAGE;
}
