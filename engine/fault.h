/*
 * fault.h - fault injection for the library's own error paths (docs/QUALITY.md).
 *
 * Only the faults build (`make faults`, objects in build-faults/) has it:
 * there CRUST_FAULTS is defined and every library object's calls to
 * malloc & co, io_uring_submit*, io_uring_register*, socket, bind, ...,
 * close are renamed at link level to the crust_fault_* wrappers in fault.c
 * (objcopy --redefine-syms=engine/fault.syms), so no call site changes.
 * The dependencies' own allocations come through hooks the libraries
 * offer, installed by a constructor in fault.c: jansson's
 * (json_set_alloc_funcs) and OpenSSL's (CRYPTO_set_mem_functions).
 * libsodium allocates nothing in the functions crust calls (docs/QUALITY.md).
 * io_uring_get_sqe(), prep_connect and prep_multishot_accept are inline in
 * liburing and have no symbol to rename; their three call sites ask
 * crust_fault_hit() directly. In every other build crust_fault_hit() is the
 * constant false and the wrappers are not compiled: zero cost.
 *
 * Environment (read once, any thread):
 *   CRUST_FAULT_RATE   probability 0..1 that one call fails (default 0: off)
 *   CRUST_FAULT_SEED   seed of the decision sequence (default 1)
 *   CRUST_FAULT_KINDS  comma list of alloc,uring,sock,json,ssl,close
 *                      (default all)
 */
#ifndef CRUST_FAULT_H
#define CRUST_FAULT_H

#include <stdbool.h>
#include <stdint.h>

enum crust_fault_kind {
	CRUST_FAULT_ALLOC,
	CRUST_FAULT_URING,
	CRUST_FAULT_SOCK,
	CRUST_FAULT_JSON,  /* jansson's allocations */
	CRUST_FAULT_SSL,   /* OpenSSL's (libcrypto) allocations */
	CRUST_FAULT_CLOSE, /* close(): done, then reported as -1 EINTR or EIO */
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
/* Set the rate (0..1) for the whole process; returns the previous one (any thread). */
double crust_fault_set_rate(double p);
/* Which kinds may fail (bit 1 << kind); returns the previous set (any thread). */
unsigned crust_fault_set_kinds(unsigned mask);
/*
 * While on, every close() of a regular file open for writing closes it and
 * reports -1 EIO, whatever the rate: the driver's check that a failed close
 * fails a file save. Counted apart from the rate's faults.
 */
void crust_fault_fail_file_closes(bool on);
uint64_t crust_fault_file_closes_failed(void);
/* close() calls that found no such descriptor (EBADF): a double close. */
uint64_t crust_fault_bad_closes(void);
#else
#define crust_fault_hit(kind) ((void)(kind), false)
#endif

#endif
