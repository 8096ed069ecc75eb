// Writes BalancerNode specs, only when their content changes.
//
// - The comparison is against what the API server holds: the informer's copy, or the
//   object our own last write returned when the informer has not caught up with it yet
//   (so a quick second reconcile does not write the same spec twice).
// - Only the fields the operator owns are compared, in canonical JSON (compute/nodes.ts),
//   so a field the server defaults does not make every pass look like a change; the
//   desired JSON arrives composed from per-VIP fragments, never re-serialised here.
// - PUT carries the resourceVersion it read: a 409 (someone wrote in between) re-reads
//   and tries again; 404 on update creates; 409 on create updates.
// - Each write that changes a VIP's entries on a node records the generation it landed
//   in: a VIP is programmed on that node once the agent reports observedGeneration at
//   least that (lbvip-controller reads this ledger).
import type { Logger } from '../shared/logging.ts';
import type { BalancerNode } from './api.ts';
import { rememberSpec, specKnowledge } from './balancernode-cache.ts';
import type { PlacedNode } from './compute/nodes.ts';
import { nodeView } from './compute/programmed.ts';
import type { Informer } from '../shared/kube/informer.ts';
import { API_VERSION, MANAGED_BY, RESOURCES } from './kinds.ts';
import type { OwnerReference } from './kinds.ts';
import { topLevelFields } from './json-scan.ts';
import { resourcePath, withoutManagedFields } from '../shared/kube/client.ts';
import { isApiError } from '../shared/kube/errors.ts';
import type { KubeClient } from '../shared/kube/client.ts';
import type { WriteOutcome } from './reasons.ts';

export interface NodeRef {
  name: string;
  uid?: string | undefined;
}

export interface WriteResult {
  outcome: 'created' | 'updated' | 'unchanged';
  generation: number;
  object: BalancerNode;
}

export interface WriterOptions {
  client: KubeClient;
  cache: Informer<BalancerNode>;
  log: Logger;
  onWrite?: (outcome: WriteOutcome) => void;
  /** Conflict retries per write before giving up (the queue then backs off). */
  maxConflictRetries?: number;
}

/** The canonical JSON of an object's operator-owned spec (empty when unknown: never equal). */
export function specJson(obj: BalancerNode): Buffer {
  return specKnowledge(obj).json;
}

function ownerRefs(node: NodeRef): OwnerReference[] | undefined {
  // The Node owns its BalancerNode: the garbage collector removes it with the Node even
  // when no operator runs.
  return node.uid === undefined ? undefined : [{ apiVersion: 'v1', kind: 'Node', name: node.name, uid: node.uid, blockOwnerDeletion: false }];
}

const CLOSE = Buffer.from('}');

/** `{"apiVersion":…,"kind":…,"metadata":…,"spec":<spec JSON>}` in parts, the spec not copied. */
function objectJson(metadata: BalancerNode['metadata'], spec: Buffer): Buffer[] {
  const head = JSON.stringify({ apiVersion: API_VERSION, kind: 'BalancerNode', metadata });
  return [Buffer.from(`${head.slice(0, -1)},"spec":`), spec, CLOSE];
}

export class BalancerNodeWriter {
  private readonly options: WriterOptions;
  /** Our last successful write per node, and the resourceVersion it replaced. */
  private readonly written = new Map<string, { fromRv: string | undefined; object: BalancerNode }>();
  private readonly ledger = new Map<string, Map<string, number>>();

  constructor(options: WriterOptions) {
    this.options = options;
  }

  /** The generation of `node` that first carried the current entries of `vip`, if this process wrote it. */
  vipGeneration(node: string, vip: string): number | undefined {
    return this.ledger.get(node)?.get(vip);
  }

  /** Whether `obj` is the object our last write produced (its watch event coming back). */
  isOwnWrite(obj: BalancerNode): boolean {
    return this.written.get(obj.metadata.name)?.object.metadata.resourceVersion === obj.metadata.resourceVersion;
  }

  /** The freshest copy of a BalancerNode known to this process. */
  latest(name: string): BalancerNode | undefined {
    const current = this.options.cache.get(name);
    const known = this.written.get(name);
    if (known === undefined) return current;
    if (current === undefined) return known.fromRv === undefined ? known.object : undefined;
    const rv = current.metadata.resourceVersion;
    return rv === known.fromRv || rv === known.object.metadata.resourceVersion ? known.object : current;
  }

  async apply(node: NodeRef, desired: PlacedNode): Promise<WriteResult> {
    const refs = ownerRefs(node);
    let base = this.latest(node.name);
    const maxRetries = this.options.maxConflictRetries ?? 5;
    const path = resourcePath(RESOURCES.balancerNodes);
    for (let attempt = 0; ; attempt++) {
      if (base !== undefined && specJson(base).equals(desired.json) && ownersMatch(base, refs)) {
        this.options.onWrite?.('unchanged');
        return { outcome: 'unchanged', generation: base.metadata.generation ?? 0, object: base };
      }
      try {
        let result: BalancerNode;
        let outcome: 'created' | 'updated';
        if (base === undefined) {
          const metadata = { name: node.name, labels: { ...MANAGED_BY }, ...(refs !== undefined ? { ownerReferences: refs } : {}) };
          result = answer(await this.options.client.requestBytes('POST', path, { rawBody: objectJson(metadata, desired.json) }));
          outcome = 'created';
        } else {
          // managedFields never go back to the server (kube.ts withoutManagedFields).
          const { managedFields: _managed, ...kept } = base.metadata;
          const metadata = { ...kept, ...(refs !== undefined ? { ownerReferences: refs } : {}) };
          result = answer(await this.options.client.requestBytes('PUT', `${path}/${encodeURIComponent(node.name)}`, { rawBody: objectJson(metadata, desired.json) }));
          outcome = 'updated';
        }
        this.record(node.name, base, result, desired);
        this.options.onWrite?.(outcome);
        return { outcome, generation: result.metadata.generation ?? 0, object: result };
      } catch (err) {
        const retryable = isApiError(err, 409) || (base !== undefined && isApiError(err, 404));
        if (!retryable || attempt >= maxRetries) throw err;
        // Re-read the object as it is now and decide again.
        try {
          base = await this.options.client.get<BalancerNode>(RESOURCES.balancerNodes, node.name);
        } catch (getErr) {
          if (!isApiError(getErr, 404)) throw getErr;
          base = undefined;
        }
        this.options.log.info({ node: node.name, attempt: attempt + 1, reason: isApiError(err, 409) ? 'Conflict' : 'NotFound' }, 'BalancerNode write raced; re-read and retrying');
      }
    }
  }

  async remove(name: string): Promise<'deleted' | 'absent'> {
    this.written.delete(name);
    this.ledger.delete(name);
    if (this.options.cache.get(name) === undefined) {
      this.options.onWrite?.('absent');
      return 'absent';
    }
    try {
      await this.options.client.delete(RESOURCES.balancerNodes, name);
      this.options.onWrite?.('deleted');
      return 'deleted';
    } catch (err) {
      if (isApiError(err, 404)) {
        this.options.onWrite?.('absent');
        return 'absent';
      }
      throw err;
    }
  }

  /** Forgets per-process memory (after losing leadership: another writer may take over). */
  reset(): void {
    this.written.clear();
    this.ledger.clear();
  }

  private record(name: string, base: BalancerNode | undefined, result: BalancerNode, desired: PlacedNode): void {
    // The server stores our spec as sent: what we know of it need not be derived again
    // (the answer object carries no spec; everything reads it through specKnowledge).
    rememberSpec(result, { json: desired.json, keys: desired.keys, entries: desired.entries });
    this.written.set(name, { fromRv: base?.metadata.resourceVersion, object: result });
    const generation = result.metadata.generation ?? 0;
    const before = base !== undefined ? nodeView(base) : undefined;
    const ledger = this.ledger.get(name) ?? new Map<string, number>();
    for (const vip of ledger.keys()) if (!desired.entries.has(vip)) ledger.delete(vip);
    for (const [vip, json] of desired.entries) {
      const unchanged = before?.entries.get(vip) === json;
      // Unchanged entries keep the generation they arrived in; if this process never
      // wrote them, the base's generation already carried them.
      if (!unchanged) ledger.set(vip, generation);
      else if (!ledger.has(vip)) ledger.set(vip, before!.generation);
    }
    this.ledger.set(name, ledger);
    this.options.log.debug({ node: name, generation, vips: desired.spec.vips.length, decap: desired.spec.decap.length }, 'BalancerNode written');
  }
}

/**
 * The server's answer to a write, without its spec: the spec is what we sent (its JSON
 * and index are seeded from `desired`), and not building half a megabyte of objects per
 * write is most of the operator's garbage at scale.
 */
function answer(bytes: Buffer): BalancerNode {
  const fields = withoutManagedFields(topLevelFields(bytes, ['metadata', 'status']));
  return {
    apiVersion: API_VERSION, kind: 'BalancerNode',
    metadata: fields['metadata'] as BalancerNode['metadata'],
    ...(fields['status'] !== undefined ? { status: fields['status'] as BalancerNode['status'] } : {}),
  };
}

function ownersMatch(obj: BalancerNode, refs: OwnerReference[] | undefined): boolean {
  if (refs === undefined) return true;
  const have = obj.metadata.ownerReferences ?? [];
  return refs.every((r) => have.some((h) => h.uid === r.uid && h.kind === r.kind));
}
