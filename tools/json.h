/* json.h - the little JSON the CLI writes: one object per line on stdout. */
#ifndef CRUST_TOOLS_JSON_H
#define CRUST_TOOLS_JSON_H

#include <stddef.h>
#include <stdio.h>

#include "crust.h"

/* Write s (n bytes, any content) as a JSON string, quotes included. */
void json_string(FILE *f, const void *s, size_t n);
/* One event as a JSON object and a newline. */
void json_event(FILE *f, const struct crust_event *ev);

#endif
