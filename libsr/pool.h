/* SPDX-License-Identifier: MIT */
#ifndef SR_POOL_H
#define SR_POOL_H

#include <stdbool.h>

/*
 * Worker pool (pool.c).  A job runs fn on some worker; jobs start in the
 * order submitted.  sr_pool_new(0) returns NULL, and a NULL pool runs each
 * job inside sr_pool_submit, so callers need no second code path.  The
 * pool never touches a job after marking it done; sr_pool_free finishes
 * queued jobs first.
 */
enum sr_job_state { SR_JOB_IDLE, SR_JOB_QUEUED, SR_JOB_DONE };
struct sr_pool_job {
	struct sr_pool_job *next;
	void (*fn)(struct sr_pool_job *j);
	enum sr_job_state state;	/* changed by the pool, read after sr_pool_wait */
};
struct sr_pool;
/* thread_start (optional) runs first on each worker, with arg. */
struct sr_pool *sr_pool_new(unsigned threads, void (*thread_start)(void *arg), void *arg);
void sr_pool_submit(struct sr_pool *p, struct sr_pool_job *j);
void sr_pool_wait(struct sr_pool *p, struct sr_pool_job *j);
bool sr_pool_done(struct sr_pool *p, struct sr_pool_job *j);	/* without waiting */
void sr_pool_free(struct sr_pool *p);

#endif
