/* maps.h — every map of the balancer program. Sizes here are defaults; the agent sets
 * the real ones before load (bpf_map__set_max_entries): the ring holds
 * max_vips * ring_size slots, vip_stats max_vips entries. */
#ifndef FULCRUM_MAPS_H
#define FULCRUM_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "structs.h"
#include "reasons.h"
#include "counters.h"

#define DEFAULT_MAX_VIPS 512
#define DEFAULT_RING_SIZE 65537
#define DEFAULT_MAX_BACKENDS 4096
#define DEFAULT_CONN_ENTRIES (1u << 20)

/* VIPs by (address, port, protocol); port 0 = all ports. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct vip4_key);
	__type(value, struct vip_meta);
	__uint(max_entries, DEFAULT_MAX_VIPS * 4);
} vips_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct vip6_key);
	__type(value, struct vip_meta);
	__uint(max_entries, DEFAULT_MAX_VIPS * 4);
} vips_v6 SEC(".maps");

/* vip_state[vip_id]: the VIP's flags and gen, for connection-table hits that skip the
 * VIP lookup. Zero when the id is free. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct vip_meta);
	__uint(max_entries, DEFAULT_MAX_VIPS);
} vip_state SEC(".maps");

/* VIP address tables (cuckoo, two choices); slots = 1 << addr_slot_bits. */
#define DEFAULT_ADDR_SLOTS 2048

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct vip_addr4);
	__uint(max_entries, DEFAULT_ADDR_SLOTS);
} vip_addrs_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct vip_addr6);
	__uint(max_entries, DEFAULT_ADDR_SLOTS);
} vip_addrs_v6 SEC(".maps");

/* Maglev rings, one after another: slot i of VIP v is ring slot v * ring_size + i,
 * stored in element (slot / RING_CHUNK) at (slot % RING_CHUNK). Mmapable, so the agent
 * writes rings as memory instead of a syscall per slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ring_chunk);
	__uint(max_entries, DEFAULT_MAX_VIPS * DEFAULT_RING_SIZE / RING_CHUNK + 1);
	__uint(map_flags, BPF_F_MMAPABLE);
} ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct backend);
	__uint(max_entries, DEFAULT_MAX_BACKENDS);
} backends SEC(".maps");

/* Connection tables. BPF_F_NO_COMMON_LRU gives every CPU its own LRU list, so
 * inserts on one CPU never contend with another's (RSS keeps a flow on one CPU). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flow4_key);
	__type(value, struct conn_value);
	__uint(max_entries, DEFAULT_CONN_ENTRIES);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
} conn_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flow6_key);
	__type(value, struct conn_value);
	__uint(max_entries, DEFAULT_CONN_ENTRIES);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
} conn_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(max_entries, DEFAULT_MAX_VIPS);
} vip_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(max_entries, DEFAULT_MAX_BACKENDS);
} backend_stats SEC(".maps");

#endif
