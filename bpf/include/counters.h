/* counters.h — the counters both programs keep: one per-CPU {packets, bytes} per
 * reason (reasons.h, one enum for balancer and decap) and per global event, and the
 * one way to bump them. Each program has its own instances of these maps. */
#ifndef FULCRUM_COUNTERS_H
#define FULCRUM_COUNTERS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "structs.h"
#include "reasons.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(max_entries, REASON_COUNT);
} reason_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(max_entries, GSTAT_COUNT);
} global_stats SEC(".maps");

static __always_inline void count(void *map, __u32 index, __u64 bytes)
{
	struct counter *c = bpf_map_lookup_elem(map, &index);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

#endif
