// The namespace controller: a deleted namespace (Terminating, held by its `kubernetes`
// spec finalizer) has all its content deleted — objects with finalizers stay until their
// controllers release them — and is finalized once nothing is left in it.

import type { Logger } from 'pino';
import { clone, isObject } from './meta.ts';
import type { ResourceCatalog } from './resources.ts';
import type { RestStorage } from './rest.ts';
import { DEFAULT_WRITE_OPTIONS } from './rest.ts';
import { ApiError } from './status.ts';
import type { Store, StoredEvent } from './store.ts';
import type { JsonObject, ResourceType } from './types.ts';

const NAMESPACE_FINALIZER = 'kubernetes';

export class NamespaceController {
  private readonly store: Store;
  private readonly catalog: ResourceCatalog;
  private readonly rest: RestStorage;
  private readonly log: Logger;
  private readonly pending = new Set<string>();
  private scheduled = false;
  private unsubscribe: (() => void) | undefined;

  constructor(store: Store, catalog: ResourceCatalog, rest: RestStorage, log: Logger) {
    this.store = store;
    this.catalog = catalog;
    this.rest = rest;
    this.log = log;
  }

  start(): void {
    this.unsubscribe = this.store.subscribeAll((e) => this.observe(e));
  }

  stop(): void {
    this.unsubscribe?.();
  }

  private namespaceType(): ResourceType | undefined {
    return this.catalog.get('', 'v1', 'namespaces');
  }

  private isTerminating(name: string): boolean {
    const nsType = this.namespaceType();
    const ns = nsType === undefined ? undefined : this.store.get(nsType.storageKey, name);
    return ns?.metadata.deletionTimestamp !== undefined;
  }

  private observe(event: StoredEvent): void {
    if (event.storageKey === 'core/namespaces') {
      if (event.type !== 'DELETED' && event.object.metadata.deletionTimestamp !== undefined) this.enqueue(event.object.metadata.name ?? '');
      return;
    }
    // Content of a terminating namespace changed (typically: deleted); look again.
    const ns = event.object.metadata.namespace;
    if (ns !== undefined && this.isTerminating(ns)) this.enqueue(ns);
  }

  private enqueue(name: string): void {
    this.pending.add(name);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const names = [...this.pending];
      this.pending.clear();
      for (const n of names) {
        try {
          this.reconcile(n);
        } catch (err) {
          if (!(err instanceof ApiError && (err.code === 404 || err.code === 409))) this.log.warn({ err, namespace: n }, 'namespace controller failed');
        }
      }
    });
  }

  private reconcile(name: string): void {
    const nsType = this.namespaceType();
    if (nsType === undefined) return;
    const ns = this.store.get(nsType.storageKey, name);
    if (ns === undefined || ns.metadata.deletionTimestamp === undefined) return;
    let remaining = 0;
    const seenStorage = new Set<string>();
    for (const rt of this.catalog.all()) {
      if (!rt.namespaced || seenStorage.has(rt.storageKey)) continue;
      seenStorage.add(rt.storageKey);
      for (const obj of this.store.list(rt.storageKey, name)) {
        remaining++;
        if (obj.metadata.deletionTimestamp !== undefined) continue;
        try {
          this.rest.delete(this.storageType(rt), name, obj.metadata.name ?? '', { propagationPolicy: 'Background' });
        } catch (err) {
          if (!(err instanceof ApiError && err.code === 404)) throw err;
        }
      }
    }
    if (remaining > 0) return; // deletions (and finalizers) will bring us back here
    const spec = isObject(ns['spec']) ? (ns['spec'] as JsonObject) : {};
    const finalizers = Array.isArray(spec['finalizers']) ? (spec['finalizers'] as string[]) : [];
    if (!finalizers.includes(NAMESPACE_FINALIZER)) return;
    const next = clone(ns);
    next['spec'] = { ...spec, finalizers: finalizers.filter((f) => f !== NAMESPACE_FINALIZER) };
    this.rest.update(nsType, undefined, name, next, DEFAULT_WRITE_OPTIONS, 'finalize');
  }

  /** The type whose external form is the storage form, so deletes need no conversion. */
  private storageType(rt: ResourceType): ResourceType {
    return this.catalog.byStorageKey(rt.storageKey) ?? rt;
  }
}
