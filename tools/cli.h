/* cli.h - the crust command's subcommands and shared option helpers. */
#ifndef CRUST_TOOLS_CLI_H
#define CRUST_TOOLS_CLI_H

#include <stdbool.h>
#include <stdint.h>

int cmd_node(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_coordinator(int argc, char **argv);

/* Parse an unsigned number within [min, max]; false (with a message naming opt) if bad. */
bool cli_uint(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Exit status for usage errors, per the CLI contract. */
#define EXIT_USAGE 2

#endif
