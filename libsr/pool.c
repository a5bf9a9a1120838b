/* SPDX-License-Identifier: MIT */
/*
 * A small pool of worker threads for the stream's CPU work: hashing,
 * compressing, verifying and decoding page batches.  Jobs run in the order
 * they were submitted, on whichever worker is free; the submitter waits
 * for the ones it needs, so the stream itself stays in order.
 */
#include <pthread.h>
#include <stdlib.h>

#include "pool.h"

struct sr_pool {
	pthread_mutex_t lock;
	pthread_cond_t work, done;
	struct sr_pool_job *head, *tail;
	bool stop;
	void (*thread_start)(void *arg);
	void *thread_arg;
	unsigned nthreads;
	pthread_t threads[];
};

static void *pool_worker(void *arg)
{
	struct sr_pool *p = arg;

	if (p->thread_start)
		p->thread_start(p->thread_arg);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct sr_pool_job *j;

		while (!p->head && !p->stop)
			pthread_cond_wait(&p->work, &p->lock);
		if (!p->head)
			break;
		j = p->head;
		p->head = j->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		j->fn(j);
		pthread_mutex_lock(&p->lock);
		j->state = SR_JOB_DONE;
		pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct sr_pool *sr_pool_new(unsigned threads, void (*thread_start)(void *arg), void *arg)
{
	struct sr_pool *p;

	if (!threads)
		return NULL;
	p = calloc(1, sizeof(*p) + threads * sizeof(p->threads[0]));
	if (!p)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	p->thread_start = thread_start;
	p->thread_arg = arg;
	for (; p->nthreads < threads; p->nthreads++)
		if (pthread_create(&p->threads[p->nthreads], NULL, pool_worker, p))
			break;
	if (!p->nthreads) {
		sr_pool_free(p);
		return NULL;
	}
	return p;
}

void sr_pool_submit(struct sr_pool *p, struct sr_pool_job *j)
{
	if (!p) {
		j->fn(j);
		j->state = SR_JOB_DONE;
		return;
	}
	j->next = NULL;
	pthread_mutex_lock(&p->lock);
	j->state = SR_JOB_QUEUED;
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
}

void sr_pool_wait(struct sr_pool *p, struct sr_pool_job *j)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	while (j->state == SR_JOB_QUEUED)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

bool sr_pool_done(struct sr_pool *p, struct sr_pool_job *j)
{
	bool done;

	if (!p)
		return true;
	pthread_mutex_lock(&p->lock);
	done = j->state != SR_JOB_QUEUED;
	pthread_mutex_unlock(&p->lock);
	return done;
}

void sr_pool_free(struct sr_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->done);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
