// The catalog of served resource types: built-ins at start-up, custom resources as their CRDs
// are established. Routing, discovery, OpenAPI and the garbage collector all resolve types
// through it, so a CRD's removal stops serving its resource everywhere at once.

import type { ResourceType } from './types.ts';

export class ResourceCatalog {
  private readonly byPath = new Map<string, ResourceType>();
  private readonly listeners = new Set<() => void>();
  /** Bumped on every change; discovery and OpenAPI documents cache against it. */
  generation = 0;

  private static pathKey(group: string, version: string, resource: string): string {
    return `${group}/${version}/${resource}`;
  }

  add(rt: ResourceType): void {
    this.byPath.set(ResourceCatalog.pathKey(rt.group, rt.version, rt.resource), rt);
    this.changed();
  }

  remove(group: string, version: string, resource: string): void {
    if (this.byPath.delete(ResourceCatalog.pathKey(group, version, resource))) this.changed();
  }

  /** Replaces all versions of one group/resource atomically (a CRD update). */
  replaceVersions(group: string, resource: string, types: ResourceType[]): void {
    for (const [key, rt] of this.byPath) {
      if (rt.group === group && rt.resource === resource) this.byPath.delete(key);
    }
    for (const rt of types) this.byPath.set(ResourceCatalog.pathKey(rt.group, rt.version, rt.resource), rt);
    this.changed();
  }

  get(group: string, version: string, resource: string): ResourceType | undefined {
    return this.byPath.get(ResourceCatalog.pathKey(group, version, resource));
  }

  /** Resolves an apiVersion + kind (owner references, involvedObject) to a served type. */
  byKind(apiVersion: string, kind: string): ResourceType | undefined {
    const slash = apiVersion.indexOf('/');
    const group = slash >= 0 ? apiVersion.slice(0, slash) : '';
    const version = slash >= 0 ? apiVersion.slice(slash + 1) : apiVersion;
    for (const rt of this.byPath.values()) {
      if (rt.group === group && rt.version === version && rt.kind === kind) return rt;
    }
    return undefined;
  }

  /** Any served version of a group/resource whose storage is `storageKey`. */
  byStorageKey(storageKey: string): ResourceType | undefined {
    for (const rt of this.byPath.values()) {
      if (rt.storageKey === storageKey && rt.storageVersion === groupVersionOf(rt)) return rt;
    }
    for (const rt of this.byPath.values()) if (rt.storageKey === storageKey) return rt;
    return undefined;
  }

  all(): ResourceType[] {
    return [...this.byPath.values()];
  }

  /** Group → versions, in registration order (the first is the preferred version). */
  groups(): Map<string, string[]> {
    const groups = new Map<string, string[]>();
    for (const rt of this.byPath.values()) {
      const versions = groups.get(rt.group) ?? [];
      if (!versions.includes(rt.version)) versions.push(rt.version);
      groups.set(rt.group, versions);
    }
    return groups;
  }

  inGroupVersion(group: string, version: string): ResourceType[] {
    return [...this.byPath.values()].filter((rt) => rt.group === group && rt.version === version);
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    this.generation++;
    for (const l of this.listeners) l();
  }
}

export function groupVersionOf(rt: Pick<ResourceType, 'group' | 'version'>): string {
  return rt.group === '' ? rt.version : `${rt.group}/${rt.version}`;
}
