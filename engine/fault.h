/*
 * fault.h - fault injection for the library's own error paths (docs/QUALITY.md).
 *
 * Only the faults build (`make faults`, objects in build-faults/) has it:
 * there CRUST_FAULTS is defined and every library object's calls to
 * malloc & co, io_uring_submit*, io_uring_register*, socket, bind, ... are
 * renamed at link level to the crust_fault_* wrappers in fault.c
 * (objcopy --redefine-syms=engine/fault.syms), so no call site changes.
 * io_uring_get_sqe(), prep_connect and prep_multishot_accept are inline in
 * liburing and have no symbol to rename; their three call sites ask
 * crust_fault_hit() directly. In every other build crust_fault_hit() is the
 * constant false and the wrappers are not compiled: zero cost.
 *
 * Environment (read once, any thread):
 *   CRUST_FAULT_RATE   probability 0..1 that one call fails (default 0: off)
 *   CRUST_FAULT_SEED   seed of the decision sequence (default 1)
 *   CRUST_FAULT_KINDS  comma list of alloc,uring,sock (default all three)
 */
#ifndef CRUST_FAULT_H
#define CRUST_FAULT_H

#include <stdbool.h>
#include <stdint.h>

enum crust_fault_kind {
	CRUST_FAULT_ALLOC,
	CRUST_FAULT_URING,
	CRUST_FAULT_SOCK,
	CRUST_FAULT_KINDS
};

#ifdef CRUST_FAULTS
/* Should this call of the given kind fail? Counts the faults it injects (any thread). */
bool crust_fault_hit(enum crust_fault_kind kind);
/* Faults injected so far of one kind (any thread). */
uint64_t crust_fault_count(enum crust_fault_kind kind);
/*
 * Turn injection on or off for the calling process (any thread); a driver
 * keeps it off around its own checks. Starts on when CRUST_FAULT_RATE > 0.
 */
void crust_fault_enable(bool on);
#else
#define crust_fault_hit(kind) ((void)(kind), false)
#endif

#endif
