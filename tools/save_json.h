/* SPDX-License-Identifier: MIT */
/*
 * sr-save and sr-migrate for a program: --json (one document at the end:
 * the summary and the rounds) and --progress json (an event per line as the
 * save goes), both on stdout; the fields are docs/control.md's.
 */
#ifndef SR_TOOLS_SAVE_JSON_H
#define SR_TOOLS_SAVE_JSON_H

#include <stdbool.h>

struct save_json;

struct save_json *save_json_new(const char *tool, const char *dom, const char *dest, bool live,
				bool document, bool events);

/* A line from the runner: progress, round or stats (others are ignored). */
void save_json_line(struct save_json *j, const char *line);

/* "prepared", "commit", "abort", "hold": the two-phase steps, as events. */
void save_json_step(struct save_json *j, const char *step);

/* The end: an "end" event and the document; message is the reply or the error. */
void save_json_end(struct save_json *j, bool ok, const char *message);

#endif
