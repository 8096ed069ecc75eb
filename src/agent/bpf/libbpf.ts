// The raw libbpf binding: libbpf.so.1 loaded with koffi, the C structs its option
// arguments use, the functions Fulcrum calls, libbpf's log captured into a ring, and
// errno-to-words helpers. Everything above this file (object.ts, map.ts, test-run.ts,
// attach.ts) speaks in FulcrumErrors and Buffers; only this file knows koffi syntax.
//
// Conventions of libbpf 1.x that callers rely on: functions returning int give a
// negative errno on failure; functions returning a pointer give null and set errno,
// which koffi.errno() reads back on the same thread right after the call.

import koffi from 'koffi';
import { isMainThread } from 'node:worker_threads';
import { FulcrumError, type ErrorCode } from '../../shared/errors.ts';
import { vsnprintf } from './libc.ts';

const lib = (() => {
  try {
    return koffi.load('libbpf.so.1');
  } catch (cause) {
    throw new FulcrumError('ERR_LIBBPF',
      'cannot load libbpf.so.1: install the libbpf1 package (Debian/Ubuntu: apt-get install libbpf1)', { cause });
  }
})();

// ---------------------------------------------------------------------------------
// Types

/** An opaque C pointer (bpf_object *, bpf_map *, bpf_program *) as koffi hands it out. */
export type Pointer = bigint;

koffi.opaque('bpf_object');
koffi.opaque('bpf_map');
koffi.opaque('bpf_program');

/**
 * libbpf's option structs, laid out exactly as in /usr/include/bpf/{bpf,libbpf}.h of
 * libbpf 1.1 and the UAPI info structs of linux/bpf.h. `sz` must always be the struct's
 * size: libbpf uses it for forward/backward compatibility. test/bpf/abi.test.ts pins
 * these to the installed headers. Members whose name starts with '_' stand for unions
 * or bit-fields that Fulcrum never reads; they only keep the layout right.
 */
export const LIBBPF_STRUCTS = {
  bpf_test_run_opts: koffi.struct('bpf_test_run_opts', {
    sz: 'size_t',
    data_in: 'void *',
    data_out: 'void *',
    data_size_in: 'uint32_t',
    data_size_out: 'uint32_t',
    ctx_in: 'void *',
    ctx_out: 'void *',
    ctx_size_in: 'uint32_t',
    ctx_size_out: 'uint32_t',
    retval: 'uint32_t',
    repeat: 'int',
    duration: 'uint32_t',
    flags: 'uint32_t',
    cpu: 'uint32_t',
    batch_size: 'uint32_t',
  }),
  bpf_map_create_opts: koffi.struct('bpf_map_create_opts', {
    sz: 'size_t',
    btf_fd: 'uint32_t',
    btf_key_type_id: 'uint32_t',
    btf_value_type_id: 'uint32_t',
    btf_vmlinux_value_type_id: 'uint32_t',
    inner_map_fd: 'uint32_t',
    map_flags: 'uint32_t',
    map_extra: 'uint64_t',
    numa_node: 'uint32_t',
    map_ifindex: 'uint32_t',
  }),
  bpf_map_batch_opts: koffi.struct('bpf_map_batch_opts', {
    sz: 'size_t',
    elem_flags: 'uint64_t',
    flags: 'uint64_t',
  }),
  bpf_xdp_attach_opts: koffi.struct('bpf_xdp_attach_opts', {
    sz: 'size_t',
    old_prog_fd: 'int',
  }),
  bpf_xdp_query_opts: koffi.struct('bpf_xdp_query_opts', {
    sz: 'size_t',
    prog_id: 'uint32_t',
    drv_prog_id: 'uint32_t',
    hw_prog_id: 'uint32_t',
    skb_prog_id: 'uint32_t',
    attach_mode: 'uint8_t',
  }),
  bpf_tc_hook: koffi.struct('bpf_tc_hook', {
    sz: 'size_t',
    ifindex: 'int',
    attach_point: 'int',
    parent: 'uint32_t',
  }),
  bpf_tc_opts: koffi.struct('bpf_tc_opts', {
    sz: 'size_t',
    prog_fd: 'int',
    flags: 'uint32_t',
    prog_id: 'uint32_t',
    handle: 'uint32_t',
    priority: 'uint32_t',
  }),
  bpf_link_create_opts: koffi.struct('bpf_link_create_opts', {
    sz: 'size_t',
    flags: 'uint32_t',
    iter_info: 'void *',
    iter_info_len: 'uint32_t',
    target_btf_id: 'uint32_t',
    // union { perf_event; kprobe_multi; tracing; }: kprobe_multi is the largest.
    _union: koffi.struct({
      flags: 'uint32_t',
      cnt: 'uint32_t',
      syms: 'void *',
      addrs: 'void *',
      cookies: 'void *',
    }),
  }),
  // bpf/bpf.h (libbpf 1.1): size_t sz, __u32 file_flags, padded to 16 bytes on 64-bit.
  bpf_obj_get_opts: koffi.struct('bpf_obj_get_opts', {
    sz: 'size_t',
    file_flags: 'uint32_t',
  }),
  bpf_link_update_opts: koffi.struct('bpf_link_update_opts', {
    sz: 'size_t',
    flags: 'uint32_t',
    old_prog_fd: 'uint32_t',
  }),
  bpf_map_info: koffi.struct('bpf_map_info', {
    type: 'uint32_t',
    id: 'uint32_t',
    key_size: 'uint32_t',
    value_size: 'uint32_t',
    max_entries: 'uint32_t',
    map_flags: 'uint32_t',
    name: koffi.array('char', 16, 'String'),
    ifindex: 'uint32_t',
    btf_vmlinux_value_type_id: 'uint32_t',
    netns_dev: 'uint64_t',
    netns_ino: 'uint64_t',
    btf_id: 'uint32_t',
    btf_key_type_id: 'uint32_t',
    btf_value_type_id: 'uint32_t',
    _pad: 'uint32_t',
    map_extra: 'uint64_t',
  }),
  bpf_prog_info: koffi.struct('bpf_prog_info', {
    type: 'uint32_t',
    id: 'uint32_t',
    tag: koffi.array('uint8_t', 8),
    jited_prog_len: 'uint32_t',
    xlated_prog_len: 'uint32_t',
    jited_prog_insns: 'uint64_t',
    xlated_prog_insns: 'uint64_t',
    load_time: 'uint64_t',
    created_by_uid: 'uint32_t',
    nr_map_ids: 'uint32_t',
    map_ids: 'uint64_t',
    name: koffi.array('char', 16, 'String'),
    ifindex: 'uint32_t',
    _gpl_compatible: 'uint32_t', // gpl_compatible:1, then 31 bits of padding
    netns_dev: 'uint64_t',
    netns_ino: 'uint64_t',
    nr_jited_ksyms: 'uint32_t',
    nr_jited_func_lens: 'uint32_t',
    jited_ksyms: 'uint64_t',
    jited_func_lens: 'uint64_t',
    btf_id: 'uint32_t',
    func_info_rec_size: 'uint32_t',
    func_info: 'uint64_t',
    nr_func_info: 'uint32_t',
    nr_line_info: 'uint32_t',
    line_info: 'uint64_t',
    jited_line_info: 'uint64_t',
    nr_jited_line_info: 'uint32_t',
    line_info_rec_size: 'uint32_t',
    jited_line_info_rec_size: 'uint32_t',
    nr_prog_tags: 'uint32_t',
    prog_tags: 'uint64_t',
    run_time_ns: 'uint64_t',
    run_cnt: 'uint64_t',
    recursion_misses: 'uint64_t',
    verified_insns: 'uint32_t',
    attach_btf_obj_id: 'uint32_t',
    attach_btf_id: 'uint32_t',
    _pad: 'uint32_t',
  }),
  bpf_link_info: koffi.struct('bpf_link_info', {
    type: 'uint32_t',
    id: 'uint32_t',
    prog_id: 'uint32_t',
    // union { raw_tracepoint; tracing; cgroup; iter; netns; xdp; ... }, 8-aligned.
    // For an XDP link the union's first u32 is xdp.ifindex.
    _union: [8, koffi.array('uint32_t', 8)],
  }),
} as const;

/** The JS shapes koffi converts the option structs from and to. */
export interface XdpAttachOpts { sz: number; old_prog_fd: number }
export interface XdpQueryOpts {
  sz: number; prog_id: number; drv_prog_id: number; hw_prog_id: number; skb_prog_id: number; attach_mode: number;
}
export interface TcHook { sz: number; ifindex: number; attach_point: number; parent: number }
export interface TcOpts { sz: number; prog_fd: number; flags: number; prog_id: number; handle: number; priority: number }
export interface LinkCreateOpts {
  sz: number; flags: number; iter_info: null; iter_info_len: number; target_btf_id: number;
  _union: { flags: number; cnt: number; syms: null; addrs: null; cookies: null };
}
export interface LinkUpdateOpts { sz: number; flags: number; old_prog_fd: number }
export interface MapCreateOpts {
  sz: number; btf_fd: number; btf_key_type_id: number; btf_value_type_id: number; btf_vmlinux_value_type_id: number;
  inner_map_fd: number; map_flags: number; map_extra: number; numa_node: number; map_ifindex: number;
}
export interface MapBatchOpts { sz: number; elem_flags: number; flags: number }
export interface ObjGetOpts { sz: number; file_flags: number }

/** `sz` of each option struct, for the JS objects above. */
export const SIZEOF = Object.fromEntries(
  Object.entries(LIBBPF_STRUCTS).map(([name, type]) => [name, koffi.sizeof(type)]),
) as Record<keyof typeof LIBBPF_STRUCTS, number>;

// ---------------------------------------------------------------------------------
// Constants (linux/bpf.h, linux/if_link.h, bpf/libbpf.h)

export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;
export const BPF_F_LOCK = 4;

/** enum bpf_attach_type BPF_XDP. */
export const BPF_XDP = 37;
/** Link update: only replace if the current program is old_prog_fd. */
export const BPF_F_REPLACE = 1 << 2;

export const XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0;
export const XDP_FLAGS_SKB_MODE = 1 << 1;
export const XDP_FLAGS_DRV_MODE = 1 << 2;
export const XDP_FLAGS_HW_MODE = 1 << 3;
export const XDP_FLAGS_REPLACE = 1 << 4;

/** IFLA_XDP_ATTACHED values reported by bpf_xdp_query. */
export const XDP_ATTACHED_NONE = 0;
export const XDP_ATTACHED_DRV = 1;
export const XDP_ATTACHED_SKB = 2;
export const XDP_ATTACHED_HW = 3;
export const XDP_ATTACHED_MULTI = 4;

export const BPF_TC_INGRESS = 1 << 0;
export const BPF_TC_EGRESS = 1 << 1;
export const BPF_TC_F_REPLACE = 1 << 0;

// ---------------------------------------------------------------------------------
// Functions

type Buf = Uint8Array;

function declare<T>(prototype: string): T {
  return lib.func(prototype) as unknown as T;
}

export const libbpf = {
  libbpf_num_possible_cpus: declare<() => number>('int libbpf_num_possible_cpus(void)'),
  libbpf_strerror: declare<(err: number, buf: Buf, size: number) => number>(
    'int libbpf_strerror(int err, void *buf, size_t size)'),

  bpf_object__open_file: declare<(path: string, opts: null) => Pointer | null>(
    'bpf_object *bpf_object__open_file(const char *path, void *opts)'),
  bpf_object__load: declare<(obj: Pointer) => number>('int bpf_object__load(bpf_object *obj)'),
  bpf_object__close: declare<(obj: Pointer) => void>('void bpf_object__close(bpf_object *obj)'),
  bpf_object__name: declare<(obj: Pointer) => string>('const char *bpf_object__name(bpf_object *obj)'),
  bpf_object__find_map_by_name: declare<(obj: Pointer, name: string) => Pointer | null>(
    'bpf_map *bpf_object__find_map_by_name(bpf_object *obj, const char *name)'),
  bpf_object__next_map: declare<(obj: Pointer, prev: Pointer | null) => Pointer | null>(
    'bpf_map *bpf_object__next_map(bpf_object *obj, bpf_map *prev)'),
  bpf_object__find_program_by_name: declare<(obj: Pointer, name: string) => Pointer | null>(
    'bpf_program *bpf_object__find_program_by_name(bpf_object *obj, const char *name)'),
  bpf_object__next_program: declare<(obj: Pointer, prev: Pointer | null) => Pointer | null>(
    'bpf_program *bpf_object__next_program(bpf_object *obj, bpf_program *prev)'),

  bpf_map__name: declare<(map: Pointer) => string>('const char *bpf_map__name(bpf_map *map)'),
  bpf_map__type: declare<(map: Pointer) => number>('int bpf_map__type(bpf_map *map)'),
  bpf_map__key_size: declare<(map: Pointer) => number>('uint32_t bpf_map__key_size(bpf_map *map)'),
  bpf_map__value_size: declare<(map: Pointer) => number>('uint32_t bpf_map__value_size(bpf_map *map)'),
  bpf_map__max_entries: declare<(map: Pointer) => number>('uint32_t bpf_map__max_entries(bpf_map *map)'),
  bpf_map__map_flags: declare<(map: Pointer) => number>('uint32_t bpf_map__map_flags(bpf_map *map)'),
  bpf_map__set_max_entries: declare<(map: Pointer, maxEntries: number) => number>(
    'int bpf_map__set_max_entries(bpf_map *map, uint32_t max_entries)'),
  bpf_map__set_initial_value: declare<(map: Pointer, data: Buf, size: number) => number>(
    'int bpf_map__set_initial_value(bpf_map *map, const void *data, size_t size)'),
  bpf_map__set_pin_path: declare<(map: Pointer, path: string | null) => number>(
    'int bpf_map__set_pin_path(bpf_map *map, const char *path)'),
  bpf_map__pin_path: declare<(map: Pointer) => string | null>('const char *bpf_map__pin_path(bpf_map *map)'),
  bpf_map__is_pinned: declare<(map: Pointer) => boolean>('bool bpf_map__is_pinned(bpf_map *map)'),
  bpf_map__reuse_fd: declare<(map: Pointer, fd: number) => number>('int bpf_map__reuse_fd(bpf_map *map, int fd)'),
  bpf_map__fd: declare<(map: Pointer) => number>('int bpf_map__fd(bpf_map *map)'),

  bpf_program__name: declare<(prog: Pointer) => string>('const char *bpf_program__name(bpf_program *prog)'),
  bpf_program__section_name: declare<(prog: Pointer) => string>(
    'const char *bpf_program__section_name(bpf_program *prog)'),
  bpf_program__type: declare<(prog: Pointer) => number>('int bpf_program__type(bpf_program *prog)'),
  bpf_program__fd: declare<(prog: Pointer) => number>('int bpf_program__fd(bpf_program *prog)'),

  bpf_map_create: declare<(type: number, name: string | null, keySize: number, valueSize: number,
    maxEntries: number, opts: MapCreateOpts | null) => number>(
    'int bpf_map_create(int type, const char *name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, const bpf_map_create_opts *opts)'),
  bpf_map_lookup_elem: declare<(fd: number, key: Buf | null, value: Buf) => number>(
    'int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
  bpf_map_update_elem: declare<(fd: number, key: Buf | null, value: Buf, flags: number) => number>(
    'int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
  bpf_map_delete_elem: declare<(fd: number, key: Buf) => number>(
    'int bpf_map_delete_elem(int fd, const void *key)'),
  bpf_map_get_next_key: declare<(fd: number, key: Buf | null, nextKey: Buf) => number>(
    'int bpf_map_get_next_key(int fd, const void *key, void *next_key)'),
  bpf_map_update_batch: declare<(fd: number, keys: Buf, values: Buf, count: [number], opts: MapBatchOpts | null) => number>(
    'int bpf_map_update_batch(int fd, const void *keys, const void *values, _Inout_ uint32_t *count, const bpf_map_batch_opts *opts)'),
  bpf_map_lookup_batch: declare<(fd: number, inBatch: Buf | null, outBatch: Buf, keys: Buf, values: Buf, count: [number],
    opts: MapBatchOpts | null) => number>(
    'int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, _Inout_ uint32_t *count, const bpf_map_batch_opts *opts)'),

  bpf_obj_pin: declare<(fd: number, path: string) => number>('int bpf_obj_pin(int fd, const char *path)'),
  bpf_obj_get: declare<(path: string) => number>('int bpf_obj_get(const char *path)'),
  bpf_obj_get_opts: declare<(path: string, opts: ObjGetOpts) => number>(
    'int bpf_obj_get_opts(const char *pathname, const bpf_obj_get_opts *opts)'),
  bpf_obj_get_info_by_fd: declare<(fd: number, info: Buf, infoLen: [number]) => number>(
    'int bpf_obj_get_info_by_fd(int fd, void *info, _Inout_ uint32_t *info_len)'),
  bpf_prog_get_fd_by_id: declare<(id: number) => number>('int bpf_prog_get_fd_by_id(uint32_t id)'),

  bpf_prog_test_run_opts: declare<(progFd: number, opts: Pointer) => number>(
    'int bpf_prog_test_run_opts(int prog_fd, void *opts)'),

  bpf_xdp_attach: declare<(ifindex: number, progFd: number, flags: number, opts: XdpAttachOpts | null) => number>(
    'int bpf_xdp_attach(int ifindex, int prog_fd, uint32_t flags, const bpf_xdp_attach_opts *opts)'),
  bpf_xdp_detach: declare<(ifindex: number, flags: number, opts: XdpAttachOpts | null) => number>(
    'int bpf_xdp_detach(int ifindex, uint32_t flags, const bpf_xdp_attach_opts *opts)'),
  bpf_xdp_query: declare<(ifindex: number, flags: number, opts: XdpQueryOpts) => number>(
    'int bpf_xdp_query(int ifindex, int flags, _Inout_ bpf_xdp_query_opts *opts)'),

  bpf_link_create: declare<(progFd: number, targetFd: number, attachType: number, opts: LinkCreateOpts | null) => number>(
    'int bpf_link_create(int prog_fd, int target_fd, int attach_type, const bpf_link_create_opts *opts)'),
  bpf_link_update: declare<(linkFd: number, newProgFd: number, opts: LinkUpdateOpts | null) => number>(
    'int bpf_link_update(int link_fd, int new_prog_fd, const bpf_link_update_opts *opts)'),
  bpf_link_detach: declare<(linkFd: number) => number>('int bpf_link_detach(int link_fd)'),

  bpf_tc_hook_create: declare<(hook: TcHook) => number>('int bpf_tc_hook_create(bpf_tc_hook *hook)'),
  bpf_tc_hook_destroy: declare<(hook: TcHook) => number>('int bpf_tc_hook_destroy(bpf_tc_hook *hook)'),
  bpf_tc_attach: declare<(hook: TcHook, opts: TcOpts) => number>(
    'int bpf_tc_attach(const bpf_tc_hook *hook, _Inout_ bpf_tc_opts *opts)'),
  bpf_tc_detach: declare<(hook: TcHook, opts: TcOpts) => number>(
    'int bpf_tc_detach(const bpf_tc_hook *hook, const bpf_tc_opts *opts)'),
  bpf_tc_query: declare<(hook: TcHook, opts: TcOpts) => number>(
    'int bpf_tc_query(const bpf_tc_hook *hook, _Inout_ bpf_tc_opts *opts)'),
} as const;

let possibleCpus: number | undefined;

/** libbpf_num_possible_cpus(), cached: the per-CPU value stride multiplier. */
export function numPossibleCpus(): number {
  if (possibleCpus === undefined) {
    const n = libbpf.libbpf_num_possible_cpus();
    if (n <= 0) {
      throw bpfFailure('ERR_LIBBPF', 'cannot count the possible CPUs (/sys/devices/system/cpu/possible)', n);
    }
    possibleCpus = n;
  }
  return possibleCpus;
}

// ---------------------------------------------------------------------------------
// libbpf's log: captured into a ring so errors can quote it

export type LibbpfLogLevel = 'warn' | 'info' | 'debug';
const LEVEL_NAMES: readonly LibbpfLogLevel[] = ['warn', 'info', 'debug']; // enum libbpf_print_level order
const LEVEL_RANK: Readonly<Record<LibbpfLogLevel, number>> = { warn: 0, info: 1, debug: 2 };

export interface LibbpfMessage {
  /** Monotonic sequence number: take libbpfLogMark() before a call, read what it logged after. */
  readonly seq: number;
  readonly level: LibbpfLogLevel;
  readonly text: string;
}

export type LibbpfLogSink = (message: LibbpfMessage) => void;

const RING_CAPACITY = 512;
// A verifier log can reach 16 MiB. The end of it (where the verifier gave up) matters,
// so an oversized message keeps its first line(s) and its last MAX_MESSAGE bytes.
const MAX_MESSAGE = 1 << 20;
const KEEP_HEAD = 4096;

const ring: LibbpfMessage[] = [];
let nextSeq = 1;

function envLevel(): LibbpfLogLevel | 'silent' {
  const value = process.env['FULCRUM_LIBBPF_LOG'];
  return value === 'silent' || value === 'info' || value === 'debug' ? value : 'warn';
}

/** The default sink: warnings to stderr; info and debug only if FULCRUM_LIBBPF_LOG asks. */
function stderrSink(message: LibbpfMessage): void {
  const threshold = envLevel();
  if (threshold === 'silent' || LEVEL_RANK[message.level] > LEVEL_RANK[threshold]) return;
  process.stderr.write(message.text.endsWith('\n') ? message.text : `${message.text}\n`);
}

let sink: LibbpfLogSink = stderrSink;

/** Route libbpf's messages (the agent passes its logger); null restores the stderr default. */
export function setLibbpfLogSink(next: LibbpfLogSink | null): void {
  sink = next ?? stderrSink;
}

/** The sequence number the next message will get. */
export function libbpfLogMark(): number {
  return nextSeq;
}

/** Messages captured since `mark` (still in the ring), at `maxLevel` or more severe. */
export function libbpfLogSince(mark: number, maxLevel: LibbpfLogLevel = 'debug'): LibbpfMessage[] {
  const rank = LEVEL_RANK[maxLevel];
  return ring.filter((m) => m.seq >= mark && LEVEL_RANK[m.level] <= rank);
}

function record(level: number, text: string): void {
  if (text.length > MAX_MESSAGE) {
    const elided = text.length - KEEP_HEAD - MAX_MESSAGE;
    text = `${text.slice(0, KEEP_HEAD)}\n[... ${elided} bytes elided ...]\n${text.slice(-MAX_MESSAGE)}`;
  }
  const message: LibbpfMessage = { seq: nextSeq++, level: LEVEL_NAMES[level] ?? 'debug', text };
  ring.push(message);
  if (ring.length > RING_CAPACITY) ring.splice(0, ring.length - RING_CAPACITY);
  try {
    sink(message);
  } catch {
    // A failing sink must not break the libbpf call that is logging.
  }
}

// The print callback gets a va_list. On x86-64 and arm64 it arrives as a pointer to
// the va_list object (24 and 32 bytes), and vsnprintf takes it the same way. Formatting
// consumes the va_list, so the first attempt formats from a copy (what va_copy does on
// these ABIs) and, if the message did not fit, the second formats from the original.
const VA_LIST_SIZE = process.arch === 'x64' ? 24 : process.arch === 'arm64' ? 32 : 0;
const SCRATCH_SIZE = 64 * 1024;
// Native memory (not a JS-heap Buffer) so the addresses never move.
const scratchPtr: Pointer = koffi.alloc('uint8_t', SCRATCH_SIZE + 64) as Pointer;
const scratch = Buffer.from(koffi.view(scratchPtr, SCRATCH_SIZE));
const vaCopy = Buffer.from(koffi.view(scratchPtr + BigInt(SCRATCH_SIZE), 64));

function formatMessage(fmt: bigint, ap: bigint): string {
  if (VA_LIST_SIZE === 0) {
    // Unknown va_list ABI: one pass, truncated to the scratch buffer.
    const n = vsnprintf(scratch, SCRATCH_SIZE, fmt, ap);
    return n < 0 ? '' : scratch.toString('utf8', 0, Math.min(n, SCRATCH_SIZE - 1));
  }
  vaCopy.set(new Uint8Array(koffi.view(ap, VA_LIST_SIZE)));
  const n = vsnprintf(scratch, SCRATCH_SIZE, fmt, vaCopy);
  if (n < 0) return '';
  if (n < SCRATCH_SIZE) return scratch.toString('utf8', 0, n);
  const big = Buffer.alloc(n + 1);
  const m = vsnprintf(big, n + 1, fmt, ap);
  return big.toString('utf8', 0, Math.max(0, Math.min(m, n)));
}

function onLibbpfPrint(level: number, fmt: bigint, ap: bigint): number {
  try {
    record(level, formatMessage(fmt, ap));
  } catch {
    // Never let an exception unwind into libbpf.
  }
  return 0;
}

// libbpf's print hook is process-wide. Only the main thread installs it: a worker's
// callback would dangle once that worker exits. libbpf calls made on worker threads
// (see netns.ts) reach this callback through koffi, which runs it on the main thread
// while the worker waits; the main thread is free then, because it awaits the worker.
if (isMainThread) {
  const printFn = koffi.proto('int libbpf_print_fn(int level, void *fmt, void *ap)');
  const setPrint = lib.func('void *libbpf_set_print(libbpf_print_fn *fn)') as (fn: bigint) => bigint | null;
  setPrint(koffi.register(onLibbpfPrint, koffi.pointer(printFn)));
}

// ---------------------------------------------------------------------------------
// errno in words

/** The kernel's ENOTSUPP (524): not in libc's table, but BPF map and attach calls return it. */
export const ENOTSUPP = 524;

const ERRNO_NAMES = (() => {
  const names = new Map<number, string>();
  // Aliases: keep the name the kernel sources use.
  const preferred = new Set(['EAGAIN', 'EOPNOTSUPP', 'EDEADLK']);
  for (const [name, value] of Object.entries(koffi.os.errno)) {
    if (!names.has(value) || preferred.has(name)) names.set(value, name);
  }
  names.set(ENOTSUPP, 'ENOTSUPP');
  const libbpfErrnos = ['LIBELF', 'FORMAT', 'KVERSION', 'ENDIAN', 'INTERNAL', 'RELOC', 'LOAD', 'VERIFY',
    'PROG2BIG', 'KVER', 'PROGTYPE', 'WRNGPID', 'INVSEQ', 'NLPARSE'];
  libbpfErrnos.forEach((name, i) => names.set(4000 + i, `LIBBPF_ERRNO__${name}`));
  return names;
})();

/** errno value (sign ignored) → 'ENOENT', 'EPERM', ...; unknown ones as 'errno 1234'. */
export function errnoName(err: number): string {
  const e = Math.abs(err);
  return ERRNO_NAMES.get(e) ?? `errno ${e}`;
}

/** A value of koffi.os.errno by name, e.g. errno('ENOENT'). */
export function errno(name: string): number {
  const value = (koffi.os.errno as Record<string, number>)[name];
  if (value === undefined) throw new FulcrumError('ERR_INTERNAL', `unknown errno name ${name}`);
  return value;
}

const strerrorBuf = Buffer.alloc(256);

/** libbpf_strerror(): the text for system errnos and libbpf's own (4000+). */
export function errnoMessage(err: number): string {
  const e = Math.abs(err);
  if (e === ENOTSUPP) return 'Operation not supported by the kernel for this object';
  if (libbpf.libbpf_strerror(e, strerrorBuf, strerrorBuf.length) < 0) return 'Unknown error';
  const end = strerrorBuf.indexOf(0);
  return strerrorBuf.toString('utf8', 0, end < 0 ? strerrorBuf.length : end);
}

export interface FailureContext {
  /** What probably caused it, in words an operator can act on. */
  hint?: string | undefined;
  details?: Record<string, unknown>;
  /** Quote libbpf's warnings logged since this mark (libbpfLogMark()). */
  logSince?: number;
  cause?: unknown;
}

/** The libbpf warnings logged since `mark`, one line each, "libbpf: " prefixes removed. */
export function libbpfWarningsSince(mark: number, maxLines = 20): string[] {
  const lines = libbpfLogSince(mark, 'warn')
    .flatMap((m) => m.text.split('\n'))
    .map((line) => line.replace(/^libbpf: /, '').trimEnd())
    .filter((line) => line.length > 0);
  return lines.length > maxLines ? [`[${lines.length - maxLines} earlier lines omitted]`, ...lines.slice(-maxLines)] : lines;
}

/**
 * A FulcrumError for a failed libbpf / bpf() call: "<what>: ENOENT (No such file or
 * directory): <hint>", then libbpf's own warnings when logSince is given.
 */
export function bpfFailure(code: ErrorCode, what: string, err: number, context: FailureContext = {}): FulcrumError {
  const e = Math.abs(err);
  const name = errnoName(e);
  let message = `${what}: ${name} (${errnoMessage(e)})`;
  if (context.hint) message += `: ${context.hint}`;
  const warnings = context.logSince === undefined ? [] : libbpfWarningsSince(context.logSince);
  if (warnings.length > 0) message += `\nlibbpf said:\n  ${warnings.join('\n  ')}`;
  return new FulcrumError(code, message, {
    cause: context.cause,
    details: { errno: e, errnoName: name, ...context.details, ...(warnings.length > 0 ? { libbpfLog: warnings } : {}) },
  });
}
