/* SPDX-License-Identifier: MIT */
/*
 * What sr-restore frees when a restore fails, in its order.  A header of
 * its own so that fuzz-restore, whose runner_free() destroys a fake domain,
 * tears down exactly as sr-restore does.
 */
#ifndef SR_RESTORE_TEARDOWN_H
#define SR_RESTORE_TEARDOWN_H

#include "hvmctx.h"
#include "runner.h"

/*
 * A restore that failed before any vCPU ran.  The reader's workers may still
 * write guest memory: the restore state (which joins them) goes first, the
 * domain and its memory last.
 */
static inline void restore_abandon(struct runner *r, struct hvmctx_restore *rs)
{
	hvmctx_restore_free(rs);
	runner_free(r);
}

#endif
