/* SPDX-License-Identifier: MIT */
/* Saving a running domain on behalf of sr-save or of the guest itself. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hvmctx.h"
#include "runner.h"

struct progress {
	int fd;
	uint64_t last_ns;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Sends a progress line at most every 100 ms; a vanished client cancels the save. */
static int send_progress(void *arg, uint64_t done, uint64_t total, uint64_t bytes)
{
	struct progress *p = arg;
	char line[128];
	uint64_t now = mono_ns();
	int n;

	if (p->fd < 0 || now - p->last_ns < 100000000ull)
		return 0;
	p->last_ns = now;
	n = snprintf(line, sizeof(line), "progress pages=%llu total=%llu bytes=%llu\n",
		     (unsigned long long)done, (unsigned long long)total,
		     (unsigned long long)bytes);
	return send(p->fd, line, n, MSG_NOSIGNAL) == n ? 0 : -1;
}

static int do_save(struct runner *r, int fd, enum sr_compress compress, int client_fd,
		   struct hvmctx_save_stats *st, struct xc_error *err)
{
	const struct runner_config *cfg = runner_config(r);
	struct progress p = { .fd = client_fd };
	struct hvmctx_save_opts o = {
		.compress = compress, .creator = "sr-save " SR_LIBRARY_VERSION,
		.guest_kind = cfg->guest_kind, .name = cfg->name, .uuid = cfg->uuid,
		.boot_entry = cfg->boot_entry, .boot_arg = cfg->boot_arg,
		.progress = send_progress, .progress_arg = &p,
	};
	struct stat sb;

	if (hvmctx_save(runner_domain(r), fd, &o, st, err))
		return -1;
	/* Durable before anyone is told it worked (the domain may exit next). */
	if (!fstat(fd, &sb) && S_ISREG(sb.st_mode) && fsync(fd))
		return xc_set_error(err, errno, "fsync of the image");
	return 0;
}

static void summary(const struct hvmctx_save_stats *st, const char *after, char *msg, size_t len)
{
	snprintf(msg, len, "saved %llu pages (%llu zero, %llu lz4, %llu raw): %llu bytes for "
		 "%llu MiB of RAM in %.1f ms; %s",
		 (unsigned long long)st->pages, (unsigned long long)st->zero,
		 (unsigned long long)st->lz4, (unsigned long long)st->raw,
		 (unsigned long long)st->bytes, (unsigned long long)(st->mem_bytes >> 20),
		 st->duration_ns / 1e6, after);
}

int runner_save(struct runner *r, int out_fd, const char *opts, int client_fd, char *msg,
		size_t len)
{
	struct xc_domain *d = runner_domain(r);
	bool checkpoint = strstr(opts, "checkpoint") != NULL, stay_paused = strstr(opts, "paused");
	enum sr_compress compress = strstr(opts, "compress=none") ? SR_COMPRESS_NONE : SR_COMPRESS_LZ4;
	bool was_paused = xc_domain_paused(d);
	struct hvmctx_save_stats st;
	struct xc_error err;

	if (!was_paused && xc_domain_pause(d, &err)) {
		snprintf(msg, len, "%s", err.msg);
		return -1;
	}
	if (do_save(r, out_fd, compress, client_fd, &st, &err)) {
		/* The domain goes on exactly as before. */
		if (!was_paused)
			xc_domain_resume(d, NULL);
		snprintf(msg, len, "%s", err.msg);
		return -1;
	}
	if (!checkpoint && !stay_paused) {
		summary(&st, "the domain exits", msg, len);
		return 1;
	}
	if (!stay_paused && !was_paused)
		xc_domain_resume(d, NULL);
	summary(&st, stay_paused || was_paused ? "the domain stays paused" : "the domain runs on",
		msg, len);
	return 0;
}

int runner_guest_save(struct runner *r, const char *path, char *msg, size_t len)
{
	struct xc_domain *d = runner_domain(r);
	struct hvmctx_save_stats st;
	struct xc_error err;
	char tmp[4096], dir[4096];
	int fd, dfd;

	if (xc_domain_pause(d, &err)) {
		snprintf(msg, len, "%s", err.msg);
		return -1;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(msg, len, "%s: %s", tmp, strerror(errno));
		return -1;
	}
	if (do_save(r, fd, SR_COMPRESS_LZ4, -1, &st, &err)) {
		close(fd);
		unlink(tmp);
		snprintf(msg, len, "%s", err.msg);
		return -1;
	}
	close(fd);
	if (rename(tmp, path)) {
		snprintf(msg, len, "renaming %s to %s: %s", tmp, path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	summary(&st, "the domain exits", msg, len);
	return 0;
}
