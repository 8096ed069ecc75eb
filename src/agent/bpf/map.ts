// BpfMap: one BPF map behind its fd, with its key and value sizes, so that every
// operation can check the caller's buffers before the kernel reads them (the raw
// syscall trusts the pointer and would read past a short buffer). Keys and values are
// raw bytes; abi.ts turns them into objects.

import { endianness } from 'node:os';
import koffi from 'koffi';
import {
  BPF_ANY, BPF_EXIST, BPF_NOEXIST, ENOTSUPP, LIBBPF_STRUCTS, SIZEOF,
  bpfFailure, errno, errnoName, libbpf, numPossibleCpus,
} from './libbpf.ts';
import { closeQuietly, openPinnedFd, pinFd, unpin } from './pin.ts';
import { sumCounters, ABI_SIZES, type Counter } from './abi.ts';
import { FulcrumError } from '../../shared/errors.ts';

export { BPF_ANY, BPF_EXIST, BPF_NOEXIST };

/** enum bpf_map_type (linux/bpf.h), the types Fulcrum and its tests use. */
export const BPF_MAP_TYPE = {
  HASH: 1,
  ARRAY: 2,
  PROG_ARRAY: 3,
  PERF_EVENT_ARRAY: 4,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
  LPM_TRIE: 11,
  ARRAY_OF_MAPS: 12,
  HASH_OF_MAPS: 13,
  DEVMAP: 14,
  CPUMAP: 16,
  XSKMAP: 17,
  DEVMAP_HASH: 25,
  RINGBUF: 27,
} as const;

export type MapTypeName = keyof typeof BPF_MAP_TYPE;

/** Map creation flags (linux/bpf.h). */
export const BPF_F_NO_PREALLOC = 1 << 0;
export const BPF_F_NO_COMMON_LRU = 1 << 1;
export const BPF_F_RDONLY_PROG = 1 << 7;

const PERCPU_TYPES: ReadonlySet<number> = new Set([
  BPF_MAP_TYPE.PERCPU_HASH, BPF_MAP_TYPE.PERCPU_ARRAY, BPF_MAP_TYPE.LRU_PERCPU_HASH,
  21, // PERCPU_CGROUP_STORAGE
]);
const ARRAY_TYPES: ReadonlySet<number> = new Set([BPF_MAP_TYPE.ARRAY, BPF_MAP_TYPE.PERCPU_ARRAY]);

const LITTLE = endianness() === 'LE';
const ENOENT = errno('ENOENT');
const EINVAL = errno('EINVAL');
const EOPNOTSUPP = errno('EOPNOTSUPP');

/** Array-map keys are host-order u32 indexes. */
function writeHostU32(buf: Buffer, value: number): void {
  if (LITTLE) buf.writeUInt32LE(value, 0);
  else buf.writeUInt32BE(value, 0);
}

/** 'lru_hash' for 9; 'type 30' for types not listed above. */
export function mapTypeName(type: number): string {
  const entry = Object.entries(BPF_MAP_TYPE).find(([, value]) => value === type);
  return entry ? entry[0].toLowerCase() : `type ${type}`;
}

export interface MapInfo {
  id: number;
  type: number;
  name: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

/** bpf_obj_get_info_by_fd() on a map fd. */
export function mapInfo(fd: number): MapInfo {
  const buf = Buffer.alloc(SIZEOF.bpf_map_info);
  const len: [number] = [buf.length];
  const ret = libbpf.bpf_obj_get_info_by_fd(fd, buf, len);
  if (ret < 0) {
    throw bpfFailure('ERR_BPF_MAP', `cannot read the info of map fd ${fd}`, ret,
      { hint: 'the fd is not an open BPF map' });
  }
  const info = koffi.decode(buf, LIBBPF_STRUCTS.bpf_map_info) as {
    id: number; type: number; name: string; key_size: number; value_size: number; max_entries: number; map_flags: number;
  };
  return {
    id: info.id, type: info.type, name: info.name, keySize: info.key_size, valueSize: info.value_size,
    maxEntries: info.max_entries, flags: info.map_flags,
  };
}

export interface FromFdOptions {
  /** Close the fd with the map (true for fds this process opened for itself). Default true. */
  owned?: boolean;
  /** The name to use in errors (the kernel keeps only 15 characters). */
  name?: string;
}

export class BpfMap {
  readonly fd: number;
  readonly id: number;
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  /** Per-CPU map: values are read and written as one slot per possible CPU. */
  readonly perCpu: boolean;
  /** Bytes between CPUs in a per-CPU value buffer: value_size rounded up to 8. */
  readonly perCpuStride: number;

  #owned: boolean;
  #closed = false;
  #batchUnsupported = false;
  #pinnedAt: string | undefined;

  private constructor(fd: number, info: MapInfo, owned: boolean, name?: string) {
    this.fd = fd;
    this.id = info.id;
    this.name = name || info.name;
    this.type = info.type;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.flags = info.flags;
    this.perCpu = PERCPU_TYPES.has(info.type);
    this.perCpuStride = Math.ceil(info.valueSize / 8) * 8;
    this.#owned = owned;
  }

  /** Wrap a map fd. Its sizes and type come from the kernel. */
  static fromFd(fd: number, options: FromFdOptions = {}): BpfMap {
    return new BpfMap(fd, mapInfo(fd), options.owned ?? true, options.name);
  }

  /** Open the map pinned at `path` (bpf_obj_get). The returned map owns its fd. */
  static openPinned(path: string): BpfMap {
    const fd = openPinnedFd(path, 'map', 'ERR_BPF_MAP');
    try {
      const map = new BpfMap(fd, mapInfo(fd), true);
      map.#pinnedAt = path;
      return map;
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
  }

  /** 'map vips_v4 (hash)', for messages. */
  get description(): string {
    return `map ${this.name || `id ${this.id}`} (${mapTypeName(this.type)})`;
  }

  /** The value bytes for `key`, or undefined if there is none. Not for per-CPU maps. */
  lookup(key: Uint8Array): Buffer | undefined {
    const value = Buffer.alloc(this.valueSize);
    return this.lookupInto(key, value) ? value : undefined;
  }

  /** Lookup into a caller-owned buffer (no allocation); false if the key has no value. */
  lookupInto(key: Uint8Array, value: Uint8Array): boolean {
    this.#usable('lookup');
    this.#notPerCpu('lookup', 'lookupPerCpu');
    this.#checkKey(key);
    this.#checkSize('value buffer', value, this.valueSize, 'value_size');
    const ret = libbpf.bpf_map_lookup_elem(this.fd, key, value);
    if (ret === 0) return true;
    if (-ret === ENOENT) return false;
    throw this.#failure('lookup', ret, key);
  }

  /** Write `value` at `key`. flags: BPF_ANY (create or replace), BPF_NOEXIST, BPF_EXIST. */
  update(key: Uint8Array, value: Uint8Array, flags: number = BPF_ANY): void {
    this.#usable('update');
    this.#notPerCpu('update', 'updatePerCpu');
    this.#checkKey(key);
    this.#checkSize('value', value, this.valueSize, 'value_size');
    const ret = libbpf.bpf_map_update_elem(this.fd, key, value, flags);
    if (ret < 0) throw this.#failure('update', ret, key, flags);
  }

  /** Remove `key`. False if it was not there. */
  delete(key: Uint8Array): boolean {
    this.#usable('delete');
    this.#checkKey(key);
    const ret = libbpf.bpf_map_delete_elem(this.fd, key);
    if (ret === 0) return true;
    if (-ret === ENOENT) return false;
    throw this.#failure('delete', ret, key);
  }

  /**
   * Every key, by bpf_map_get_next_key. A hash map being changed meanwhile may yield a
   * key twice or miss one (the kernel restarts from the first key when the previous
   * one is gone); collect the keys first when deleting many.
   */
  *keys(): Generator<Buffer, void, undefined> {
    this.#usable('iterate');
    let previous: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.keySize);
      const ret = libbpf.bpf_map_get_next_key(this.fd, previous, next);
      if (ret === -ENOENT) return;
      if (ret < 0) throw this.#failure('iterate', ret, previous ?? undefined);
      yield next;
      previous = next;
    }
  }

  /** Every [key, value] (not for per-CPU maps). Keys deleted meanwhile are skipped. */
  *entries(): Generator<[Buffer, Buffer], void, undefined> {
    this.#notPerCpu('entries', 'keys() and lookupPerCpu');
    for (const key of this.keys()) {
      const value = this.lookup(key);
      if (value) yield [key, value];
    }
  }

  /**
   * Write many entries in one bpf_map_update_batch call (per-CPU maps: each value is
   * perCpuStride × possible CPUs bytes). Map types without batch support (or kernels
   * before 5.6) are written one entry at a time instead, with the same result.
   */
  updateBatch(keys: readonly Uint8Array[], values: readonly Uint8Array[], flags: number = BPF_ANY): void {
    this.#usable('batch update');
    if (keys.length !== values.length) {
      throw new FulcrumError('ERR_BPF_MAP',
        `${this.description}: batch update with ${keys.length} keys but ${values.length} values`);
    }
    if (keys.length === 0) return;
    const valueSize = this.#batchValueSize();
    keys.forEach((key) => this.#checkKey(key));
    values.forEach((value) => this.#checkSize('value', value, valueSize, this.#batchValueName()));
    this.#updateBatch(Buffer.concat(keys), Buffer.concat(values), keys.length, flags);
  }

  /**
   * updateBatch for keys and values already laid out back to back (count × key_size
   * and count × value size bytes): no per-entry buffers for large writes such as a
   * Maglev ring.
   */
  updateBatchContiguous(keys: Uint8Array, values: Uint8Array, count: number, flags: number = BPF_ANY): void {
    this.#usable('batch update');
    if (!Number.isInteger(count) || count < 0) {
      throw new FulcrumError('ERR_BPF_MAP', `${this.description}: batch count must be a non-negative integer, got ${count}`);
    }
    if (count === 0) return;
    this.#checkSize(`keys of ${count} entries`, keys, count * this.keySize, 'key_size × count');
    this.#checkSize(`values of ${count} entries`, values, count * this.#batchValueSize(), `${this.#batchValueName()} × count`);
    this.#updateBatch(keys, values, count, flags);
  }

  /**
   * The values of array-map entries start … start + count - 1, back to back
   * (count × value_size bytes), read with bpf_map_lookup_batch (entry by entry where
   * the kernel has no batch lookup).
   */
  lookupRangeBytes(start: number, count: number): Buffer {
    this.#usable('range lookup');
    this.#notPerCpu('lookupRangeBytes', 'lookupPerCpu');
    if (!ARRAY_TYPES.has(this.type) || this.keySize !== 4) {
      throw new FulcrumError('ERR_BPF_MAP', `${this.description}: range lookups need an array map`);
    }
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > this.maxEntries) {
      throw new FulcrumError('ERR_BPF_MAP',
        `${this.description}: range ${start} + ${count} is outside the map's ${this.maxEntries} entries`);
    }
    const values = Buffer.alloc(count * this.valueSize);
    if (count === 0) return values;
    if (!this.#batchUnsupported && this.#lookupBatch(start, count, values)) return values;
    const key = Buffer.alloc(4);
    for (let i = 0; i < count; i++) {
      writeHostU32(key, start + i);
      const value = values.subarray(i * this.valueSize, (i + 1) * this.valueSize);
      const ret = libbpf.bpf_map_lookup_elem(this.fd, key, value);
      if (ret < 0) throw this.#failure(`lookup of entry ${start + i}`, ret, key);
    }
    return values;
  }

  /** lookupRangeBytes for an array of u32 values (the Maglev ring): host-order numbers. */
  lookupRange(start: number, count: number): Uint32Array {
    if (this.valueSize !== 4) {
      throw new FulcrumError('ERR_BPF_MAP', `${this.description}: lookupRange reads u32 values, value_size is ${this.valueSize}`);
    }
    const bytes = this.lookupRangeBytes(start, count);
    const out = new Uint32Array(count); // own, 4-byte aligned memory
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }

  #batchValueSize(): number {
    return this.perCpu ? this.perCpuStride * numPossibleCpus() : this.valueSize;
  }

  #batchValueName(): string {
    return this.perCpu ? 'per-CPU value size (stride × possible CPUs)' : 'value_size';
  }

  #updateBatch(keys: Uint8Array, values: Uint8Array, count: number, flags: number): void {
    const valueSize = values.byteLength / count;
    const keyAt = (i: number): Uint8Array => keys.subarray(i * this.keySize, (i + 1) * this.keySize);
    if (!this.#batchUnsupported) {
      const done: [number] = [count];
      const ret = libbpf.bpf_map_update_batch(this.fd, keys, values, done,
        { sz: SIZEOF.bpf_map_batch_opts, elem_flags: flags, flags: 0 });
      if (ret === 0) return;
      const written = done[0];
      if (written !== 0 || !this.#noBatchSupport(-ret)) {
        throw this.#failure(`batch update (${written} of ${count} entries written before the failure)`,
          ret, keyAt(Math.min(written, count - 1)), flags);
      }
    }
    for (let i = 0; i < count; i++) {
      const ret = libbpf.bpf_map_update_elem(this.fd, keyAt(i), values.subarray(i * valueSize, (i + 1) * valueSize), flags);
      if (ret < 0) throw this.#failure(`update (entry ${i} of a batch of ${count})`, ret, keyAt(i), flags);
    }
  }

  /**
   * Whether a batch call that did nothing failed for want of batch support: ENOTSUPP
   * (this map type has no batch op; remembered) or EINVAL (a kernel before 5.6, which
   * does not know the command; or a real EINVAL, which the entry-by-entry path reports).
   */
  #noBatchSupport(e: number): boolean {
    if (e === ENOTSUPP || e === EOPNOTSUPP) {
      this.#batchUnsupported = true;
      return true;
    }
    return e === EINVAL;
  }

  /** One bpf_map_lookup_batch over an array range; false if the kernel cannot. */
  #lookupBatch(start: number, count: number, values: Buffer): boolean {
    // The batch cursor is "the last key done": start after start - 1, or from the
    // beginning when start is 0.
    let cursor: Buffer | null = null;
    if (start > 0) {
      cursor = Buffer.alloc(4);
      writeHostU32(cursor, start - 1);
    }
    const keys = Buffer.alloc(count * 4);
    const next = Buffer.alloc(4);
    const done: [number] = [count];
    const ret = libbpf.bpf_map_lookup_batch(this.fd, cursor, next, keys, values, done,
      { sz: SIZEOF.bpf_map_batch_opts, elem_flags: 0, flags: 0 });
    // ENOENT: the walk reached the end of the map; fine if it got every entry asked.
    if (ret < 0 && !(-ret === ENOENT && done[0] === count)) {
      if (done[0] === 0 && this.#noBatchSupport(-ret)) return false;
      throw this.#failure(`batch lookup of entries ${start}..${start + count - 1} (${done[0]} read)`, ret);
    }
    if (done[0] !== count) {
      throw new FulcrumError('ERR_BPF_MAP', `${this.description}: batch lookup returned ${done[0]} of ${count} entries`);
    }
    return true;
  }

  /** A per-CPU map's value for `key`: one Buffer (value_size bytes) per possible CPU. */
  lookupPerCpu(key: Uint8Array): Buffer[] | undefined {
    this.#usable('lookup');
    this.#perCpuOnly('lookupPerCpu', 'lookup');
    this.#checkKey(key);
    const cpus = numPossibleCpus();
    const all = Buffer.alloc(this.perCpuStride * cpus);
    const ret = libbpf.bpf_map_lookup_elem(this.fd, key, all);
    if (ret === -ENOENT) return undefined;
    if (ret < 0) throw this.#failure('lookup', ret, key);
    const values: Buffer[] = [];
    for (let cpu = 0; cpu < cpus; cpu++) {
      const start = cpu * this.perCpuStride;
      values.push(all.subarray(start, start + this.valueSize));
    }
    return values;
  }

  /**
   * Write a per-CPU value: one value_size buffer for every CPU (e.g. zeros to reset
   * counters), or one buffer per possible CPU.
   */
  updatePerCpu(key: Uint8Array, value: Uint8Array | readonly Uint8Array[], flags: number = BPF_ANY): void {
    this.#usable('update');
    this.#perCpuOnly('updatePerCpu', 'update');
    this.#checkKey(key);
    const cpus = numPossibleCpus();
    const perCpu = value instanceof Uint8Array ? Array.from({ length: cpus }, () => value) : value;
    if (perCpu.length !== cpus) {
      throw new FulcrumError('ERR_BPF_MAP',
        `${this.description}: per-CPU update with ${perCpu.length} values, there are ${cpus} possible CPUs`);
    }
    const all = Buffer.alloc(this.perCpuStride * cpus);
    perCpu.forEach((v, cpu) => {
      this.#checkSize('per-CPU value', v, this.valueSize, 'value_size');
      all.set(v, cpu * this.perCpuStride);
    });
    const ret = libbpf.bpf_map_update_elem(this.fd, key, all, flags);
    if (ret < 0) throw this.#failure('update', ret, key, flags);
  }

  /** Sum over CPUs of a per-CPU `struct counter` value; undefined if there is none. */
  counterSum(key: Uint8Array): Counter | undefined {
    if (this.valueSize !== ABI_SIZES.counter) {
      throw new FulcrumError('ERR_BPF_MAP',
        `${this.description}: value_size is ${this.valueSize}, struct counter is ${ABI_SIZES.counter} bytes`);
    }
    const values = this.lookupPerCpu(key);
    return values && sumCounters(values);
  }

  /** Pin the map at `path` on the BPF filesystem, so it outlives this process. */
  pin(path: string): void {
    this.#usable('pin');
    pinFd(this.fd, path, this.description, 'ERR_BPF_MAP');
    this.#pinnedAt = path;
  }

  /** Remove the pin this map was pinned at or opened from (the map lives on while fds or programs hold it). */
  unpin(): boolean {
    const path = this.#pinnedAt;
    this.#pinnedAt = undefined;
    return path === undefined ? false : unpin(path);
  }

  get pinnedAt(): string | undefined {
    return this.#pinnedAt;
  }

  /** Close the fd if this map owns it. Further operations throw. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#owned) closeQuietly(this.fd);
  }

  #usable(op: string): void {
    if (this.#closed) throw new FulcrumError('ERR_BPF_MAP', `${this.description}: ${op} after close()`);
  }

  #notPerCpu(op: string, instead: string): void {
    if (this.perCpu) {
      throw new FulcrumError('ERR_BPF_MAP', `${this.description} is per-CPU: use ${instead}() instead of ${op}()`);
    }
  }

  #perCpuOnly(op: string, instead: string): void {
    if (!this.perCpu) {
      throw new FulcrumError('ERR_BPF_MAP', `${this.description} is not per-CPU: use ${instead}() instead of ${op}()`);
    }
  }

  #checkKey(key: Uint8Array): void {
    this.#checkSize('key', key, this.keySize, 'key_size');
  }

  #checkSize(what: string, bytes: Uint8Array, expected: number, name: string): void {
    if (!(bytes instanceof Uint8Array)) {
      throw new FulcrumError('ERR_BPF_MAP', `${this.description}: ${what} must be a Buffer or Uint8Array`);
    }
    if (bytes.byteLength !== expected) {
      throw new FulcrumError('ERR_BPF_MAP',
        `${this.description}: ${what} is ${bytes.byteLength} bytes, the map's ${name} is ${expected}`,
        { details: { map: this.name, size: bytes.byteLength, expected } });
    }
  }

  #failure(op: string, ret: number, key?: Uint8Array, flags?: number): FulcrumError {
    return bpfFailure('ERR_BPF_MAP', `${this.description}: ${op} failed`, ret, {
      hint: this.#hint(errnoName(ret), flags),
      details: { map: this.name, mapId: this.id, ...(key ? { key: Buffer.from(key).toString('hex') } : {}) },
    });
  }

  #hint(name: string, flags: number | undefined): string | undefined {
    const isArray = ARRAY_TYPES.has(this.type);
    switch (name) {
      case 'E2BIG':
        return isArray
          ? `the index is beyond max_entries (${this.maxEntries})`
          : `the map is full (max_entries ${this.maxEntries}); raise max_entries before load`;
      case 'EEXIST':
        return flags === BPF_NOEXIST ? 'the key already exists and BPF_NOEXIST was given' : undefined;
      case 'ENOENT':
        return flags === BPF_EXIST ? 'the key does not exist and BPF_EXIST was given' : 'no such key';
      case 'EINVAL':
        return isArray
          ? 'array map: elements cannot be deleted (write zeros instead), and BPF_NOEXIST is not accepted'
          : 'the flags are not valid for this map type';
      case 'ENOMEM':
        return 'no memory for a new element (memory cgroup limit?)';
      case 'EPERM':
        return 'the map is read-only from user space (frozen .rodata), or the process lacks CAP_BPF / root';
      case 'EBADF':
        return 'the fd is not an open BPF map (closed elsewhere?)';
      default:
        return undefined;
    }
  }
}

/**
 * Create a standalone map (tests, scratch maps). name: up to 15 characters of
 * [A-Za-z0-9_.]; flags: BPF_F_* creation flags.
 */
export function createMap(type: number, keySize: number, valueSize: number, maxEntries: number,
  flags = 0, name = ''): BpfMap {
  const fd = libbpf.bpf_map_create(type, name || null, keySize, valueSize, maxEntries, {
    sz: SIZEOF.bpf_map_create_opts,
    btf_fd: 0, btf_key_type_id: 0, btf_value_type_id: 0, btf_vmlinux_value_type_id: 0,
    inner_map_fd: 0, map_flags: flags, map_extra: 0, numa_node: 0, map_ifindex: 0,
  });
  if (fd < 0) {
    const hints: Record<string, string> = {
      EINVAL: 'a size, flag or the name is not valid for this map type (arrays need 4-byte keys; names are [A-Za-z0-9_.], 15 characters)',
      E2BIG: 'key or value too large, or max_entries × value size too large',
      ENOMEM: 'not enough memory (memory cgroup limit?) for max_entries × value size',
      EPERM: 'creating maps needs CAP_BPF / root',
    };
    throw bpfFailure('ERR_BPF_MAP',
      `cannot create ${mapTypeName(type)} map ${name ? `'${name}' ` : ''}(key ${keySize} B, value ${valueSize} B, ${maxEntries} entries)`,
      fd, { hint: hints[errnoName(fd)] });
  }
  try {
    return BpfMap.fromFd(fd, { owned: true, name });
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
}
