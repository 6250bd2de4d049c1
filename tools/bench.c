/* bench.c - placeholder replaced below */
#include "cli.h"
#include <stdio.h>
int cmd_bench(int argc, char **argv) { (void)argc; (void)argv; fputs("crust bench: not yet\n", stderr); return 1; }
