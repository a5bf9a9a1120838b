/* SPDX-License-Identifier: MIT */
/* sr-save: save a running domain to an image (save_cli.c). */
#include "save_cli.h"

int main(int argc, char **argv)
{
	return save_cli(argc, argv, false);
}
