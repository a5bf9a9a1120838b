/* SPDX-License-Identifier: MIT */
/* sr-run: start a domain from a test guest image. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "abi.h"
#include "sr.h"
#include "runner.h"
#include "host.h"
#include "usage.h"
#include "detach.h"
#include "util.h"
#include "virtio.h"

/*
 * Quiet, serial console, no probing of hardware sr does not model; without
 * devices, no PCI either (LINUX_NO_PCI is added).  No tsc=reliable: the
 * guest must keep kvm-clock, which a restore moves on by the time the guest
 * was away; its TSC resumes where it stopped.
 */
#define LINUX_CMDLINE "console=ttyS0 reboot=k panic=-1 nomodeset i8042.noaux " \
	"i8042.nomux i8042.nopnp i8042.dumbkbd no_timer_check rdinit=/init quiet"
#define LINUX_NO_PCI "pci=off"
#define DISKS_MAX 7			/* with the rng, the 8 PCI interrupt lines */

static void usage(FILE *f)
{
	fprintf(f,
"usage: sr-run [OPTIONS] GUEST\n"
"       sr-run [OPTIONS] --kernel bzImage [--initrd FILE] [--cmdline \"...\"]\n"
"Start a domain from a test guest: a flat image loaded and entered at 1 MiB\n"
"(build/guest/sr-test-guest.bin) or an x86-64 ELF executable whose PT_LOAD\n"
"segments (physical addresses) and entry lie between 1 and 4 MiB\n"
"(build/guest/sr-test-guest.elf), entered in 32-bit protected mode; or boot\n"
"a Linux kernel; its console goes to standard output (Linux: an 8250 UART at\n"
"0x3f8, IRQ 4, whose input is standard input).\n"
"\n"
"  -n, --name NAME          domain name (default sr-PID); control socket\n"
"                           $SR_RUN_DIR/NAME.sock (default /run/sr)\n"
"      --vcpus N            vCPUs (default 1, at most 16)\n"
"  -m, --memory MiB         guest RAM (default 64): up to 3 GiB from address 0,\n"
"                           the rest from 4 GiB (the hole between holds the\n"
"                           APICs and device MMIO); at most MemAvailable\n"
"      --max-memory MiB     allow --memory up to this instead of MemAvailable\n"
"                           (memory is allocated only where the guest writes)\n"
"      --dirty-ring         track dirty pages with per-vCPU rings\n"
"                           (KVM_CAP_DIRTY_LOG_RING; for sr-save --live)\n"
"  -p, --paused             start paused (resume with sr-ctl resume NAME)\n"
"      --detach             run in the background once the domain runs: the\n"
"                           console goes to --log, NAME.pid beside NAME.sock;\n"
"                           returns 0 then, or the start's failure and status\n"
"                           (sr-ctl console NAME attaches to the console)\n"
"      --log FILE           --detach: the console (default $SR_RUN_DIR/NAME.log)\n"
"      --kernel FILE        boot Linux (64-bit boot protocol; memory default 256 MiB)\n"
"      --initrd FILE        its initramfs\n"
"      --cmdline TEXT       appended to sr-run's defaults: " LINUX_CMDLINE "\n"
"                           (and " LINUX_NO_PCI " when there is no --disk or --rng)\n"
"      --disk FILE[,ro][,cache=none|writeback]\n"
"                           a virtio-blk disk on a raw file (repeatable, up to 7;\n"
"                           /dev/vda, vdb, ... in order); cache=none opens it\n"
"                           O_DIRECT; the guest's flush is fdatasync\n"
"      --rng                a virtio-rng device (getrandom); with --disk, these\n"
"                           are virtio 1.x PCI devices the stock kernel finds\n"
"      --save-to FILE       where a guest-requested SAVE writes the image; the\n"
"                           domain exits after the save\n"
"  -v, --verbose            log guest stages\n"
"Test guest workload knobs:\n"
"      --rounds N           workload rounds before the verdict (default 20; 0 = forever)\n"
"      --save-round N       ask for a save after round N (default 0 = never)\n"
"      --pages N            pages each vCPU rewrites per round (default: its whole slice)\n"
"      --working-set N      pages in each vCPU's slice (default: all RAM above 8 MiB)\n"
"      --delay-us N         sleep between rounds, in microseconds (10 ms granularity)\n"
"      --dirty-rate N       each vCPU rewrites about N pages per second: sets --pages\n"
"                           to N/20 and --delay-us to 50000\n"
"      --quiet-guest        the guest prints only its banner, save points and verdict\n"
"      --prefill            the first round writes every page of each slice\n"
"      --guest-mode MODE    a timing test instead of the workload (one vCPU):\n"
"                           tsc-deadline, pit-pause or port-loop (guest/abi.h)\n"
"      --high-pages N       vCPU 0 also rewrites and checks N pages above 4 GiB\n"
"                           every round (half at the start of that RAM, half at\n"
"                           its end; at most %u; needs --memory over 3072)\n"
"  -h, --help               this help\n"
"      --version            sr's version\n"
"\n"
"Exit status: 0 the guest reported PASS (DONE 0); 1 the guest failed (ASSERT or\n"
"DONE != 0); 2 usage or setup error; 3 KVM error, unexpected shutdown, or a\n"
"host whose /dev/kvm cannot run sr's guests (sr-ctl host says why);\n"
"4 ended by a signal or sr-ctl destroy.\n", SR_GUEST_MAX_HIGH_PAGES);
}

static unsigned long parse_num(const char *opt, const char *s, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || *end || end == s || v > max)
		usage_error("%s: \"%s\" is not a number up to %lu", opt, s, max);
	return v;
}

static uint32_t parse_mode(const char *s)
{
	static const char *const names[] = { [SR_MODE_WORKLOAD] = "workload",
		[SR_MODE_TSC_DEADLINE] = "tsc-deadline", [SR_MODE_PIT_PAUSE] = "pit-pause",
		[SR_MODE_PORT_LOOP] = "port-loop" };

	for (uint32_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i]))
			return i;
	usage_error("--guest-mode: \"%s\" is not workload, tsc-deadline, pit-pause or port-loop", s);
}

/*
 * Guest memory is allocated only where the guest writes, so what the host can
 * give is what it has free: MemAvailable, unless --max-memory says otherwise.
 */
static void check_memory(uint64_t bytes, unsigned long long max_mib)
{
	unsigned long long avail = mem_available_mib();

	if (bytes >> 20 > (max_mib ? max_mib : avail))
		die(EXIT_USAGE, "--memory %llu MiB is more than %s (%llu MiB); guest memory is "
		    "allocated only where the guest writes, so --max-memory MiB allows more",
		    (unsigned long long)(bytes >> 20),
		    max_mib ? "--max-memory" : "this host's MemAvailable",
		    max_mib ? max_mib : avail);
}

int main(int argc, char **argv)
{
	enum { O_SAVE_TO = 256, O_ROUNDS, O_SAVE_ROUND, O_PAGES, O_WSET, O_DELAY, O_QUIET, O_RATE,
	       O_PREFILL, O_KERNEL, O_INITRD, O_CMDLINE, O_MODE, O_MAX_MEMORY, O_HIGH_PAGES, O_DISK,
	       O_RNG, O_DETACH, O_LOG };
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "vcpus", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "paused", no_argument, NULL, 'p' },
		{ "dirty-ring", no_argument, NULL, 'R' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "save-to", required_argument, NULL, O_SAVE_TO },
		{ "rounds", required_argument, NULL, O_ROUNDS },
		{ "save-round", required_argument, NULL, O_SAVE_ROUND },
		{ "pages", required_argument, NULL, O_PAGES },
		{ "working-set", required_argument, NULL, O_WSET },
		{ "delay-us", required_argument, NULL, O_DELAY },
		{ "quiet-guest", no_argument, NULL, O_QUIET },
		{ "dirty-rate", required_argument, NULL, O_RATE },
		{ "prefill", no_argument, NULL, O_PREFILL },
		{ "guest-mode", required_argument, NULL, O_MODE },
		{ "max-memory", required_argument, NULL, O_MAX_MEMORY },
		{ "high-pages", required_argument, NULL, O_HIGH_PAGES },
		{ "kernel", required_argument, NULL, O_KERNEL },
		{ "initrd", required_argument, NULL, O_INITRD },
		{ "cmdline", required_argument, NULL, O_CMDLINE },
		{ "disk", required_argument, NULL, O_DISK },
		{ "rng", no_argument, NULL, O_RNG },
		{ "detach", no_argument, NULL, O_DETACH },
		{ "log", required_argument, NULL, O_LOG },
		{ "help", no_argument, NULL, 'h' },
		USAGE_VERSION_OPTION,
		{ 0 }
	};
	struct sr_bootinfo bi = { .magic = SR_BOOTINFO_MAGIC, .rounds = 20 };
	struct runner_config cfg = { .vcpus = 1, .mem_bytes = 64ull << 20, .test_guest = true,
				     .guest_kind = SR_GUEST_TEST, .boot_entry = SR_GUEST_LOAD };
	struct xc_error err;
	struct runner *r;
	struct xc_domain *d;
	struct xc_linux_boot lb = { 0 };
	const char *extra_cmdline = "", *log = NULL;
	char logbuf[4200];
	bool detach = false;
	char cmdline[4096];
	bool paused = false, mem_given = false;
	unsigned long long max_mib = 0;
	uint64_t entry;
	char name[64], why[256];
	static struct virtio_blk_opts disks[DISKS_MAX];
	struct xc_pci_intx intx[PCI_IOAPIC_PINS];
	int c, rc;

	sr_set_prog(argv[0]);
	while ((c = usage_getopt(argc, argv, "n:m:pvh", opts)) != -1) {
		switch (c) {
		case 'n': cfg.name = optarg; break;
		case 'c': cfg.vcpus = parse_num("--vcpus", optarg, SR_GUEST_MAX_CPUS); break;
		case 'm':
			cfg.mem_bytes = parse_num("--memory", optarg, 1 << 20) << 20;
			mem_given = true;
			break;
		case 'p': paused = true; break;
		case 'R': cfg.dirty_ring = true; break;
		case 'v': cfg.verbose = true; break;
		case O_SAVE_TO: cfg.save_to = optarg; break;
		case O_ROUNDS: bi.rounds = parse_num("--rounds", optarg, UINT32_MAX); break;
		case O_SAVE_ROUND: bi.save_round = parse_num("--save-round", optarg, UINT32_MAX); break;
		case O_PAGES: bi.pages_per_round = parse_num("--pages", optarg, UINT32_MAX); break;
		case O_WSET: bi.working_set_pages = parse_num("--working-set", optarg, UINT32_MAX); break;
		case O_DELAY: bi.round_delay_us = parse_num("--delay-us", optarg, UINT32_MAX); break;
		case O_QUIET: bi.flags |= SR_BOOTINFO_F_QUIET; break;
		case O_PREFILL: bi.flags |= SR_BOOTINFO_F_PREFILL; break;
		case O_MODE: bi.mode = parse_mode(optarg); break;
		case O_MAX_MEMORY: max_mib = parse_num("--max-memory", optarg, 1 << 20); break;
		case O_HIGH_PAGES:
			bi.high_pages = parse_num("--high-pages", optarg, SR_GUEST_MAX_HIGH_PAGES);
			break;
		case O_KERNEL: lb.kernel = optarg; break;
		case O_INITRD: lb.initrd = optarg; break;
		case O_CMDLINE: extra_cmdline = optarg; break;
		case O_DISK:
			if (cfg.ndisks == DISKS_MAX)
				usage_error("--disk: at most %d disks", DISKS_MAX);
			if (virtio_blk_parse(optarg, &disks[cfg.ndisks], why, sizeof(why)))
				usage_error("%s", why);
			cfg.ndisks++;
			break;
		case O_RNG: cfg.rng = true; break;
		case O_DETACH: detach = true; break;
		case O_LOG: log = optarg; break;
		case O_RATE:
			bi.pages_per_round = parse_num("--dirty-rate", optarg, 100000000) / 20;
			if (!bi.pages_per_round)
				bi.pages_per_round = 1;
			bi.round_delay_us = 50000;
			break;
		case 'h': usage(stdout); return 0;
		default: return EXIT_USAGE;
		}
	}
	if (!lb.kernel && optind == argc)
		usage_error("no GUEST given (a test guest image), nor --kernel FILE");
	if (optind < argc - !lb.kernel)
		usage_error("unexpected argument '%s' (%s)", argv[optind + !lb.kernel],
			    lb.kernel ? "--kernel boots Linux, with no GUEST" : "one GUEST only");
	if (lb.kernel) {
		cfg.test_guest = false;
		cfg.serial = true;
		cfg.guest_kind = SR_GUEST_LINUX;
		if (!mem_given)
			cfg.mem_bytes = 256ull << 20;
		cfg.pci = true;
		cfg.disks = disks;
		if ((size_t)snprintf(cmdline, sizeof(cmdline), "%s%s%s %s", LINUX_CMDLINE,
				     cfg.ndisks || cfg.rng ? "" : " ", cfg.ndisks || cfg.rng ? "" :
				     LINUX_NO_PCI, extra_cmdline) >= sizeof(cmdline))
			usage_error("--cmdline is too long");
		lb.cmdline = cmdline;
	} else if (lb.initrd || *extra_cmdline || cfg.ndisks || cfg.rng) {
		usage_error("--initrd, --cmdline, --disk and --rng need --kernel");
	}
	if (cfg.vcpus < 1)
		usage_error("--vcpus must be at least 1");
	if (cfg.test_guest && cfg.mem_bytes < (16ull << 20))
		usage_error("--memory must be at least 16 MiB for the test guest");
	if (!cfg.name) {
		snprintf(name, sizeof(name), "sr-%d", getpid());
		cfg.name = name;
	}
	if (!sr_name_valid(cfg.name))
		usage_error("bad domain name: 1..%u characters of A-Z a-z 0-9 . _ -, not "
		    "starting with a dot", SR_NAME_MAX);
	check_memory(cfg.mem_bytes, max_mib);
	if (bi.high_pages * 4096ull > x86_high_ram(cfg.mem_bytes))
		usage_error("--high-pages %u needs at least %llu MiB of --memory (RAM above "
		    "4 GiB is what lies past the first %llu MiB)", bi.high_pages,
		    (X86_LOW_RAM_MAX + bi.high_pages * 4096ull + (1 << 20) - 1) >> 20,
		    X86_LOW_RAM_MAX >> 20);
	if (log && !detach)
		usage_error("--log is for --detach");
	bi.vcpus = cfg.vcpus;
	bi.mem_bytes = x86_low_ram(cfg.mem_bytes);
	bi.high_bytes = x86_high_ram(cfg.mem_bytes);

	if (detach) {
		/* Before any thread exists; errors still reach this session's stderr. */
		detach_begin(NULL);
		fd_reopen(STDIN_FILENO, "/dev/null", O_RDONLY);
	}
	host_check_or_die();
	/* The name before the VM: a second domain of that name is refused before any work. */
	if (runner_claim_name(cfg.name, &cfg.lock_fd, &err))
		die(EXIT_USAGE, "%s", err.msg);
	cfg.claimed = true;
	r = runner_new(&cfg, &err);
	if (!r)
		die(EXIT_USAGE, "%s", err.msg);
	d = runner_domain(r);
	if (xc_mem_add_ram(d, cfg.mem_bytes, &err))
		goto fail;
	for (unsigned i = 0; i < cfg.vcpus; i++)
		if (!xc_vcpu_create(d, i, &err))
			goto fail;
	if (lb.kernel) {
		lb.pci_intx = intx;
		lb.n_pci_intx = runner_pci_intx(r, intx, PCI_IOAPIC_PINS);
		if (xc_linux_boot(d, &lb, &entry, &err))
			goto fail;
	} else {
		entry = SR_GUEST_LOAD;
		if (xc_is_elf(argv[optind]) ?
		    xc_load_elf(d, argv[optind], SR_GUEST_LOAD, 4ull << 20, &entry, &err) :
		    xc_load_file(d, argv[optind], SR_GUEST_LOAD, (4ull << 20) - SR_GUEST_LOAD, &err) < 0)
			goto fail;
		memcpy(xc_gpa_to_hva(d, SR_GUEST_BOOTINFO, sizeof(bi)), &bi, sizeof(bi));
		if (xc_vcpu_boot_pm32(xc_vcpu_get(d, 0), entry, &err))
			goto fail;
	}
	if (runner_listen(r, &err))
		goto fail;
	if (!detach) {
		rc = runner_run(r, paused);
		runner_free(r);
		return rc;
	}
	if (!log)
		log = detach_log_path(logbuf, sizeof(logbuf), cfg.name);
	/* The console goes to the log from the guest's first byte. */
	if (fd_reopen(STDOUT_FILENO, log, O_WRONLY | O_CREAT | O_APPEND))
		pr_warn("%s: %s; the console goes nowhere", log, strerror(errno));
	rc = runner_start(r, paused, &err);
	if (rc) {
		pr_err("%s", err.msg);
		runner_free(r);
		return rc;
	}
	pr_info("%s: \"%s\" runs detached, pid %d; console in %s (sr-ctl console %s)", sr_prog,
		cfg.name, (int)getpid(), log, cfg.name);
	detach_finish(log);
	rc = runner_loop(r);
	runner_free(r);
	return rc;
fail:
	pr_err("%s", err.msg);
	runner_free(r);
	return EXIT_USAGE;
}
