// Maglev consistent hashing (Eisenbud et al., NSDI 2016): the agent computes one ring per
// VIP and writes it into the BPF ring array at [vip_id * ring_size, (vip_id + 1) * ring_size).
// The data plane picks ring[flow_hash % ring_size] for a new flow.
//
// Pure compute, no I/O. The ring is a function of the backend *keys* and weights only:
// every balancer node must build the same key-to-slot mapping, while backend ids are
// node-local, so ids are merely what gets written into the slots.
//
// Cross-node contract: the key hash (MurmurHash3 x86_32 of the key's UTF-8 bytes with the
// two seeds below), the canonical key order, and the turn schedule together decide every
// slot. Changing any of them changes the ring on upgraded nodes only, and flows without a
// connection-table entry would move between nodes running different versions. The golden
// rings in test/unit/maglev.test.ts pin them.
//
// Properties (M = 65537): with equal weights every backend holds floor(M/N) or ceil(M/N)
// slots. Removing a backend frees its slots and, as the paper says, disturbs a few more:
// its slots are claimed earlier in the fill than before, so other backends skip slots they
// used to take, and so on. That collateral is roughly a fixed fraction of the ring, up to
// about 0.4% for N = 10 and 0.6% for N = 100 to 1000, so it outweighs the removed
// backend's own share (1/N) only for N in the hundreds. Adding a backend is the mirror
// image. A bigger ring shrinks it (about 0.2% at 1048573 slots).

import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import { FulcrumError } from '../../shared/errors.ts';

export type MaglevBackend = {
  /** The u32 backend id written into the ring, > 0. Node-local. */
  readonly id: number;
  /** Stable identity shared by all nodes, e.g. "10.1.2.3" or "[2001:db8::5]". */
  readonly key: string;
  /** Integer >= 0; the slot share is proportional to it. 0 = draining: no slots. */
  readonly weight: number;
};

export type RingDelta = {
  /** Slot indices whose value changed, ascending. */
  readonly indices: Uint32Array;
  /** The new value of each changed slot, parallel to `indices`. */
  readonly values: Uint32Array;
};

export const DEFAULT_RING_SIZE = 65537;
/** Smallest prime; tiny rings are only useful in tests (the paper wants M >> N). */
export const MIN_RING_SIZE = 2;
/** 2^24 slots = 64 MiB of BPF array per VIP; anything larger is a configuration mistake. */
export const MAX_RING_SIZE = 2 ** 24;
export const MAX_BACKEND_ID = 0xffff_ffff;
/**
 * Keeps the exact turn-order comparison (turn * weight, turn <= MAX_RING_SIZE + 1) below
 * 2^53, so doubles compare the fractions exactly. Far above any useful weight ratio.
 */
export const MAX_WEIGHT = 1_000_000;

// Two seeds give two practically independent 32-bit hashes of the key: one for the
// permutation's offset, one for its skip. The values are arbitrary but fixed forever
// (see the contract above): ASCII "magl" and "skip".
const OFFSET_SEED = 0x6d61676c;
const SKIP_SEED = 0x736b6970;

/**
 * Builds the Maglev ring for one VIP: a Uint32Array of `ringSize` backend ids. Slot shares
 * are proportional to weight; every slot is filled whenever some backend has weight > 0,
 * and the ring is all 0 (the data plane drops: no backend) otherwise.
 *
 * The result depends only on the set of (key, weight) pairs, never on input order or id
 * values (beyond the ids being what is written). Throws FulcrumError ERR_CONFIG for a bad
 * ring size and ERR_DESIRED_STATE for invalid or duplicate backends.
 */
export function buildMaglevRing(backends: readonly MaglevBackend[], ringSize: number = DEFAULT_RING_SIZE): Uint32Array {
  validateRingSize(ringSize);
  validateBackends(backends);

  const ring = new Uint32Array(ringSize);
  // Canonical order: UTF-16 code-unit comparison of the keys, which are unique, so the
  // order is total and locale-independent. Draining backends take no part at all, so
  // draining one is exactly as disruptive as removing it.
  const active = backends.filter((b) => b.weight > 0).sort((a, b) => (a.key < b.key ? -1 : 1));
  const n = active.length;
  if (n === 0) return ring;

  const ids = new Uint32Array(n);
  // position[i] is backend i's next candidate slot: permutation[i][j] for its current j.
  const position = new Int32Array(n);
  const skip = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const backend = active[i]!;
    const permutation = maglevPermutation(backend.key, ringSize);
    ids[i] = backend.id;
    position[i] = permutation.offset;
    skip[i] = permutation.skip;
  }

  const groups = groupByWeight(active);
  if (groups.weight.length === 1) {
    fillRoundRobin(ring, ids, position, skip);
  } else {
    fillWeighted(ring, ids, position, skip, groups);
  }
  return ring;
}

/**
 * Backend `key`'s permutation of the ring: slot j of its preference list is
 * (offset + j * skip) % ringSize. skip is in [1, ringSize - 1] and ringSize is prime, so
 * the list visits every slot exactly once.
 */
export function maglevPermutation(key: string, ringSize: number): { offset: number; skip: number } {
  const length = encodeUtf8(key);
  const h1 = murmur3x86_32(utf8Scratch, length, OFFSET_SEED);
  const h2 = murmur3x86_32(utf8Scratch, length, SKIP_SEED);
  return { offset: h1 % ringSize, skip: (h2 % (ringSize - 1)) + 1 };
}

/** How many slots each backend id holds. Empty (0) slots are not counted. */
export function ringShares(ring: Uint32Array): Map<number, number> {
  const shares = new Map<number, number>();
  for (let s = 0; s < ring.length; s++) {
    const id = ring[s]!;
    if (id !== 0) shares.set(id, (shares.get(id) ?? 0) + 1);
  }
  return shares;
}

/**
 * A short stable digest of a ring's contents: the first 16 hex characters of the SHA-256
 * of its slots as little-endian u32s. It covers backend ids, which are node-local, so it
 * tells whether this node's map holds what this node computed; to compare the rings of
 * different nodes use ringKeyDigest.
 */
export function ringDigest(ring: Uint32Array): string {
  return createHash('sha256').update(littleEndianBytes(ring)).digest('hex').slice(0, 16);
}

/**
 * A digest of the key-to-slot mapping, comparable across nodes whatever ids they
 * allocated: the SHA-256 (first 16 hex characters) of the sorted keys of `backends`,
 * then every slot as the rank of its backend's key in that order (0xffffffff for an
 * empty slot). Backends that hold no slot still count, so a draining backend shows.
 * Throws if the ring holds an id that is not in `backends`.
 */
export function ringKeyDigest(ring: Uint32Array, backends: readonly MaglevBackend[]): string {
  const sorted = [...backends].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const rankOfId = new Map<number, number>();
  const hash = createHash('sha256');
  const header = new DataView(new ArrayBuffer(4));
  for (let rank = 0; rank < sorted.length; rank++) {
    const backend = sorted[rank]!;
    rankOfId.set(backend.id, rank);
    // Length-prefixed so that key boundaries are unambiguous.
    const key = Buffer.from(backend.key, 'utf8');
    header.setUint32(0, key.length, true);
    hash.update(new Uint8Array(header.buffer)).update(key);
  }
  const ranks = new Uint32Array(ring.length);
  for (let s = 0; s < ring.length; s++) {
    const id = ring[s]!;
    if (id === 0) {
      ranks[s] = 0xffff_ffff;
      continue;
    }
    const rank = rankOfId.get(id);
    if (rank === undefined) {
      throw new FulcrumError('ERR_INTERNAL', `ring slot ${s} holds backend id ${id}, which is not among the given backends`, {
        details: { slot: s, id },
      });
    }
    ranks[s] = rank;
  }
  return hash.update(littleEndianBytes(ranks)).digest('hex').slice(0, 16);
}

/**
 * The slots that differ between two rings of the same size, for a batched map update
 * that rewrites only what changed. A ring size change is not a delta: rewrite it whole.
 */
export function ringDelta(oldRing: Uint32Array, newRing: Uint32Array): RingDelta {
  if (oldRing.length !== newRing.length) {
    throw new FulcrumError(
      'ERR_INTERNAL',
      `ringDelta needs rings of one size, got ${oldRing.length} and ${newRing.length} slots`,
      { details: { oldSize: oldRing.length, newSize: newRing.length } },
    );
  }
  // Two passes so the result arrays are allocated at their exact size.
  let changed = 0;
  for (let s = 0; s < newRing.length; s++) {
    if (oldRing[s] !== newRing[s]) changed++;
  }
  const indices = new Uint32Array(changed);
  const values = new Uint32Array(changed);
  let next = 0;
  for (let s = 0; s < newRing.length; s++) {
    const value = newRing[s]!;
    if (oldRing[s] !== value) {
      indices[next] = s;
      values[next] = value;
      next++;
    }
  }
  return { indices, values };
}

// ---------------------------------------------------------------------------------------
// Filling the ring

// Backend i's turn: walk its permutation from position[i] to the first empty slot, take
// it, and remember the slot after it. This walk is the hot loop: about 400k to 600k steps
// per 65537-slot ring, each a load from a random slot. Both fill functions inline it:
// - ring[slot] === 0 doubles as the "empty" mark, because ids are > 0.
// - The permutation is walked by a running sum, never (offset + j * skip) % size: one add
//   and one wrap per step. The wrap is branch-free (slot += skip - size, then add size
//   back if that went negative): a wrap happens with probability skip / size, which is
//   random per backend, so a branch here is mispredicted about half the time; removing
//   it made the whole build 15-20% faster.
// - position and skip are Int32Array so `slot >> 31` is the sign of the wrapped value
//   (sizes are <= 2^24, so nothing overflows).

/** Equal weights: the paper's round robin, each backend one turn per round in key order. */
function fillRoundRobin(ring: Uint32Array, ids: Uint32Array, position: Int32Array, skip: Int32Array): void {
  const size = ring.length;
  const n = ids.length;
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      const stepBack = skip[i]! - size;
      let slot = position[i]!;
      while (ring[slot] !== 0) {
        slot += stepBack;
        slot += size & (slot >> 31);
      }
      ring[slot] = ids[i]!;
      slot += stepBack;
      position[i] = slot + (size & (slot >> 31));
      if (++filled === size) return;
    }
  }
}

/**
 * Backends that share a weight share a turn schedule, so the weighted fill schedules
 * groups, not backends. Groups are ordered by weight, heaviest first; each group's members
 * (indices into the key-sorted backends) are in key order.
 */
type WeightGroups = {
  /** Distinct weights, descending. */
  readonly weight: Float64Array;
  /** Group g's members are members[start[g] .. start[g + 1]). */
  readonly start: Int32Array;
  readonly members: Int32Array;
};

function groupByWeight(sortedBackends: readonly MaglevBackend[]): WeightGroups {
  const distinct = [...new Set(sortedBackends.map((b) => b.weight))].sort((a, b) => b - a);
  const groupOfWeight = new Map(distinct.map((w, g) => [w, g]));
  const start = new Int32Array(distinct.length + 1);
  for (const backend of sortedBackends) start[groupOfWeight.get(backend.weight)! + 1]!++;
  for (let g = 0; g < distinct.length; g++) start[g + 1]! += start[g]!;
  const members = new Int32Array(sortedBackends.length);
  const next = start.slice(0, distinct.length);
  for (let i = 0; i < sortedBackends.length; i++) {
    const g = groupOfWeight.get(sortedBackends[i]!.weight)!;
    members[next[g]!++] = i;
  }
  return { weight: Float64Array.from(distinct), start, members };
}

/**
 * Unequal weights. Backend i takes its k-th turn (k = 1, 2, ...) at virtual time k / w_i.
 * Turns run in order of time; equal times go heavier weight first, then key order. Every
 * turn fills exactly one slot, and when the ring is full at time t each backend has taken
 * floor(t * w_i) or floor(t * w_i) + 1 turns, so its share is within a slot or two of
 * M * w_i / sum(w): proportional to weight.
 *
 * Why this schedule rather than Katran's credit rounds (each round every backend adds its
 * weight to a credit and takes a turn when the credit reaches the maximum weight): here
 * the position of a backend's turns in the total order depends on its own key and weight
 * only. Adding, removing or reweighting one backend therefore inserts, deletes or moves
 * only that backend's turns, and every other backend's turns keep their relative order,
 * which is the property unweighted Maglev's low disruption rests on. With credit rounds
 * the round of every turn is scaled by the maximum weight, so a change to the heaviest
 * backend re-times everyone. With equal weights the schedules agree with each other and with
 * fillRoundRobin: all k-th turns tie and run in key order.
 *
 * Backends of one weight turn together, so the schedule is a binary min-heap of weight
 * groups keyed by time[g] = nextTurn[g] / weight[g], and a whole group (in key order) takes
 * its k-th turns per pop. Heap steps are branchy and mispredict often, so per-backend heap
 * entries would cost more than the walks themselves; with a few distinct weights the heap
 * work is negligible, and with all weights distinct it degrades to O(ring size * log n).
 */
function fillWeighted(
  ring: Uint32Array,
  ids: Uint32Array,
  position: Int32Array,
  skip: Int32Array,
  groups: WeightGroups,
): void {
  const size = ring.length;
  const { weight, start, members } = groups;
  const groupCount = weight.length;
  const nextTurn = new Float64Array(groupCount).fill(1);
  const time = new Float64Array(groupCount);
  const heap = new Int32Array(groupCount);
  // Heaviest first means first turns at ascending times 1 / w: a sorted array, so a heap.
  for (let g = 0; g < groupCount; g++) {
    time[g] = 1 / weight[g]!;
    heap[g] = g;
  }

  let filled = 0;
  for (;;) {
    const g = heap[0]!;
    const end = start[g + 1]!;
    for (let m = start[g]!; m < end; m++) {
      const i = members[m]!;
      const stepBack = skip[i]! - size;
      let slot = position[i]!;
      while (ring[slot] !== 0) {
        slot += stepBack;
        slot += size & (slot >> 31);
      }
      ring[slot] = ids[i]!;
      slot += stepBack;
      position[i] = slot + (size & (slot >> 31));
      if (++filled === size) return;
    }
    const turn = nextTurn[g]! + 1;
    nextTurn[g] = turn;
    time[g] = turn / weight[g]!;
    siftDown(heap, time, nextTurn, weight);
  }
}

/** Restores the heap after its root's time grew. */
function siftDown(heap: Int32Array, time: Float64Array, nextTurn: Float64Array, weight: Float64Array): void {
  const n = heap.length;
  const item = heap[0]!;
  let hole = 0;
  for (;;) {
    let child = 2 * hole + 1;
    if (child >= n) break;
    if (child + 1 < n && turnsBefore(heap[child + 1]!, heap[child]!, time, nextTurn, weight)) child++;
    const childItem = heap[child]!;
    if (!turnsBefore(childItem, item, time, nextTurn, weight)) break;
    heap[hole] = childItem;
    hole = child;
  }
  heap[hole] = item;
}

/**
 * Does group a's next turn come before group b's? Rounding is monotonic, so a strict `<`
 * between the rounded times is the true order. Equal rounded times (ties are common:
 * 2/2 = 1/1) are settled exactly by cross-multiplying (MAX_WEIGHT keeps the products
 * exact), and an exact tie goes to the heavier group, which has the lower index.
 */
function turnsBefore(a: number, b: number, time: Float64Array, nextTurn: Float64Array, weight: Float64Array): boolean {
  const ta = time[a]!;
  const tb = time[b]!;
  if (ta !== tb) return ta < tb;
  const exactA = nextTurn[a]! * weight[b]!;
  const exactB = nextTurn[b]! * weight[a]!;
  return exactA < exactB || (exactA === exactB && a < b);
}

// ---------------------------------------------------------------------------------------
// Validation

function validateRingSize(ringSize: number): void {
  if (!Number.isSafeInteger(ringSize) || ringSize < MIN_RING_SIZE || ringSize > MAX_RING_SIZE) {
    throw new FulcrumError(
      'ERR_CONFIG',
      `Maglev ring size must be a prime integer in ${MIN_RING_SIZE}..${MAX_RING_SIZE}, got ${String(ringSize)}`,
      { details: { ringSize } },
    );
  }
  if (!isPrime(ringSize)) {
    throw new FulcrumError(
      'ERR_CONFIG',
      `Maglev ring size ${ringSize} is not prime (every backend's permutation must cover the ring); ` +
        `the next prime is ${nextPrime(ringSize)}`,
      { details: { ringSize } },
    );
  }
}

function validateBackends(backends: readonly MaglevBackend[]): void {
  if (!Array.isArray(backends)) {
    throw new FulcrumError('ERR_DESIRED_STATE', 'Maglev backends must be an array');
  }
  const keyById = new Map<number, string>();
  const idByKey = new Map<string, number>();
  for (const backend of backends) {
    const { id, key, weight } = backend;
    if (typeof key !== 'string' || key.length === 0) {
      throw new FulcrumError('ERR_DESIRED_STATE', `backend ${String(id)} has no key: the key must be a non-empty string`, {
        details: { id, key },
      });
    }
    if (!Number.isInteger(id) || id < 1 || id > MAX_BACKEND_ID) {
      throw new FulcrumError(
        'ERR_DESIRED_STATE',
        `backend "${key}" has id ${String(id)}: ids must be integers in 1..${MAX_BACKEND_ID} (0 marks an empty slot)`,
        { details: { id, key } },
      );
    }
    if (!Number.isInteger(weight) || weight < 0 || weight > MAX_WEIGHT) {
      throw new FulcrumError(
        'ERR_DESIRED_STATE',
        `backend "${key}" has weight ${String(weight)}: weights must be integers in 0..${MAX_WEIGHT}`,
        { details: { id, key, weight } },
      );
    }
    const otherId = idByKey.get(key);
    if (otherId !== undefined) {
      throw new FulcrumError('ERR_DESIRED_STATE', `duplicate backend key "${key}" (ids ${otherId} and ${id})`, {
        details: { key, ids: [otherId, id] },
      });
    }
    const otherKey = keyById.get(id);
    if (otherKey !== undefined) {
      throw new FulcrumError('ERR_DESIRED_STATE', `duplicate backend id ${id} (keys "${otherKey}" and "${key}")`, {
        details: { id, keys: [otherKey, key] },
      });
    }
    idByKey.set(key, id);
    keyById.set(id, key);
  }
}

/** Trial division: ring sizes are at most 2^24, so at most ~2000 odd divisors. */
export function isPrime(value: number): boolean {
  if (!Number.isSafeInteger(value) || value < 2) return false;
  if (value % 2 === 0) return value === 2;
  for (let d = 3; d * d <= value; d += 2) {
    if (value % d === 0) return false;
  }
  return true;
}

function nextPrime(value: number): number {
  let candidate = Math.max(2, Math.floor(value) + 1);
  while (!isPrime(candidate)) candidate++;
  return candidate;
}

// ---------------------------------------------------------------------------------------
// Hashing

const utf8Encoder = new TextEncoder();
// Reused across calls: keys are short, and this keeps hashing free of per-key allocation.
let utf8Scratch = new Uint8Array(256);

/** Encodes `text` as UTF-8 into utf8Scratch and returns the byte length. */
function encodeUtf8(text: string): number {
  // A UTF-16 code unit never takes more than 3 UTF-8 bytes.
  if (text.length * 3 > utf8Scratch.length) utf8Scratch = new Uint8Array(text.length * 3);
  return utf8Encoder.encodeInto(text, utf8Scratch).written;
}

/**
 * MurmurHash3 x86_32 (Austin Appleby, public domain) of bytes[0, length): small, fast,
 * well mixed, and specified by a reference implementation with published test vectors,
 * so the ring can be reproduced outside this code base.
 */
export function murmur3x86_32(bytes: Uint8Array, length: number, seed: number): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = seed | 0;
  const blockEnd = length & ~3;
  for (let p = 0; p < blockEnd; p += 4) {
    let k = bytes[p]! | (bytes[p + 1]! << 8) | (bytes[p + 2]! << 16) | (bytes[p + 3]! << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = length & 3;
  if (tail !== 0) {
    let k = 0;
    if (tail === 3) k ^= bytes[blockEnd + 2]! << 16;
    if (tail >= 2) k ^= bytes[blockEnd + 1]! << 8;
    k ^= bytes[blockEnd]!;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------

const hostIsLittleEndian = endianness() === 'LE';

/** The array's u32s as little-endian bytes, without copying on little-endian hosts. */
function littleEndianBytes(words: Uint32Array): Uint8Array {
  if (hostIsLittleEndian) return new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
  const bytes = new Uint8Array(words.byteLength);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < words.length; i++) view.setUint32(i * 4, words[i]!, true);
  return bytes;
}

/**
 * A digest of what a ring is built from — ring size and the (key, weight) pairs that
 * take slots — comparable across nodes like ringKeyDigest (same inputs, same ring on
 * every node), but computed without building the ring, so the agent need not keep
 * rings in memory to report them.
 */
export function ringInputsDigest(backends: readonly MaglevBackend[], ringSize: number): string {
  const members = backends.filter((b) => b.weight > 0).map((b) => `${b.key}=${b.weight}`).sort();
  return createHash('sha256').update(`maglev/v1/${ringSize}/${members.join(',')}`).digest('hex').slice(0, 16);
}
