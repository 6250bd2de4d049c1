/*
 * identity.h - the node's long-term Ed25519 key pair, kept in a small text file.
 *
 * The public key is the node's peer id. The file (docs/CONFIG.md,
 * "Identity file") holds the 32-byte seed, from which the key pair is
 * derived, and the public key as a check against damage:
 *
 *   crust-identity 1
 *   seed <64 hex>
 *   public <64 hex>
 *
 * An existing file is only ever read: never rewritten, renamed or
 * replaced. A missing one is created so that a crash at any moment leaves
 * either no file or a complete one, and so that processes racing to create
 * the same path all end up with the one identity that won.
 *
 * Thread safety: both functions may be called from any thread.
 */
#ifndef CRUST_P2P_IDENTITY_H
#define CRUST_P2P_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "crust.h"

#define IDENTITY_HEADER "crust-identity 1"
#define IDENTITY_MAX_FILE 1024          /* bytes; a real file is 159 */

struct identity {
	uint8_t pk[32];                     /* Ed25519 public key: the peer id */
	uint8_t sk[64];                     /* libsodium crypto_sign secret key (seed | pk) */
};

/*
 * Fill out with an identity:
 *   path NULL or "": a fresh ephemeral key pair; nothing is written.
 *   otherwise: the key pair kept in the file at path. If no file exists
 *   there, one is created (mode 0600; its directory must exist) and filled
 *   with a new key pair. Symbolic links are followed for reading; a
 *   dangling one is an error (its target is not created).
 *
 * why (may be NULL; borrowed) receives a human reason naming the file:
 *   on error, what went wrong, e.g.
 *     "identity file /x/id: malformed: line 2: expected 64 hex characters after \"seed\""
 *   on success, "" or a warning the caller should log, e.g. that group or
 *   others may read the file (it is still loaded). Truncated to whylen.
 *
 * Returns 0, or -errno with out zeroed:
 *   -EINVAL  malformed content (also: public key does not match the seed,
 *            file larger than IDENTITY_MAX_FILE, not a regular file)
 *   -EISDIR  path is a directory
 *   -ENOENT  the directory does not exist, or path is a dangling symlink
 *   other    from open/read/write/fsync/link, e.g. -EACCES, -ENOTDIR, -EIO
 * The caller wipes out with identity_wipe when done with it.
 */
CRUST_MUST_CHECK int identity_load(const char *path, struct identity *out, char *why,
				   size_t whylen);

/* Zero the key pair (sodium_memzero, not optimised away). */
void identity_wipe(struct identity *id);

#endif
