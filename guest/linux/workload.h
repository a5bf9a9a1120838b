/* SPDX-License-Identifier: MIT */
/*
 * sr-workload's modes.  The memory workload (workload.c) is the default; the
 * first argument picks another:
 *   disk [seconds] [writes-per-second]   files written with fsync, journalled, verified (disk.c)
 *   verify                               the disk's files against their journal, after a boot (disk.c)
 *   bench [MiB] [seconds] [jobs]         O_DIRECT throughput on the root disk (diskbench.c)
 * Every mode speaks the memory workload's protocol on the console: a line
 * "sr-workload: tick N ... realtime T" a second, "stop" on standard input
 * ends a run of 0 seconds, and the last line says PASS or FAIL.
 */
#ifndef SR_WORKLOAD_H
#define SR_WORKLOAD_H

#include <time.h>

double now(clockid_t c);
int told_to_stop(void);
void print_tick(unsigned long long tick, const char *what);

int disk_main(int argc, char **argv);
int verify_main(int argc, char **argv);
int bench_main(int argc, char **argv);

#endif
