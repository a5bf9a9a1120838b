/* SPDX-License-Identifier: MIT */
/* sr-ctl: list domains; query, pause, resume, destroy one or attach to its console. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <termios.h>
#include <unistd.h>

#include "ctl.h"
#include "host.h"
#include "sr.h"
#include "usage.h"
#include "util.h"

#define DETACH_KEY	0x1d	/* Ctrl-], as xl console and virsh console */
#define LIST_TIMEOUT_MS	3000	/* status is answered at once, a save running or not */

static void usage(FILE *f)
{
	fprintf(f,
"usage: sr-ctl list [--json]\n"
"       sr-ctl host [--json]\n"
"       sr-ctl status NAME [--json]\n"
"       sr-ctl pause|resume|finish|destroy|cancel|console NAME\n"
"Control running sr domains through their sockets in $SR_RUN_DIR (default\n"
"/run/sr; $XDG_RUNTIME_DIR/sr for a user other than root).\n"
"\n"
"  list      one line per domain with its status; a socket whose runner is\n"
"            gone is listed as stale, one that does not answer as unresponsive\n"
"  host      what /dev/kvm is here (kvm_intel, kvm_amd, kvm_pvm, other), its API\n"
"            version, the capabilities sr uses, and whether a probe guest of a\n"
"            few instructions runs\n"
"  status    name, state, vCPUs, memory, guest stage, runner pid, dirty log,\n"
"            throttle (the most any vCPU is held back, in %%), a running save\n"
"  pause     stop every vCPU (returns once all are out of the guest)\n"
"  resume    let the vCPUs run again\n"
"  finish    ask the sr test guest to end its current round and report its verdict\n"
"  destroy   end the domain (its runner exits with status 4)\n"
"  cancel    abort the save in progress; the domain goes on as before it\n"
"  console   attach to the guest's console: its recent output, then what\n"
"            follows; keys go to the guest (a UART guest); Ctrl-] detaches\n"
"\n"
"      --json    list, status, host: one JSON document (docs/control.md)\n"
"  -h, --help\n"
"      --version\n"
"\n"
"The older order, sr-ctl NAME VERB, still works where NAME is no verb.\n"
"Exit status: 0 done, 1 the domain refused, 2 usage error or no such domain;\n"
"host: 0 sr's guests can run here, 3 they cannot (the last line says why).\n"
"Environment: SR_RUN_DIR; SR_PROBE_SYSFS and SR_PROBE_DEV stand in for /sys and\n"
"/dev/kvm in the host probe (for tests).\n");
}

/* The verbs that take a domain; poke and throttle are testing aids, not in --help. */
static const struct verb {
	const char *name;
	bool arg;		/* takes one more word */
} verbs[] = {
	{ "status", false }, { "pause", false }, { "resume", false }, { "finish", false },
	{ "destroy", false }, { "cancel", false }, { "console", false },
	{ "poke", true }, { "throttle", true },
};

static const struct verb *find_verb(const char *w)
{
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (!strcmp(w, verbs[i].name))
			return &verbs[i];
	return NULL;
}

/* ------------------------------------------------------------ JSON */

/* A value of a status reply: a number when it is all digits, else the word. */
static json_t *status_value(const char *v)
{
	char *end;
	unsigned long long n;

	if (!*v || strspn(v, "0123456789") != strlen(v))
		return json_string(v);
	errno = 0;
	n = strtoull(v, &end, 10);
	return errno ? json_string(v) : json_integer((json_int_t)n);
}

/*
 * The status reply's key=value words as one object (docs/control.md):
 * dirty_log a boolean, a running save's words under "save" (null when none).
 */
static json_t *status_json(const char *reply)
{
	json_t *o = json_object(), *save = NULL;
	char buf[1024], *save_ptr, *w;

	snprintf(buf, sizeof(buf), "%s", reply);
	for (w = strtok_r(buf, " ", &save_ptr); w; w = strtok_r(NULL, " ", &save_ptr)) {
		char *eq = strchr(w, '=');
		const char *k = w, *v;

		if (!eq)
			continue;
		*eq = 0;
		v = eq + 1;
		if (!strcmp(k, "dirty_log")) {
			json_object_set_new(o, k, json_boolean(!strcmp(v, "on")));
		} else if (!strcmp(k, "save")) {
			save = json_object();
			json_object_set_new(save, "state", json_string(v));
		} else if (save && !strcmp(k, "pages") && strchr(v, '/')) {
			char *slash = strchr(v, '/');

			*slash = 0;
			json_object_set_new(save, "pages", status_value(v));
			json_object_set_new(save, "total", status_value(slash + 1));
		} else if (save && !strcmp(k, "bytes")) {
			json_object_set_new(save, "bytes", status_value(v));
		} else {
			json_object_set_new(o, k, !strcmp(k, "name") || !strcmp(k, "state") ?
					    json_string(v) : status_value(v));
		}
	}
	json_object_set_new(o, "save", save ? save : json_null());
	return o;
}

static int print_json(json_t *doc)
{
	int rc = json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	json_decref(doc);
	putchar('\n');
	return rc || fflush(stdout) ? EXIT_USAGE : 0;
}

/* ------------------------------------------------------------ list */

/* Whether a runner holds NAME.lock (it owns the name), read from its flock. */
static bool name_locked(const char *name)
{
	char path[4200];
	int fd;
	bool held;

	snprintf(path, sizeof(path), "%s/%s.lock", ctl_dir(), name);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	held = flock(fd, LOCK_SH | LOCK_NB) && errno == EWOULDBLOCK;
	close(fd);
	return held;
}

/* NAME.pid's pid, or 0. */
static long pid_file(const char *name)
{
	char path[4200];
	long pid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.pid", ctl_dir(), name);
	f = fopen(path, "re");
	if (f) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	return pid;
}

/* One domain of the list: its status, or why it has none. */
static void list_one(const char *name, json_t *domains)
{
	char reply[1024], esc[4 * SR_NAME_MAX + 8];
	char why[1200];
	const char *state;
	long pid;

	if (ctl_request(name, "status", -1, NULL, reply, sizeof(reply)) == 0) {
		if (domains)
			json_array_append_new(domains, status_json(reply));
		else
			printf("%s\n", reply);
		return;
	}
	/* A runner that holds the name and does not answer is alive; one that holds nothing is gone. */
	if (name_locked(name)) {
		state = "unresponsive";
		snprintf(why, sizeof(why), "%s", reply);
	} else {
		state = "stale";
		snprintf(why, sizeof(why), "no process holds %s.lock: the socket of a runner that "
			 "died; the next runner named %s replaces it", name, name);
	}
	pid = pid_file(name);
	if (domains) {
		json_t *o = json_object();

		json_object_set_new(o, "name", json_string(name));
		json_object_set_new(o, "state", json_string(state));
		json_object_set_new(o, "reason", json_string(why));
		json_object_set_new(o, "pid", pid ? json_integer(pid) : json_null());
		json_array_append_new(domains, o);
	} else {
		printf("name=%s state=%s (%s)\n", str_escape(esc, sizeof(esc), name, SR_NAME_MAX),
		       state, why);
	}
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list(bool json)
{
	DIR *dir = opendir(ctl_dir());
	json_t *doc = NULL, *domains = NULL;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;

	/* A runner that does not answer (stopped, stuck) is listed as such, not waited for. */
	ctl_set_timeout(LIST_TIMEOUT_MS);
	if (json) {
		doc = json_object();
		domains = json_array();
		json_object_set_new(doc, "protocol", json_integer(CTL_PROTOCOL));
		json_object_set_new(doc, "run_dir", json_string(ctl_dir()));
	}
	while (dir && (e = readdir(dir))) {
		size_t l = strlen(e->d_name);

		if (l < 6 || strcmp(e->d_name + l - 5, ".sock"))
			continue;
		e->d_name[l - 5] = 0;
		if (!sr_name_valid(e->d_name))
			continue;		/* not one a runner would bind */
		if (n == cap && !(names = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof(*names))))
			die(EXIT_USAGE, "out of memory");
		if (!(names[n++] = strdup(e->d_name)))
			die(EXIT_USAGE, "out of memory");
	}
	if (dir)
		closedir(dir);
	if (n)
		qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n; i++) {
		list_one(names[i], domains);
		free(names[i]);
	}
	free(names);
	if (json) {
		json_object_set_new(doc, "domains", domains);
		return print_json(doc);
	}
	if (!n)
		printf(dir ? "no domains\n" : "no domains (%s does not exist)\n", ctl_dir());
	return 0;
}

/* ------------------------------------------------------------ console */

static struct termios saved_tty;
static bool tty_raw;

static void tty_restore(void)
{
	if (tty_raw)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	tty_raw = false;
}

/* Raw keys, as the guest's own terminal would get them; put back on every way out. */
static void tty_make_raw(void)
{
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tty))
		return;
	t = saved_tty;
	cfmakeraw(&t);
	if (!tcsetattr(STDIN_FILENO, TCSAFLUSH, &t)) {
		tty_raw = true;
		atexit(tty_restore);
	}
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= k;
	}
	return 0;
}

/*
 * The console until Ctrl-] (or the end of standard input); the domain's end
 * or another sr-ctl console taking over ends it too.
 */
static int console(const char *name)
{
	char reply[1024], buf[4096];
	bool refused;
	int fd = ctl_open(name, "console", reply, sizeof(reply), &refused);

	if (fd < 0)
		die(refused ? 1 : EXIT_USAGE, "%s%s%s", refused ? name : "", refused ? ": " : "",
		    reply);
	fprintf(stderr, "[sr-ctl: attached to %s's console; Ctrl-] detaches]\n", name);
	signal(SIGPIPE, SIG_IGN);	/* a closed end is a write error: the terminal is put back */
	tty_make_raw();
	for (;;) {
		struct pollfd p[2] = { { .fd = STDIN_FILENO, .events = POLLIN },
				       { .fd = fd, .events = POLLIN } };
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die(EXIT_USAGE, "poll: %s", strerror(errno));
		}
		if (p[1].revents) {
			n = read(fd, buf, sizeof(buf));
			if (n <= 0) {
				tty_restore();
				fprintf(stderr, "\n[sr-ctl: %s's console closed: the domain ended, or "
					"another sr-ctl console took it]\n", name);
				return 0;
			}
			if (write_all(STDOUT_FILENO, buf, n))
				break;
		}
		if (p[0].revents) {
			char *key;

			n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n <= 0)
				break;
			key = memchr(buf, DETACH_KEY, n);
			if (write_all(fd, buf, key ? (size_t)(key - buf) : (size_t)n) || key)
				break;
		}
	}
	tty_restore();
	close(fd);
	fprintf(stderr, "\n[sr-ctl: detached from %s's console; the domain runs on]\n", name);
	return 0;
}

/* ------------------------------------------------------------ main */

static int request(const char *name, const struct verb *v, const char *arg, bool json)
{
	char reply[1024], req[128];
	int rc;

	if (!strcmp(v->name, "console"))
		return console(name);
	if (v->arg)
		snprintf(req, sizeof(req), "%s %s", v->name, arg);
	else
		snprintf(req, sizeof(req), "%s", v->name);
	rc = ctl_request(name, req, -1, NULL, reply, sizeof(reply));
	if (rc < 0)
		die(EXIT_USAGE, "%s", reply);
	if (rc > 0)
		die(1, "%s: %s", name, reply);
	if (json)
		return print_json(status_json(reply));
	printf("%s\n", reply);
	return 0;
}

int main(int argc, char **argv)
{
	const char *word[4];
	const struct verb *v;
	const char *name, *arg;
	bool json = false, opts_end = false;
	int n = 0;

	sr_set_prog(argv[0]);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!opts_end && !strcmp(a, "--")) {
			opts_end = true;
		} else if (!opts_end && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
			usage(stdout);
			return 0;
		} else if (!opts_end && !strcmp(a, "--version")) {
			usage_version();
		} else if (!opts_end && !strcmp(a, "--json")) {
			json = true;
		} else if (!opts_end && a[0] == '-' && a[1]) {
			usage_error("unrecognized option '%s'", a);
		} else if (n == 4) {
			usage_error("unexpected argument '%s'", a);
		} else {
			word[n++] = a;
		}
	}
	if (!n)
		usage_error("no command given (list, host, status NAME, ...)");
	if (!strcmp(word[0], "list") || !strcmp(word[0], "host")) {
		if (n > 1)
			usage_error("%s takes no argument: unexpected '%s' (a domain named %s is "
				    "sr-ctl VERB %s)", word[0], word[1], word[0], word[0]);
		return word[0][0] == 'l' ? list(json) : host_report(json);
	}
	if ((v = find_verb(word[0]))) {
		if (n < 2)
			usage_error("%s needs a domain name", word[0]);
		name = word[1];
	} else if (n >= 2 && (v = find_verb(word[1]))) {
		/* The older order: kept working; an operator at a terminal is told the new one. */
		name = word[0];
		if (isatty(STDERR_FILENO))
			fprintf(stderr, "%s: note: 'sr-ctl %s %s' is the older order; it is 'sr-ctl "
				"%s %s' now\n", sr_prog, name, v->name, v->name, name);
	} else {
		if (n == 1)
			usage_error("unknown command '%s' (list, host, status, pause, resume, "
				    "finish, destroy, cancel, console)", word[0]);
		usage_error("unknown command: neither '%s' nor '%s' is one of list, host, status, "
			    "pause, resume, finish, destroy, cancel, console", word[0], word[1]);
	}
	if (n < 2 + v->arg)
		usage_error("%s needs a value", v->name);
	if (n > 2 + v->arg)
		usage_error("%s: unexpected argument '%s'", v->name, word[2 + v->arg]);
	arg = v->arg ? word[2] : NULL;
	if (!sr_name_valid(name))
		usage_error("bad domain name '%s': 1..%u characters of A-Z a-z 0-9 . _ -, not "
			    "starting with a dot", name, SR_NAME_MAX);
	if (json && strcmp(v->name, "status"))
		usage_error("--json goes with list, status and host, not %s", v->name);
	return request(name, v, arg, json);
}
