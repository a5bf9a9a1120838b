/* SPDX-License-Identifier: MIT */
/* sr-migrate: move a running domain to another host (save_cli.c). */
#include "save_cli.h"

int main(int argc, char **argv)
{
	return save_cli(argc, argv, true);
}
