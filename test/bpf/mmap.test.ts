import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMap, BPF_MAP_TYPE } from '../../src/agent/bpf/map.ts';
import { BPF_F_MMAPABLE, mapArrayMemory, mapArrayWords } from '../../src/agent/bpf/mmap.ts';
import { decodeU32, u32 } from '../../src/agent/bpf/abi.ts';
import { isFulcrumError } from '../../src/shared/errors.ts';

test('an mmapable array map is the same memory the syscalls see', () => {
  const map = createMap(BPF_MAP_TYPE.ARRAY, 4, 4, 70000, BPF_F_MMAPABLE, 'test_mmap');
  try {
    const mem = mapArrayMemory(map);
    assert.equal(mem.stride, 2, 'a 4-byte value takes an 8-byte element');
    mem.u32[0] = 7;
    mem.u32[69999 * mem.stride] = 0xdeadbeef;
    assert.equal(decodeU32(map.lookup(u32(0))!), 7);
    assert.equal(decodeU32(map.lookup(u32(69999))!), 0xdeadbeef);
    map.update(u32(1234), u32(42));
    assert.equal(mem.u32[1234 * mem.stride], 42);
    mem.unmap();
    mem.unmap(); // idempotent
  } finally {
    map.close();
  }
});

test('a map without BPF_F_MMAPABLE is refused in words', () => {
  const map = createMap(BPF_MAP_TYPE.ARRAY, 4, 4, 16, 0, 'test_nommap');
  try {
    assert.throws(() => mapArrayMemory(map), (err) => isFulcrumError(err, 'ERR_BPF_MAP') && /BPF_F_MMAPABLE/.test(err.message));
  } finally {
    map.close();
  }
});

test('a word range maps only its pages and lines up with the keys', () => {
  const map = createMap(BPF_MAP_TYPE.ARRAY, 4, 64, 10000, BPF_F_MMAPABLE, 'test_mmap_range');
  try {
    const range = mapArrayWords(map, 65537, 1000); // not page-aligned
    range.u32[0] = 11;
    range.u32[999] = 22;
    range.unmap();
    // Word 65537 is element 65537 / 16 = 4096, word 1 of it.
    assert.equal(map.lookup(u32(4096))!.readUInt32LE(4), 11);
    assert.equal(map.lookup(u32(Math.floor((65537 + 999) / 16)))!.readUInt32LE(((65537 + 999) % 16) * 4), 22);
    assert.throws(() => mapArrayWords(map, 160000 - 10, 11), (err) => isFulcrumError(err, 'ERR_BPF_MAP'));
  } finally {
    map.close();
  }
});
