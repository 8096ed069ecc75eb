// Shared by the lab tests: one lab per test file (started in `before`, always torn
// down in `after`), and the assertions every scenario makes about flows.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { Lab, type LabOptions } from '../../src/lab/lab.ts';
import type { PodRole } from '../../src/lab/topology.ts';
import { countByPod, failedFlows, shareDeviation, type ClientDriver, type FlowResult, type Transfer } from '../../src/lab/traffic.ts';

/** A lab for the tests of this file. Call at the top of a describe(). */
export function useLab(options: LabOptions = {}): () => Lab {
  let lab: Lab | undefined;
  before(async () => {
    lab = await Lab.start(options);
  });
  after(async () => {
    await lab?.teardown();
  });
  return () => {
    assert.ok(lab, 'the lab did not start');
    return lab;
  };
}

/** Every flow got an answer from a pod. */
export function assertAllAnswered(results: readonly FlowResult[], what: string): void {
  const failed = failedFlows(results);
  assert.equal(failed.length, 0, `${what}: ${failed.length} of ${results.length} flows failed: ${JSON.stringify(failed.slice(0, 5))}`);
}

/** "pod1 402 (+0.5 %), pod2 …": the counts and how far each is from its fair share. */
export function describeSpread(counts: Readonly<Record<string, number>>, weights: Readonly<Record<string, number>>): string {
  const deviation = shareDeviation(counts, weights);
  return Object.keys(weights)
    .map((pod) => `${pod} ${counts[pod] ?? 0} (${(deviation[pod]! * 100).toFixed(1).replace(/^(?!-)/, '+')} %)`)
    .join(', ');
}

/** Asserts every pod's share of the flows is within `tolerance` (relative) of its weighted fair share. */
export function assertSpread(results: readonly FlowResult[], weights: Readonly<Record<string, number>>, tolerance: number, what: string): string {
  assertAllAnswered(results, what);
  const counts = countByPod(results);
  const text = describeSpread(counts, weights);
  for (const [pod, d] of Object.entries(shareDeviation(counts, weights))) {
    assert.ok(Math.abs(d) <= tolerance, `${what}: ${pod} is ${(d * 100).toFixed(1)} % off its fair share (${text})`);
  }
  for (const pod of Object.keys(counts)) assert.ok(pod in weights, `${what}: flows reached ${pod}, which should get none (${text})`);
  return text;
}

/**
 * Starts paced downloads until every pod in `pods` serves at least one (each new
 * source port lands where the ring puts it). Returns them all; each has moved bytes.
 */
export async function transfersOnEveryPod(
  client: ClientDriver, target: string, pods: readonly PodRole[],
  options: { bytes: number; durationMs: number; maxTransfers?: number },
): Promise<Transfer[]> {
  const transfers: Transfer[] = [];
  const missing = new Set<string>(pods);
  for (let i = 0; missing.size > 0; i++) {
    assert.ok(i < (options.maxTransfers ?? 16), `no transfer landed on ${[...missing].join(', ')} after ${i} attempts`);
    const t = await client.startTransfer(target, { direction: 'download', bytes: options.bytes, durationMs: options.durationMs });
    await t.waitForBytes(1);
    transfers.push(t);
    missing.delete(t.pod()!);
  }
  return transfers;
}

/** The transfer moved every byte, closed cleanly, and was never reset. */
export function assertCompleted(result: Awaited<ReturnType<Transfer['result']>>, what: string): void {
  assert.equal(result.error, undefined, `${what}: the transfer failed (${result.error}) after ${result.bytes} of ${result.expected} bytes`);
  assert.equal(result.completed, true, `${what}: incomplete (${result.bytes} of ${result.expected} bytes)`);
  assert.equal(result.bytes, result.expected);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
