/* SPDX-License-Identifier: MIT */
/* sr-save and sr-migrate share one command line (save_cli.c). */
#ifndef SR_SAVE_CLI_H
#define SR_SAVE_CLI_H

#include <stdbool.h>

/* main() of sr-save (migrate false) or sr-migrate (true). */
int save_cli(int argc, char **argv, bool migrate);

#endif
