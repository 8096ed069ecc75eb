// Writes as JSON merge patches (RFC 7386) with a resourceVersion precondition, never a
// PUT of a cached copy. The informer's copies are not the server's objects: they drop
// managedFields and kubectl's last-applied-configuration annotation (informer.ts
// stripObject), so a PUT of one would delete that annotation and break `kubectl apply`'s
// three-way merge, and a PUT of a whole object rewrites fields other clients own. A merge
// patch sends only what changes; metadata.resourceVersion in it makes kube-apiserver
// answer 409 Conflict when the object changed since it was read (a JSON patch `test` op
// would fail with 422 Invalid, indistinguishable from a malformed patch), and the work
// queue retries from the fresh copy.

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * The merge patch that turns `current` into `desired`: changed members as they are
 * desired, removed members as null, objects recursively; arrays and scalars whole.
 * Undefined members count as absent. Equal inputs give {}.
 */
export function mergePatchTo(current: unknown, desired: unknown): Record<string, Json> {
  const out: Record<string, Json> = {};
  const cur = isObject(current) ? current : {};
  const want = isObject(desired) ? desired : {};
  for (const key of Object.keys(cur)) {
    if (cur[key] !== undefined && want[key] === undefined) out[key] = null;
  }
  for (const [key, value] of Object.entries(want)) {
    if (value === undefined) continue;
    const before = cur[key];
    if (isObject(value) && isObject(before)) {
      const inner = mergePatchTo(before, value);
      if (Object.keys(inner).length > 0) out[key] = inner;
    } else if (JSON.stringify(before) !== JSON.stringify(value)) {
      out[key] = JSON.parse(JSON.stringify(value)) as Json;
    }
  }
  return out;
}

/** `patch` guarded by the resourceVersion it was computed from. */
export function withResourceVersion(resourceVersion: string | undefined, patch: Record<string, unknown>): Record<string, unknown> {
  const metadata = isObject(patch['metadata']) ? patch['metadata'] : {};
  return resourceVersion === undefined ? patch : { ...patch, metadata: { ...metadata, resourceVersion } };
}

/** Adds (`present` true) or removes a finalizer: the patch, or undefined when nothing changes. */
export function finalizerPatch(meta: { finalizers?: string[] | undefined; resourceVersion?: string | undefined }, finalizer: string, present: boolean): Record<string, unknown> | undefined {
  const have = meta.finalizers ?? [];
  if (have.includes(finalizer) === present) return undefined;
  const finalizers = present ? [...have, finalizer] : have.filter((f) => f !== finalizer);
  // The list is replaced whole (merge patches cannot edit arrays), which the
  // resourceVersion makes safe: a finalizer another client added meanwhile means 409.
  return withResourceVersion(meta.resourceVersion, { metadata: { finalizers: finalizers.length > 0 ? finalizers : null } });
}
