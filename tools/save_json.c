/* SPDX-License-Identifier: MIT */
/* JSON of a save as it goes and at its end (docs/control.md, "schema: save"). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "save_json.h"
#include "util.h"

#define SAVE_JSON_SCHEMA	1

struct save_json {
	const char *tool, *dom, *dest;
	bool live, document, events, ended;
	uint64_t t0;
	json_t *rounds, *summary;
};

struct save_json *save_json_new(const char *tool, const char *dom, const char *dest, bool live,
				bool document, bool events)
{
	struct save_json *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	*j = (struct save_json){ tool, dom, dest, live, document, events, false, mono_ns(),
				 json_array(), NULL };
	if (events) {
		json_t *e = json_pack("{s:s, s:i, s:s, s:s, s:b}", "event", "start", "t_ms", 0,
				      "domain", dom, "destination", dest, "live", live);

		json_dumpf(e, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
		putchar('\n');
		fflush(stdout);
		json_decref(e);
	}
	return j;
}

/* An event line: its fields after "event" and "t_ms". */
static void emit(struct save_json *j, const char *event, json_t *fields)
{
	json_t *e = json_pack("{s:s, s:I}", "event", event, "t_ms",
			      (json_int_t)((mono_ns() - j->t0) / 1000000));

	if (fields)
		json_object_update(e, fields);
	json_dumpf(e, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
	putchar('\n');
	fflush(stdout);
	json_decref(e);
}

/*
 * "key=value ..." after the line's first word as an object: numbers as
 * integers; rest_key, when met, takes the rest of the line as a string.
 */
static json_t *words(const char *line, const char *rest_key)
{
	json_t *o = json_object();
	const char *p = strchr(line, ' ');

	while (p && *p) {
		char key[32], *end;
		const char *eq, *val;
		size_t kl, vl;
		unsigned long long n;

		p += strspn(p, " ");
		eq = strchr(p, '=');
		if (!eq || (kl = eq - p) >= sizeof(key))
			break;
		memcpy(key, p, kl);
		key[kl] = 0;
		val = eq + 1;
		if (rest_key && !strcmp(key, rest_key)) {
			json_object_set_new(o, key, json_string(val));
			break;
		}
		vl = strcspn(val, " ");
		errno = 0;
		n = strtoull(val, &end, 10);
		if (vl && end == val + vl && !errno)
			json_object_set_new(o, key, json_integer((json_int_t)n));
		else
			json_object_set_new(o, key, json_stringn(val, vl));
		p = val + vl;
	}
	return o;
}

void save_json_line(struct save_json *j, const char *line)
{
	json_t *o;

	if (!j)
		return;
	if (!strncmp(line, "progress ", 9)) {
		if (j->events) {
			o = words(line, NULL);
			emit(j, "progress", o);
			json_decref(o);
		}
	} else if (!strncmp(line, "round ", 6)) {
		o = words(line, NULL);
		/* final is a flag on the wire, a boolean here. */
		json_object_set_new(o, "final", json_boolean(json_integer_value(json_object_get(o, "final"))));
		if (j->events)
			emit(j, "round", o);
		json_array_append_new(j->rounds, o);
	} else if (!strncmp(line, "stats ", 6)) {
		json_decref(j->summary);
		j->summary = words(line, "stop_reason");
		/* A cold save has no pre-copy and no reason it stopped. */
		if (!*json_string_value(json_object_get(j->summary, "stop_reason")))
			json_object_set_new(j->summary, "stop_reason", json_null());
	}
}

void save_json_step(struct save_json *j, const char *step)
{
	if (j && j->events)
		emit(j, step, NULL);
}

void save_json_end(struct save_json *j, bool ok, const char *message)
{
	json_t *doc;

	if (!j || j->ended)
		return;
	j->ended = true;
	if (j->events) {
		json_t *f = json_pack("{s:b, s:s}", "ok", ok, "message", message);

		emit(j, "end", f);
		json_decref(f);
	}
	if (!j->document)
		return;
	doc = json_pack("{s:i, s:s, s:s, s:s, s:b, s:b, s:s, s:o, s:O}", "schema", SAVE_JSON_SCHEMA,
			"tool", j->tool, "domain", j->dom, "destination", j->dest, "live", j->live,
			"ok", ok, "message", message, "summary",
			ok && j->summary ? json_incref(j->summary) : json_null(), "rounds", j->rounds);
	json_dumpf(doc, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
	putchar('\n');
	fflush(stdout);
	json_decref(doc);
}
