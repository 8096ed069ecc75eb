// The garbage collector (kube-controller-manager's garbagecollector, reduced to its
// observable behaviour):
//
// - background: a dependent whose ownerReferences all point at owners that no longer exist
//   (absent, or present with another uid) is deleted; one that still has a live owner just
//   loses the dangling references;
// - foreground: an owner carrying the foregroundDeletion finalizer has its dependents deleted
//   and keeps the finalizer until no dependent with blockOwnerDeletion=true remains;
// - orphan: an owner carrying the orphan finalizer has itself removed from its dependents'
//   ownerReferences, then the finalizer is dropped.
//
// Like the real controller it acts asynchronously after the triggering write.

import type { Logger } from 'pino';
import { clone, objectKey } from './meta.ts';
import type { ResourceCatalog } from './resources.ts';
import type { RestStorage } from './rest.ts';
import { DEFAULT_WRITE_OPTIONS, FINALIZER_FOREGROUND, FINALIZER_ORPHAN } from './rest.ts';
import { ApiError } from './status.ts';
import type { Store, StoredEvent } from './store.ts';
import type { KubeObject, OwnerReference, ResourceType } from './types.ts';

interface ObjectRef {
  storageKey: string;
  namespace: string | undefined;
  name: string;
  uid: string;
}

type OwnerState = 'solid' | 'dangling' | 'waiting' | 'unresolvable';

export class GarbageCollector {
  private readonly store: Store;
  private readonly catalog: ResourceCatalog;
  private readonly rest: RestStorage;
  private readonly log: Logger;
  /** owner uid → dependents (by uid) that reference it. */
  private readonly dependents = new Map<string, Map<string, ObjectRef>>();
  private readonly dependentQueue = new Map<string, ObjectRef>();
  private readonly ownerQueue = new Map<string, ObjectRef>();
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

  /** Number of owner uids with known dependents (exposed for tests and metrics). */
  get trackedOwners(): number {
    return this.dependents.size;
  }

  private refOf(obj: KubeObject, storageKey: string): ObjectRef {
    return { storageKey, namespace: obj.metadata.namespace, name: obj.metadata.name ?? '', uid: obj.metadata.uid ?? '' };
  }

  private observe(event: StoredEvent): void {
    const obj = event.object;
    const ref = this.refOf(obj, event.storageKey);
    for (const owner of event.previous?.metadata.ownerReferences ?? []) {
      const deps = this.dependents.get(owner.uid);
      deps?.delete(ref.uid);
      if (deps?.size === 0) this.dependents.delete(owner.uid);
    }
    if (event.type === 'DELETED') {
      // The dependents of a deleted object need a look; so do owners waiting on this one.
      for (const dep of this.dependents.get(ref.uid)?.values() ?? []) this.dependentQueue.set(dep.uid, dep);
      for (const owner of obj.metadata.ownerReferences ?? []) this.enqueueOwnerByUid(owner, ref.namespace);
    } else {
      const owners = obj.metadata.ownerReferences ?? [];
      for (const owner of owners) {
        let deps = this.dependents.get(owner.uid);
        if (deps === undefined) {
          deps = new Map();
          this.dependents.set(owner.uid, deps);
        }
        deps.set(ref.uid, ref);
      }
      if (owners.length > 0 && obj.metadata.deletionTimestamp === undefined) this.dependentQueue.set(ref.uid, ref);
      const finalizers = obj.metadata.finalizers ?? [];
      if (obj.metadata.deletionTimestamp !== undefined && (finalizers.includes(FINALIZER_FOREGROUND) || finalizers.includes(FINALIZER_ORPHAN))) {
        this.ownerQueue.set(ref.uid, ref);
      }
    }
    this.schedule();
  }

  private enqueueOwnerByUid(owner: OwnerReference, dependentNamespace: string | undefined): void {
    const rt = this.catalog.byKind(owner.apiVersion, owner.kind);
    if (rt === undefined) return;
    const ns = rt.namespaced ? dependentNamespace : undefined;
    this.ownerQueue.set(owner.uid, { storageKey: rt.storageKey, namespace: ns, name: owner.name, uid: owner.uid });
  }

  private schedule(): void {
    if (this.scheduled || (this.dependentQueue.size === 0 && this.ownerQueue.size === 0)) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.drain();
    });
  }

  private drain(): void {
    const dependents = [...this.dependentQueue.values()];
    const owners = [...this.ownerQueue.values()];
    this.dependentQueue.clear();
    this.ownerQueue.clear();
    for (const ref of owners) this.guard(() => this.processOwner(ref));
    for (const ref of dependents) this.guard(() => this.processDependent(ref));
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      // 404/409: the object changed under us; the write that changed it re-queues it.
      if (err instanceof ApiError && (err.code === 404 || err.code === 409)) return;
      this.log.warn({ err }, 'garbage collector: action failed');
    }
  }

  private typeOf(storageKey: string): ResourceType | undefined {
    return this.catalog.byStorageKey(storageKey);
  }

  private current(ref: ObjectRef): KubeObject | undefined {
    const obj = this.store.get(ref.storageKey, objectKey(ref.namespace, ref.name));
    return obj !== undefined && obj.metadata.uid === ref.uid ? obj : undefined;
  }

  private ownerState(owner: OwnerReference, dependentNamespace: string | undefined): OwnerState {
    const rt = this.catalog.byKind(owner.apiVersion, owner.kind);
    if (rt === undefined) return 'unresolvable';
    if (rt.namespaced && dependentNamespace === undefined) return 'unresolvable';
    const obj = this.store.get(rt.storageKey, objectKey(rt.namespaced ? dependentNamespace : undefined, owner.name));
    if (obj === undefined || obj.metadata.uid !== owner.uid) return 'dangling';
    if (obj.metadata.deletionTimestamp !== undefined && (obj.metadata.finalizers ?? []).includes(FINALIZER_FOREGROUND)) return 'waiting';
    return 'solid';
  }

  private processDependent(ref: ObjectRef): void {
    const obj = this.current(ref);
    if (obj === undefined || obj.metadata.deletionTimestamp !== undefined) return;
    const rt = this.typeOf(ref.storageKey);
    if (rt === undefined) return;
    const owners = obj.metadata.ownerReferences ?? [];
    if (owners.length === 0) return;
    const states = owners.map((o) => this.ownerState(o, obj.metadata.namespace));
    const solid = states.filter((s) => s === 'solid' || s === 'unresolvable').length;
    const dangling = states.filter((s) => s === 'dangling').length;
    const waiting = states.filter((s) => s === 'waiting').length;
    if (solid > 0) {
      if (dangling === 0 && waiting === 0) return;
      // Keep the object for its live owners; forget the dead ones and stop blocking the
      // owners that wait for their dependents.
      const next = clone(obj);
      next.metadata.ownerReferences = owners
        .filter((_, i) => states[i] !== 'dangling')
        .map((o, i) => (states[i] === 'waiting' ? { ...o, blockOwnerDeletion: false } : o));
      this.rest.applyUpdate(rt, objectKey(ref.namespace, ref.name), obj, next, DEFAULT_WRITE_OPTIONS);
      return;
    }
    const hasDependents = (this.dependents.get(ref.uid)?.size ?? 0) > 0;
    const policy = waiting > 0 && hasDependents ? 'Foreground' : 'Background';
    this.log.debug({ name: ref.name, storage: ref.storageKey, policy }, 'garbage collector: deleting dependent');
    this.rest.delete(rt, ref.namespace, ref.name, { propagationPolicy: policy, preconditions: { uid: ref.uid } });
  }

  private processOwner(ref: ObjectRef): void {
    const owner = this.current(ref);
    if (owner === undefined || owner.metadata.deletionTimestamp === undefined) return;
    const rt = this.typeOf(ref.storageKey);
    if (rt === undefined) return;
    const finalizers = owner.metadata.finalizers ?? [];
    const deps = [...(this.dependents.get(ref.uid)?.values() ?? [])];
    if (finalizers.includes(FINALIZER_ORPHAN)) {
      for (const dep of deps) {
        const depObj = this.current(dep);
        const depType = this.typeOf(dep.storageKey);
        if (depObj === undefined || depType === undefined) continue;
        const next = clone(depObj);
        next.metadata.ownerReferences = (next.metadata.ownerReferences ?? []).filter((o) => o.uid !== ref.uid);
        if (next.metadata.ownerReferences.length === 0) delete next.metadata.ownerReferences;
        this.guard(() => this.rest.applyUpdate(depType, objectKey(dep.namespace, dep.name), depObj, next, DEFAULT_WRITE_OPTIONS));
      }
      this.removeFinalizer(rt, ref, FINALIZER_ORPHAN);
      return;
    }
    if (finalizers.includes(FINALIZER_FOREGROUND)) {
      let blocking = 0;
      for (const dep of deps) {
        const depObj = this.current(dep);
        const depType = this.typeOf(dep.storageKey);
        if (depObj === undefined || depType === undefined) continue;
        const refToOwner = (depObj.metadata.ownerReferences ?? []).find((o) => o.uid === ref.uid);
        if (refToOwner?.blockOwnerDeletion === true) blocking++;
        if (depObj.metadata.deletionTimestamp === undefined) {
          this.queueDependentDeletion(dep);
        }
      }
      if (blocking === 0) this.removeFinalizer(rt, ref, FINALIZER_FOREGROUND);
    }
  }

  /** Foreground owners' dependents go through the dependent path, which sees them waiting. */
  private queueDependentDeletion(dep: ObjectRef): void {
    this.dependentQueue.set(dep.uid, dep);
    this.schedule();
  }

  private removeFinalizer(rt: ResourceType, ref: ObjectRef, finalizer: string): void {
    const obj = this.current(ref);
    if (obj === undefined || !(obj.metadata.finalizers ?? []).includes(finalizer)) return;
    const next = clone(obj);
    next.metadata.finalizers = (next.metadata.finalizers ?? []).filter((f) => f !== finalizer);
    this.rest.applyUpdate(rt, objectKey(ref.namespace, ref.name), obj, next, DEFAULT_WRITE_OPTIONS);
  }
}
