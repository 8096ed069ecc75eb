// Array maps created with BPF_F_MMAPABLE can be mapped into the agent's memory: the
// values are then plain memory, read and written without a syscall per element. The
// Maglev rings use this — programming 512 rings of 65537 slots is 33 million writes,
// seconds through bpf_map_update_batch, tens of milliseconds through the mapping.
// Aligned 4-byte stores are atomic on every platform the kernel maps BPF arrays on,
// so the data plane never reads a torn slot.
import koffi from 'koffi';
import { FulcrumError } from '../../shared/errors.ts';
import { errnoName } from './libbpf.ts';
import { MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap } from './libc.ts';
import { BPF_MAP_TYPE, type BpfMap } from './map.ts';

export const BPF_F_MMAPABLE = 1 << 10;
const PAGE_SIZE = 4096;

export type MappedArray = {
  /** The map's memory as u32 words. The kernel lays elements out every
   * round_up(value_size, 8) bytes: element i starts at u32[i * stride]. */
  readonly u32: Uint32Array;
  readonly stride: number;
  unmap(): void;
};

export function mapArrayMemory(map: BpfMap): MappedArray {
  const elemSize = checkMappable(map);
  return mapBytes(map, 0, elemSize * map.maxEntries, elemSize);
}

/** Maps only the u32 words [firstWord, firstWord + words) of the array's memory. The
 * kernel fills the whole mapping at mmap time, so mapping just the pages a change
 * touches keeps small updates of a large map cheap. */
export function mapArrayWords(map: BpfMap, firstWord: number, words: number): MappedArray {
  const elemSize = checkMappable(map);
  const total = elemSize * map.maxEntries;
  const start = firstWord * 4;
  if (!Number.isInteger(firstWord) || !Number.isInteger(words) || firstWord < 0 || words < 0 || start + words * 4 > total) {
    throw new FulcrumError('ERR_BPF_MAP', `${map.description}: words ${firstWord}..${firstWord + words} are outside its ${total / 4}`);
  }
  const pageStart = Math.floor(start / PAGE_SIZE) * PAGE_SIZE;
  const mapped = mapBytes(map, pageStart, start + words * 4 - pageStart, elemSize);
  return { u32: mapped.u32.subarray((start - pageStart) / 4, (start - pageStart) / 4 + words), stride: mapped.stride, unmap: mapped.unmap };
}

function checkMappable(map: BpfMap): number {
  if (map.type !== BPF_MAP_TYPE.ARRAY || (map.flags & BPF_F_MMAPABLE) === 0) {
    throw new FulcrumError('ERR_BPF_MAP', `${map.description}: only an array map created with BPF_F_MMAPABLE can be mapped into memory`);
  }
  if (map.valueSize % 4 !== 0) throw new FulcrumError('ERR_BPF_MAP', `${map.description}: the mapping is read as u32, value_size is ${map.valueSize}`);
  return Math.ceil(map.valueSize / 8) * 8;
}

function mapBytes(map: BpfMap, offset: number, bytes: number, elemSize: number): MappedArray {
  const length = Math.max(PAGE_SIZE, Math.ceil(bytes / PAGE_SIZE) * PAGE_SIZE);
  const ptr = mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, map.fd, offset);
  // MAP_FAILED is (void *)-1.
  if (ptr === null || koffi.address(ptr) === 0xffffffffffffffffn) {
    const e = koffi.errno();
    throw new FulcrumError('ERR_BPF_MAP', `${map.description}: mmap of ${length} bytes failed: ${errnoName(e)}`, { details: { errno: e } });
  }
  const buffer = koffi.view(ptr, length) as ArrayBuffer;
  let mapped = true;
  return {
    u32: new Uint32Array(buffer, 0, Math.floor(Math.min(bytes, length) / 4)),
    stride: elemSize / 4,
    unmap() {
      if (!mapped) return;
      mapped = false;
      munmap(ptr, length);
    },
  };
}
