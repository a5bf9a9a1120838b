/* SPDX-License-Identifier: MIT */
/* sr-ctl: list domains and pause, resume, query or destroy one. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "host.h"
#include "util.h"

static void usage(FILE *f)
{
	fprintf(f,
"usage: sr-ctl list\n"
"       sr-ctl host [--json]\n"
"       sr-ctl NAME status|pause|resume|finish|destroy|cancel\n"
"Control running sr domains through their sockets in $SR_RUN_DIR (default /run/sr).\n"
"\n"
"  list      one line per running domain with its status\n"
"  host      what /dev/kvm is here (kvm_intel, kvm_amd, kvm_pvm, other), its API\n"
"            version, the capabilities sr uses, and whether a probe guest of a\n"
"            few instructions runs; --json prints one JSON document\n"
"  status    name, state, vCPUs, memory, guest stage, runner pid, dirty log,\n"
"            throttle (the most any vCPU is held back, in %%)\n"
"  pause     stop every vCPU (returns once all are out of the guest)\n"
"  resume    let the vCPUs run again\n"
"  finish    ask the sr test guest to end its current round and report its verdict\n"
"  destroy   end the domain (its runner exits with status 4)\n"
"  cancel    abort the save in progress; the domain goes on as before it\n"
"\n"
"      --json    with host: one JSON document\n"
"  -h, --help\n"
"\n"
"Exit status: 0 done, 1 the domain refused, 2 usage error or no such domain;\n"
"host: 0 sr's guests can run here, 3 they cannot (the last line says why).\n"
"Environment: SR_RUN_DIR; SR_PROBE_SYSFS and SR_PROBE_DEV stand in for /sys and\n"
"/dev/kvm in the host probe (for tests).\n");
}

static int list(void)
{
	DIR *dir = opendir(ctl_dir());
	struct dirent *e;
	int n = 0;

	if (!dir) {
		printf("no domains (%s does not exist)\n", ctl_dir());
		return 0;
	}
	while ((e = readdir(dir))) {
		size_t l = strlen(e->d_name);
		char name[256], reply[512];

		if (l < 6 || strcmp(e->d_name + l - 5, ".sock"))
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(l - 5), e->d_name);
		if (ctl_request(name, "status", -1, NULL, reply, sizeof(reply)) == 0) {
			printf("%s\n", reply);
			n++;
		}
	}
	closedir(dir);
	if (!n)
		printf("no domains\n");
	return 0;
}

int main(int argc, char **argv)
{
	char reply[512], req[128];
	int rc;

	sr_set_prog(argv[0]);
	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage(stdout);
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "list"))
		return list();
	if (argc >= 2 && !strcmp(argv[1], "host")) {
		if (argc == 2 || (argc == 3 && !strcmp(argv[2], "--json")))
			return host_report(argc == 3);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (argc == 4 && !strcmp(argv[2], "poke")) {
		/* Testing aid, deliberately undocumented in --help: flip one guest bit. */
		snprintf(req, sizeof(req), "poke %s", argv[3]);
	} else if (argc == 4 && !strcmp(argv[2], "throttle")) {
		/* Testing aid, undocumented like poke: hold the vCPUs at a throttle (%). */
		snprintf(req, sizeof(req), "throttle %s", argv[3]);
	} else if (argc == 3 && (!strcmp(argv[2], "status") || !strcmp(argv[2], "pause") ||
				 !strcmp(argv[2], "resume") || !strcmp(argv[2], "destroy") ||
				 !strcmp(argv[2], "cancel") ||
				 !strcmp(argv[2], "finish"))) {
		snprintf(req, sizeof(req), "%s", argv[2]);
	} else {
		usage(stderr);
		return EXIT_USAGE;
	}
	rc = ctl_request(argv[1], req, -1, NULL, reply, sizeof(reply));
	if (rc < 0)
		die(EXIT_USAGE, "%s", reply);
	if (rc > 0)
		die(1, "%s: %s", argv[1], reply);
	printf("%s\n", reply);
	return 0;
}
