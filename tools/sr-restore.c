/* SPDX-License-Identifier: MIT */
/* sr-restore: build a domain from an image and run it. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "abi.h"
#include "hvmctx.h"
#include "runner.h"
#include "serial8250.h"
#include "host.h"
#include "util.h"

#define EXIT_BAD_IMAGE 5

static void usage(FILE *f)
{
	fprintf(f,
"usage: sr-restore [OPTIONS] FILE|-\n"
"Build a domain from an sr image (\"-\": standard input) and resume it; this\n"
"process then runs it, like sr-run: console on stdout, control socket\n"
"$SR_RUN_DIR/NAME.sock (sr-ctl, sr-save work on it).\n"
"\n"
"  -n, --name NAME          domain name (default: the name in the image)\n"
"      --dirty-ring         track dirty pages with per-vCPU rings\n"
"                           (KVM_CAP_DIRTY_LOG_RING; for sr-save --live)\n"
"  -p, --paused             restore paused (resume with sr-ctl NAME resume)\n"
"      --clock MODE         advance (default): guest time moves on by the wall\n"
"                           time since the save; freeze: it resumes where it stopped\n"
"      --save-to FILE       where a guest-requested SAVE writes the next image\n"
"  -v, --verbose            say what was restored\n"
"      --max-memory MiB     refuse an image whose guest has more RAM than this\n"
"                           (default: this host's MemAvailable), before anything\n"
"                           is allocated\n"
"  -h, --help\n"
"\n"
"Nothing from the image reaches a vCPU before the whole image has verified.\n"
"Exit status: as sr-run (0 PASS, 1 guest failed, 2 usage/setup error, 3 KVM\n"
"error or a host that cannot run sr's guests, 4 destroyed), and 5 when the image is corrupt, truncated or foreign\n"
"(no guest code ran).\n");
}

/* DEVICE records: the UART is the only device model so far. */
static int restore_device(void *arg, const char *name, uint32_t version, uint32_t instance,
			  const void *data, size_t len, struct xc_error *err)
{
	return serial_restore_device(runner_serial(arg), name, version, instance, data, len, err);
}

/* MemAvailable, in MiB (what the kernel thinks can be had without swapping). */
static unsigned long long mem_available_mib(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	unsigned long long kib = 0;
	char line[128];

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib ? kib >> 10 : ~0ull;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "paused", no_argument, NULL, 'p' },
		{ "dirty-ring", no_argument, NULL, 'R' },
		{ "clock", required_argument, NULL, 'k' },
		{ "save-to", required_argument, NULL, 's' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "max-memory", required_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct hvmctx_restore_opts ro = { .clock = HVMCTX_CLOCK_ADVANCE };
	struct runner_config cfg = { 0 };
	struct hvmctx_restore_stats st;
	struct hvmctx_image img;
	struct hvmctx_restore *rs;
	struct xc_error err;
	struct runner *r = NULL;
	const char *path, *name = NULL;
	bool paused = false, verbose = false;
	unsigned long long max_mib = 0;
	char *end;
	int c, fd, rc;

	sr_set_prog(argv[0]);
	while ((c = getopt_long(argc, argv, "n:pvh", opts, NULL)) != -1) {
		switch (c) {
		case 'n': name = optarg; break;
		case 'p': paused = true; break;
		case 'R': cfg.dirty_ring = true; break;
		case 'v': verbose = true; break;
		case 's': cfg.save_to = optarg; break;
		case 'M':
			max_mib = strtoull(optarg, &end, 10);
			if (*end || end == optarg || !max_mib)
				die(EXIT_USAGE, "--max-memory takes a number of MiB, not \"%s\"", optarg);
			break;
		case 'k':
			if (!strcmp(optarg, "advance"))
				ro.clock = HVMCTX_CLOCK_ADVANCE;
			else if (!strcmp(optarg, "freeze"))
				ro.clock = HVMCTX_CLOCK_FREEZE;
			else
				die(EXIT_USAGE, "--clock takes advance or freeze, not \"%s\"", optarg);
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	path = argv[optind];
	if (name && !sr_name_valid(name))
		die(EXIT_USAGE, "bad domain name: 1..%u characters of A-Z a-z 0-9 . _ -, not "
		    "starting with a dot", SR_NAME_MAX);
	host_check_or_die();
	fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
	if (fd < 0)
		die(EXIT_USAGE, "%s: %s", path, strerror(errno));

	rs = hvmctx_restore_begin(fd, &img, &err);
	if (!rs)
		die(err.sys_errno == EBADMSG ? EXIT_BAD_IMAGE : EXIT_USAGE, "%s: %s", path, err.msg);
	cfg.name = name ? name : img.name[0] ? img.name : "restored";
	cfg.vcpus = img.vcpus;
	for (unsigned i = 0; i < img.nregions; i++)
		cfg.mem_bytes += img.regions[i].size;
	cfg.test_guest = img.guest_kind == SR_GUEST_TEST;
	cfg.serial = img.guest_kind == SR_GUEST_LINUX;
	cfg.guest_kind = img.guest_kind;
	cfg.boot_entry = img.boot_entry;
	cfg.boot_arg = img.boot_arg;
	memcpy(cfg.uuid, img.uuid, 16);
	cfg.verbose = verbose;
	if (!max_mib)
		max_mib = mem_available_mib();
	if (cfg.mem_bytes >> 20 > max_mib)
		die(EXIT_USAGE, "%s: the image's guest has %llu MiB of RAM, more than the %llu MiB "
		    "allowed (%s); nothing was allocated", path,
		    (unsigned long long)(cfg.mem_bytes >> 20), max_mib,
		    max_mib == mem_available_mib() ? "this host's MemAvailable; --max-memory sets "
		    "another limit" : "--max-memory");
	if (cfg.vcpus > XC_MAX_VCPUS)
		die(EXIT_USAGE, "%s: %u vCPUs, this build runs at most %d", path, cfg.vcpus,
		    XC_MAX_VCPUS);

	r = runner_new(&cfg, &err);
	if (!r)
		goto fail;
	ro.device = restore_device;
	ro.device_arg = r;
	if (hvmctx_restore_finish(rs, runner_domain(r), &ro, &st, &err))
		goto fail;
	if (cfg.test_guest) {
		/* The test guest counts its restores (guest/abi.h). */
		struct sr_bootinfo *bi = xc_gpa_to_hva(runner_domain(r), SR_GUEST_BOOTINFO, sizeof(*bi));

		if (bi && bi->magic == SR_BOOTINFO_MAGIC)
			bi->restores++;
	}
	if (runner_listen(r, &err))
		goto fail;
	hvmctx_restore_free(rs);
	rs = NULL;
	if (fd != STDIN_FILENO)
		close(fd);
	if (verbose)
		pr_info("%s: restored \"%s\": %u vCPU%s, %llu pages, %llu bytes in %.1f ms; clock %s "
			"(%+.1f ms); TSC %s%s%s", sr_prog, cfg.name, cfg.vcpus, cfg.vcpus == 1 ? "" : "s",
			(unsigned long long)st.pages, (unsigned long long)st.bytes,
			st.duration_ns / 1e6, ro.clock == HVMCTX_CLOCK_ADVANCE ? "advanced" : "frozen",
			st.clock_jump_ns / 1e6,
			st.tsc == HVMCTX_TSC_CARRIED ? "offsets carried" :
			st.tsc == HVMCTX_TSC_FROM_MSR ? "from vCPU 0's saved TSC" :
			st.tsc == HVMCTX_TSC_ALIGNED ? "offsets aligned to vCPU 0" : "as saved",
			st.tsc_why ? ": " : "", st.tsc_why ? st.tsc_why : "");
	rc = runner_run(r, paused);
	runner_free(r);
	return rc;
fail:
	pr_err("%s: %s", path, err.msg);
	runner_free(r);
	hvmctx_restore_free(rs);
	return err.sys_errno == EBADMSG ? EXIT_BAD_IMAGE : EXIT_USAGE;
}
