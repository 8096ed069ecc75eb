import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressTable, addressSlotsFor, addressWord, candidateSlots } from '../../src/agent/dataplane/address-table.ts';

test('slots follow the data plane: a multiply-shift of the little-endian address word', () => {
  // 10.0.0.1 is bytes 0a 00 00 01: little-endian word 0x0100000a.
  assert.equal(addressWord('10.0.0.1'), 0x0100000a);
  assert.equal(addressWord('::1'), 0x01000000);
  const [a, b] = candidateSlots('10.0.0.1', 8);
  assert.equal(a, Math.imul(0x0100000a, 0x9e3779b1) >>> 24);
  assert.equal(b, Math.imul(0x0100000a, 0x85ebca77) >>> 24);
});

test('neighbouring addresses spread over the table', () => {
  const table = new AddressTable(4, 256);
  for (let i = 1; i <= 64; i++) table.upsert(`192.0.2.${i}`, 0, i);
  const firstChoice = new Set(Array.from({ length: 64 }, (_, i) => candidateSlots(`192.0.2.${i + 1}`, 8)[0]));
  assert.ok(firstChoice.size > 40, `only ${firstChoice.size} distinct first slots for 64 neighbours`);
});

test('every inserted address is found in one of its two slots, up to the planned load', () => {
  const table = new AddressTable(4, addressSlotsFor(512));
  for (let i = 0; i < 512; i++) table.upsert(`10.${i >> 8}.${i & 255}.1`, 1, i + 1);
  for (let i = 0; i < 512; i++) assert.notEqual(table.find(`10.${i >> 8}.${i & 255}.1`), undefined);
  assert.equal(table.addresses().size, 512);
});

test('a displacement chain is written from its end, so no resident is ever missing', () => {
  const table = new AddressTable(6, 64);
  let writes: ReturnType<AddressTable['upsert']> = [];
  for (let i = 1; i <= 40 && writes.length < 2; i++) {
    const before = table.clone();
    writes = table.upsert(`2001:db8::${i.toString(16)}`, 0, i);
    if (writes.length < 2) continue;
    // Replay the writes on the old table: after each, every old resident is present.
    const replay = before.clone();
    const residents = [...before.addresses().keys()];
    for (const w of writes) {
      replay.slots[w.slot] = w.entry;
      for (const r of residents) assert.notEqual(replay.find(r), undefined, `${r} missing after writing slot ${w.slot}`);
    }
  }
  assert.ok(writes.length >= 2, 'no insertion needed a displacement at this load');
});

test('updating flags rewrites in place; removing clears the slot; a full table says so', () => {
  const table = new AddressTable(4, 2);
  assert.equal(table.upsert('10.0.0.1', 1, 5).length, 1);
  assert.deepEqual(table.upsert('10.0.0.1', 1, 5), []);
  assert.deepEqual(table.upsert('10.0.0.1', 0, 9).map((w) => w.entry), [{ address: '10.0.0.1', flags: 0, id: 5 }], 'the id stays');
  assert.deepEqual(table.remove('10.0.0.1').map((w) => w.entry), [null]);
  table.upsert('10.0.0.1', 0, 1);
  table.upsert('10.0.0.2', 0, 2);
  assert.throws(() => table.upsert('10.0.0.3', 0, 3), /no room/);
});
