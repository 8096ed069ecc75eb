/* decap_maps.h — maps of the backend decap program: which outer destinations it
 * decapsulates for, which inner destinations (VIPs) it accepts, and its counters. */
#ifndef FULCRUM_DECAP_MAPS_H
#define FULCRUM_DECAP_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "structs.h"
#include "reasons.h"
#include "counters.h"

#define DEFAULT_DECAP_ADDRS 64
#define DEFAULT_DECAP_VIPS 1024

/* Local addresses whose tunnelled packets are decapsulated (the pod's own). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct addr_key);
	__type(value, __u32);
	__uint(max_entries, DEFAULT_DECAP_ADDRS);
} decap_addrs SEC(".maps");

/* Inner destinations accepted: the VIPs this backend serves. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct addr_key);
	__type(value, __u32);
	__uint(max_entries, DEFAULT_DECAP_VIPS);
} decap_vips SEC(".maps");

#endif
