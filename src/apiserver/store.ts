// Versioned object storage, standing in for etcd plus the watch cache.
//
// One global revision counter stamps every write (as etcd's revision does), so resourceVersions
// are comparable across resources. Each storage table keeps a bounded history of its own
// events; a watch or an exact-version list from a resourceVersion older than that window is
// answered with 410 Expired, which is what makes informers re-list. Tables keep their own
// windows so a busy resource cannot expire a quiet one's watchers, as the per-resource watch
// cache behaves.

import { keyOf } from './meta.ts';
import type { KubeObject } from './types.ts';

export type StoredEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoredEvent {
  readonly type: StoredEventType;
  readonly revision: number;
  readonly storageKey: string;
  /** The object after the change (for DELETED: the last state, stamped with the delete revision). */
  readonly object: KubeObject;
  /** The object before the change (undefined for ADDED). */
  readonly previous: KubeObject | undefined;
}

export type StoreListener = (event: StoredEvent) => void;

interface Table {
  readonly objects: Map<string, KubeObject>;
  readonly history: StoredEvent[];
  /** Every event with revision > floor is still in `history`; older ones are gone. */
  floor: number;
  readonly listeners: Set<StoreListener>;
}

export interface StoreOptions {
  /** Events retained per table for watch resumption (the watch cache size). */
  historyLimit: number;
}

export class Store {
  private revision = 0;
  private readonly tables = new Map<string, Table>();
  private readonly globalListeners = new Set<StoreListener>();
  private readonly droppedFloors = new Map<string, number>();
  private readonly historyLimit: number;

  constructor(options: StoreOptions) {
    this.historyLimit = Math.max(1, options.historyLimit);
  }

  get currentRevision(): number {
    return this.revision;
  }

  private table(storageKey: string): Table {
    let t = this.tables.get(storageKey);
    if (t === undefined) {
      // A new table has seen every event that ever concerned it, so any revision is a valid
      // start — unless an earlier table of the same name was dropped (a CRD deleted and
      // re-created): that table's events are gone, so revisions before the drop are expired.
      t = { objects: new Map(), history: [], floor: this.droppedFloors.get(storageKey) ?? 0, listeners: new Set() };
      this.tables.set(storageKey, t);
    }
    return t;
  }

  get(storageKey: string, key: string): KubeObject | undefined {
    return this.tables.get(storageKey)?.objects.get(key);
  }

  size(storageKey: string): number {
    return this.tables.get(storageKey)?.objects.size ?? 0;
  }

  /** Current objects, ordered by key as etcd ranges return them. `namespace` restricts the
   *  scan to one namespace's prefix. */
  list(storageKey: string, namespace?: string): KubeObject[] {
    const t = this.tables.get(storageKey);
    if (t === undefined) return [];
    const out: KubeObject[] = [];
    if (namespace === undefined) {
      for (const obj of t.objects.values()) out.push(obj);
    } else {
      for (const obj of t.objects.values()) if (obj.metadata.namespace === namespace) out.push(obj);
    }
    return sortByKey(out);
  }

  /** The table as it was at `revision`, rebuilt by undoing newer events; 'expired' when the
   *  history no longer reaches back that far. */
  snapshotAt(storageKey: string, revision: number, namespace?: string): KubeObject[] | 'expired' {
    const t = this.table(storageKey);
    if (revision >= this.revision) return this.list(storageKey, namespace);
    if (revision < t.floor) return 'expired';
    const state = new Map(t.objects);
    for (let i = t.history.length - 1; i >= 0; i--) {
      const e = t.history[i];
      if (e === undefined || e.revision <= revision) break;
      const key = keyOf(e.object);
      if (e.previous === undefined) state.delete(key);
      else state.set(key, e.previous);
    }
    const out: KubeObject[] = [];
    for (const obj of state.values()) {
      if (namespace === undefined || obj.metadata.namespace === namespace) out.push(obj);
    }
    return sortByKey(out);
  }

  /**
   * Writes `next` under `key` (or removes the key when `next` is undefined), stamping the next
   * revision into its metadata.resourceVersion. The caller hands over ownership of `next`: it
   * must not be mutated afterwards. Listeners run synchronously, before this returns, so a
   * watcher registered in the same tick never misses or duplicates an event.
   */
  commit(storageKey: string, key: string, next: KubeObject | undefined): StoredEvent {
    const t = this.table(storageKey);
    const previous = t.objects.get(key);
    if (next === undefined && previous === undefined) {
      throw new Error(`store: delete of absent key ${storageKey}/${key}`);
    }
    const revision = ++this.revision;
    let type: StoredEventType;
    let object: KubeObject;
    if (next === undefined) {
      type = 'DELETED';
      object = { ...previous!, metadata: { ...previous!.metadata, resourceVersion: String(revision) } };
      t.objects.delete(key);
    } else {
      type = previous === undefined ? 'ADDED' : 'MODIFIED';
      next.metadata.resourceVersion = String(revision);
      object = next;
      t.objects.set(key, next);
    }
    const event: StoredEvent = { type, revision, storageKey, object, previous };
    t.history.push(event);
    if (t.history.length > this.historyLimit) {
      const evicted = t.history.splice(0, t.history.length - this.historyLimit);
      const last = evicted[evicted.length - 1];
      if (last !== undefined) t.floor = last.revision;
    }
    for (const listener of t.listeners) listener(event);
    for (const listener of this.globalListeners) listener(event);
    return event;
  }

  /** Events of a table after `revision`, or 'expired' when the window has moved past it. */
  eventsSince(storageKey: string, revision: number): StoredEvent[] | 'expired' {
    const t = this.table(storageKey);
    if (revision < t.floor) return 'expired';
    // History is ordered by revision: binary search for the first newer event.
    let lo = 0;
    let hi = t.history.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((t.history[mid]?.revision ?? 0) <= revision) lo = mid + 1;
      else hi = mid;
    }
    return t.history.slice(lo);
  }

  /** The oldest revision a watch on this table may still start from. */
  oldestResumable(storageKey: string): number {
    return this.table(storageKey).floor;
  }

  subscribe(storageKey: string, listener: StoreListener): () => void {
    const t = this.table(storageKey);
    t.listeners.add(listener);
    return () => t.listeners.delete(listener);
  }

  subscribeAll(listener: StoreListener): () => void {
    this.globalListeners.add(listener);
    return () => this.globalListeners.delete(listener);
  }

  /** Forgets all history, as an etcd compaction at the current revision followed by a watch
   *  cache re-initialisation would: every older resourceVersion becomes 410 Expired. */
  compact(): void {
    for (const t of this.tables.values()) {
      t.history.length = 0;
      t.floor = this.revision;
    }
  }

  /** Removes a table with all its objects, without events (CRD removal after cleanup). */
  dropTable(storageKey: string): void {
    const t = this.tables.get(storageKey);
    if (t === undefined) return;
    if (t.objects.size > 0) throw new Error(`store: dropping non-empty table ${storageKey}`);
    this.tables.delete(storageKey);
    this.droppedFloors.set(storageKey, this.revision);
  }
}

function sortByKey(objects: KubeObject[]): KubeObject[] {
  return objects.sort((a, b) => {
    const ka = keyOf(a);
    const kb = keyOf(b);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
}
