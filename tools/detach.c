/* SPDX-License-Identifier: MIT */
/* Running a domain in the background: fork, then let go of the session's stdio. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"
#include "detach.h"
#include "util.h"

static int detach_fd = -1;	/* the child's end of the pipe the parent waits on */

int fd_reopen(int fd, const char *path, int flags)
{
	int k = open(path, flags | O_CLOEXEC, 0600);

	if (k < 0)
		return -1;
	if (k == fd)
		return fcntl(fd, F_SETFD, 0);
	dup2(k, fd);		/* dup2 leaves fd without close-on-exec */
	close(k);
	return 0;
}

/*
 * The parent returns only once every copy of what it was given is let go
 * by the child (ssh, a shell's $(...) wait for that): it answers for the
 * child, 0 once the domain runs, else the child's own status.
 */
void detach_begin(void (*waiting)(void))
{
	int p[2], st;
	pid_t pid;
	char c;

	if (pipe2(p, O_CLOEXEC))
		die(EXIT_USAGE, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		die(EXIT_USAGE, "fork: %s", strerror(errno));
	if (pid == 0) {
		close(p[0]);
		detach_fd = p[1];
		setsid();
		return;
	}
	close(p[1]);
	fd_reopen(STDIN_FILENO, "/dev/null", O_RDONLY);
	fd_reopen(STDOUT_FILENO, "/dev/null", O_WRONLY);
	if (waiting)
		waiting();
	if (read(p[0], &c, 1) == 1)
		_exit(0);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	_exit(WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : EXIT_USAGE);
}

void detach_finish(const char *log)
{
	fd_reopen(STDIN_FILENO, "/dev/null", O_RDONLY);
	if (fd_reopen(STDOUT_FILENO, log, O_WRONLY | O_CREAT | O_APPEND)) {
		pr_warn("%s: %s; the console goes nowhere", log, strerror(errno));
		fd_reopen(STDOUT_FILENO, "/dev/null", O_WRONLY);
	}
	dup2(STDOUT_FILENO, STDERR_FILENO);
	if (write(detach_fd, "1", 1) != 1)
		pr_warn("the session that started this domain is gone");
	close(detach_fd);
	detach_fd = -1;
}

const char *detach_log_path(char *buf, size_t len, const char *name)
{
	if ((size_t)snprintf(buf, len, "%s/%s.log", ctl_dir(), name) >= len)
		die(EXIT_USAGE, "%s/%s.log: path too long", ctl_dir(), name);
	return buf;
}
