/* SPDX-License-Identifier: MIT */
/*
 * sr-save: save a running domain to an image.
 *
 * The domain's runner writes the image into a file descriptor we pass it
 * over its control socket: FILE.tmp, renamed to FILE only once the runner
 * reports success (having fsynced).  Whatever fails, FILE is never left
 * half-written and the domain goes on as before.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "util.h"

static char tmp_path[4096];

static void usage(FILE *f)
{
	fprintf(f,
"usage: sr-save [OPTIONS] DOMAIN FILE|-\n"
"Save a running domain to FILE (or to standard output with \"-\").\n"
"\n"
"  -c, --checkpoint        keep the domain running after the save\n"
"  -p, --paused            leave the domain paused after the save\n"
"      --compress MODE     lz4 (default) or none; zero pages are never written\n"
"  -q, --quiet             no progress line and no summary\n"
"  -h, --help\n"
"\n"
"By default the domain exits once its image is safely on disk.  The image is\n"
"written to FILE.tmp, fsynced and renamed; on any failure (disk full, I/O\n"
"error, a signal, the reader of \"-\" going away) the domain resumes as it was\n"
"and nothing is left at FILE.\n"
"\n"
"Exit status: 0 saved, 1 the save failed (the domain runs on), 2 usage error or\n"
"no such domain.\n");
}

static void on_signal(int sig)
{
	/* The runner sees us go and abandons the save; just take the temp file away. */
	if (tmp_path[0])
		unlink(tmp_path);
	signal(sig, SIG_DFL);
	raise(sig);
}

struct progress {
	bool tty;
	struct timespec t0;
};

static void show_progress(const char *line, void *arg)
{
	struct progress *p = arg;
	unsigned long long done = 0, total = 0, bytes = 0;
	struct timespec now;
	double s;

	if (!p->tty || sscanf(line, "pages=%llu total=%llu bytes=%llu", &done, &total, &bytes) != 3)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	s = now.tv_sec - p->t0.tv_sec + (now.tv_nsec - p->t0.tv_nsec) / 1e9;
	fprintf(stderr, "\r%s: %llu/%llu pages, %.1f MiB written, %.1f MB/s   ", sr_prog, done,
		total, bytes / 1048576.0, s > 0 ? bytes / s / 1e6 : 0);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "checkpoint", no_argument, NULL, 'c' },
		{ "paused", no_argument, NULL, 'p' },
		{ "compress", required_argument, NULL, 'z' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	bool checkpoint = false, paused = false, quiet = false, to_stdout;
	const char *compress = "lz4", *dom, *path;
	struct progress prog = { 0 };
	char req[128], reply[1024], dirbuf[4096];
	int c, fd, rc, dfd;

	sr_set_prog(argv[0]);
	while ((c = getopt_long(argc, argv, "cpqh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': checkpoint = true; break;
		case 'p': paused = true; break;
		case 'q': quiet = true; break;
		case 'z':
			if (strcmp(optarg, "lz4") && strcmp(optarg, "none"))
				die(EXIT_USAGE, "--compress takes lz4 or none, not \"%s\"", optarg);
			compress = optarg;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc - 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	dom = argv[optind];
	path = argv[optind + 1];
	to_stdout = !strcmp(path, "-");
	if (to_stdout && isatty(STDOUT_FILENO))
		die(EXIT_USAGE, "refusing to write an image to a terminal");

	signal(SIGPIPE, SIG_IGN);
	if (to_stdout) {
		fd = STDOUT_FILENO;
	} else {
		snprintf(tmp_path, sizeof(tmp_path), "%s.tmp", path);
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		signal(SIGHUP, on_signal);
		fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			tmp_path[0] = 0;
			die(EXIT_USAGE, "%s.tmp: %s%s", path, strerror(errno),
			    errno == EEXIST ? " (another save in progress? remove it if not)" : "");
		}
	}
	snprintf(req, sizeof(req), "save%s%s compress=%s", checkpoint ? " checkpoint" : "",
		 paused ? " paused" : "", compress);
	prog.tty = !quiet && isatty(STDERR_FILENO);
	clock_gettime(CLOCK_MONOTONIC, &prog.t0);
	rc = ctl_request(dom, req, fd, show_progress, &prog, reply, sizeof(reply));
	if (prog.tty)
		fputc('\n', stderr);
	if (rc != 0) {
		if (!to_stdout) {
			close(fd);
			unlink(tmp_path);
		}
		die(rc < 0 ? EXIT_USAGE : 1, "%s%s", reply,
		    rc > 0 ? "; the domain runs on as before" : "");
	}
	if (!to_stdout) {
		/* The runner fsynced the data; make the name durable too. */
		if (close(fd) || rename(tmp_path, path)) {
			int e = errno;

			die(1, "the image is complete in %s but could not be renamed to %s: %s",
			    tmp_path, path, strerror(e));
		}
		tmp_path[0] = 0;
		snprintf(dirbuf, sizeof(dirbuf), "%s", path);
		dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	if (!quiet)
		pr_info("%s: %s: %s", sr_prog, to_stdout ? "stdout" : path, reply);
	return 0;
}
