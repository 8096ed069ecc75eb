// The VIP address table: which destination addresses are VIP addresses, as a
// two-choice cuckoo hash table living in a BPF array map (bpf/include/select.h reads
// it with two inlined array lookups, far cheaper than a hash map). Pure compute: this
// module decides slots and the order of slot writes; balancer.ts writes them.
//
// Writes never hide an address that stays: an insertion that displaces residents moves
// the last one of the chain first, so every resident is in one of its slots (briefly
// in two) at every moment.
import { addressBytes, addressFamily, type Family } from '../../shared/addresses.ts';
import { FulcrumError } from '../../shared/errors.ts';

/** id: the addr_id the connection-table keys use for this address (1..65535). */
export type AddressEntry = { readonly address: string; readonly flags: number; readonly id: number };
export type SlotWrite = { readonly family: Family; readonly slot: number; readonly entry: AddressEntry | null };

// Keep in sync with ADDR_SLOT_MULT1/2 in bpf/include/select.h.
const MULT1 = 0x9e3779b1;
const MULT2 = 0x85ebca77;
const MAX_PATH = 64;

/** The 32-bit word the data plane hashes: the IPv4 address, or the XOR of the IPv6
 * address's four words, each loaded little-endian as the BPF program does on x86. */
export function addressWord(address: string): number {
  const b = addressBytes(address);
  let word = 0;
  for (let i = 0; i < b.length; i += 4) word ^= b.readUInt32LE(i);
  return word >>> 0;
}

/** The two slots an address may live in: the top `bits` bits of two products. */
export function candidateSlots(address: string, bits: number): [number, number] {
  const w = addressWord(address);
  return [Math.imul(w, MULT1) >>> (32 - bits), Math.imul(w, MULT2) >>> (32 - bits)];
}

/** Slots for maxVips addresses at a load of at most 25 %, a power of two, at most 2^16. */
export function addressSlotsFor(maxVips: number): number {
  let slots = 64;
  while (slots < maxVips * 4 && slots < 1 << 16) slots *= 2;
  return slots;
}

export class AddressTable {
  readonly family: Family;
  readonly slots: (AddressEntry | null)[];
  readonly bits: number;

  constructor(family: Family, slotCount: number, slots?: readonly (AddressEntry | null)[]) {
    if (slotCount < 2 || (slotCount & (slotCount - 1)) !== 0 || slotCount > 1 << 16) {
      throw new FulcrumError('ERR_CONFIG', `the VIP address table needs a power-of-two slot count up to 65536, got ${slotCount}`);
    }
    this.family = family;
    this.bits = Math.log2(slotCount);
    this.slots = slots ? [...slots] : new Array<AddressEntry | null>(slotCount).fill(null);
  }

  clone(): AddressTable {
    return new AddressTable(this.family, this.slots.length, this.slots);
  }

  find(address: string): number | undefined {
    for (const slot of candidateSlots(address, this.bits)) if (this.slots[slot]?.address === address) return slot;
    return undefined;
  }

  addresses(): Map<string, AddressEntry> {
    const out = new Map<string, AddressEntry>();
    for (const e of this.slots) if (e) out.set(e.address, e);
    return out;
  }

  /** Adds or updates an address; returns the slot writes in a safe order. An address
   * already present keeps its id (the connection table is keyed by it). */
  upsert(address: string, flags: number, id: number): SlotWrite[] {
    if (addressFamily(address) !== this.family) throw new FulcrumError('ERR_INTERNAL', `${address} is not IPv${this.family}`);
    const present = this.find(address);
    if (present !== undefined) {
      const old = this.slots[present]!;
      if (old.flags === flags) return [];
      return [this.write(present, { address, flags, id: old.id })];
    }
    const entry = { address, flags, id };
    const path = this.pathToFreeSlot(address);
    if (path === undefined) {
      throw new FulcrumError('ERR_DESIRED_STATE', `the VIP address table (${this.slots.length} IPv${this.family} slots) has no room for ${address}; raise maxVips`);
    }
    // path: [s0, s1, ..., sk] — the new address goes to s0, the resident of s(i) moves
    // to s(i+1), sk is free. Move from the end so nobody is ever missing.
    const writes: SlotWrite[] = [];
    for (let i = path.length - 1; i > 0; i--) writes.push(this.write(path[i]!, this.slots[path[i - 1]!]!));
    writes.push(this.write(path[0]!, entry));
    return writes;
  }

  remove(address: string): SlotWrite[] {
    const slot = this.find(address);
    return slot === undefined ? [] : [this.write(slot, null)];
  }

  private write(slot: number, entry: AddressEntry | null): SlotWrite {
    this.slots[slot] = entry;
    return { family: this.family, slot, entry };
  }

  private otherSlot(entry: AddressEntry, slot: number): number {
    const [a, b] = candidateSlots(entry.address, this.bits);
    return slot === a ? b : a;
  }

  /** Breadth-first search for the shortest displacement chain ending in a free slot. */
  private pathToFreeSlot(address: string): number[] | undefined {
    const start = candidateSlots(address, this.bits);
    const parent = new Map<number, number>();
    const queue: number[] = [];
    for (const s of start) {
      if (this.slots[s] === null) return [s];
      if (!parent.has(s)) {
        parent.set(s, -1);
        queue.push(s);
      }
    }
    for (let head = 0; head < queue.length && head < MAX_PATH * 8; head++) {
      const slot = queue[head]!;
      const next = this.otherSlot(this.slots[slot]!, slot);
      if (parent.has(next)) continue;
      parent.set(next, slot);
      if (this.slots[next] === null) {
        const path = [next];
        for (let s = slot; s !== -1; s = parent.get(s)!) path.unshift(s);
        return path;
      }
      queue.push(next);
    }
    return undefined;
  }
}
