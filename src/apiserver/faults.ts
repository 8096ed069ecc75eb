// Fault injection and request accounting for tests. Every injected failure takes the exact
// form the real apiserver (or the network) produces, so the code under test meets the same
// errors it would in a cluster:
//
// - breakWatches(): resets every open watch connection;
// - expireNext(): the next list/watch answers 410 Expired (a watch in-stream, like the cache);
// - compactHistory(): all older resourceVersions become 410 Expired;
// - conflictOnNextUpdate(): the next update/patch of an object answers 409 Conflict;
// - injectError(): the next matching requests answer with any Status code;
// - setLatency(): delays matching requests;
// - count()/counts(): requests per verb and resource, to assert "wrote only on change".

import { setTimeout as sleep } from 'node:timers/promises';
import { ApiError } from './status.ts';
import type { StatusReason } from './status.ts';
import type { Store } from './store.ts';
import type { WatchHub } from './watch.ts';

export type Verb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'deletecollection';

export interface RequestInfo {
  verb: Verb;
  group: string;
  resource: string;
  subresource: string | undefined;
  namespace: string | undefined;
  name: string | undefined;
}

/** Matches requests; every field given must equal the request's (resource may be written
 *  `resource.group`, `resource/subresource` or both, as kubectl names them). */
export interface RequestFilter {
  verb?: Verb | Verb[];
  resource?: string;
  group?: string;
  /** `null` matches only requests without a subresource. */
  subresource?: string | null;
  namespace?: string;
  name?: string;
}

export interface RequestCount extends RequestInfo {
  count: number;
}

interface Armed<T> {
  filter: RequestFilter;
  remaining: number;
  payload: T;
}

function splitResource(resource: string): { resource: string; group?: string; subresource?: string } {
  const [main, sub] = resource.split('/', 2) as [string, string | undefined];
  const dot = main.indexOf('.');
  const out: { resource: string; group?: string; subresource?: string } = { resource: dot >= 0 ? main.slice(0, dot) : main };
  if (dot >= 0) out.group = main.slice(dot + 1);
  if (sub !== undefined) out.subresource = sub;
  return out;
}

export function matchesFilter(info: RequestInfo, filter: RequestFilter): boolean {
  if (filter.verb !== undefined) {
    const verbs = Array.isArray(filter.verb) ? filter.verb : [filter.verb];
    if (!verbs.includes(info.verb)) return false;
  }
  if (filter.resource !== undefined) {
    const r = splitResource(filter.resource);
    if (r.resource !== info.resource) return false;
    if (r.group !== undefined && r.group !== info.group) return false;
    if (r.subresource !== undefined && r.subresource !== info.subresource) return false;
  }
  if (filter.group !== undefined && filter.group !== info.group) return false;
  if (filter.subresource === null && info.subresource !== undefined) return false;
  if (typeof filter.subresource === 'string' && filter.subresource !== info.subresource) return false;
  if (filter.namespace !== undefined && filter.namespace !== info.namespace) return false;
  if (filter.name !== undefined && filter.name !== info.name) return false;
  return true;
}

export class Faults {
  private readonly store: Store;
  private readonly watches: WatchHub;
  private readonly counters = new Map<string, RequestCount>();
  private readonly expiries: Armed<null>[] = [];
  private readonly conflicts: Armed<null>[] = [];
  private readonly errors: Armed<{ code: number; reason: StatusReason; message: string }>[] = [];
  private readonly latencies: { filter: RequestFilter; ms: number }[] = [];

  constructor(store: Store, watches: WatchHub) {
    this.store = store;
    this.watches = watches;
  }

  // ------------------------------------------------------------ connection faults

  /** Resets every open watch connection; returns how many were cut. */
  breakWatches(): number {
    return this.watches.breakAll();
  }

  /** The next `count` list or watch requests matching `filter` answer 410 Expired. */
  expireNext(filter: RequestFilter & { verb?: 'list' | 'watch' | ('list' | 'watch')[] } = {}, count = 1): void {
    this.expiries.push({ filter: { verb: ['list', 'watch'], ...filter }, remaining: count, payload: null });
  }

  /** Forgets all event history: watches from any earlier resourceVersion get 410 Expired. */
  compactHistory(): void {
    this.store.compact();
  }

  /** The next `count` update/patch requests (main resource or subresource) of the named
   *  object answer 409 Conflict, as if another writer had raced them. */
  conflictOnNextUpdate(target: { resource: string; name: string; namespace?: string; group?: string; subresource?: string | null }, count = 1): void {
    this.conflicts.push({ filter: { verb: ['update', 'patch'], ...target }, remaining: count, payload: null });
  }

  /** The next `count` requests matching `filter` fail with the given Status. */
  injectError(filter: RequestFilter, status: { code: number; reason?: StatusReason; message?: string }, count = 1): void {
    this.errors.push({
      filter,
      remaining: count,
      payload: {
        code: status.code,
        reason: status.reason ?? defaultReason(status.code),
        message: status.message ?? `injected fault: ${status.code}`,
      },
    });
  }

  /** Adds `ms` of latency to requests matching `filter` (all requests by default). */
  setLatency(ms: number, filter: RequestFilter = {}): void {
    this.latencies.push({ filter, ms });
  }

  clearLatency(): void {
    this.latencies.length = 0;
  }

  /** Disarms every pending fault and clears latency (counts are kept). */
  reset(): void {
    this.expiries.length = 0;
    this.conflicts.length = 0;
    this.errors.length = 0;
    this.latencies.length = 0;
  }

  // ------------------------------------------------------------ accounting

  /** Requests seen that match `filter`. */
  count(filter: RequestFilter = {}): number {
    let total = 0;
    for (const c of this.counters.values()) if (matchesFilter(c, filter)) total += c.count;
    return total;
  }

  counts(): RequestCount[] {
    return [...this.counters.values()].map((c) => ({ ...c }));
  }

  resetCounts(): void {
    this.counters.clear();
  }

  // ------------------------------------------------------------ hooks used by the server

  /** Records the request, applies latency and injected errors. */
  async admit(info: RequestInfo): Promise<void> {
    const key = `${info.verb}|${info.group}|${info.resource}|${info.subresource ?? ''}|${info.namespace ?? ''}|${info.name ?? ''}`;
    const counter = this.counters.get(key);
    if (counter !== undefined) counter.count++;
    else this.counters.set(key, { ...info, count: 1 });

    let delay = 0;
    for (const l of this.latencies) if (matchesFilter(info, l.filter)) delay += l.ms;
    if (delay > 0) await sleep(delay);

    const injected = take(this.errors, info);
    if (injected !== undefined) throw new ApiError(injected.code, injected.reason, injected.message, {});
    if ((info.verb === 'update' || info.verb === 'patch') && take(this.conflicts, info) !== undefined) {
      throw new ApiError(409, 'Conflict',
        `Operation cannot be fulfilled on ${info.group === '' ? info.resource : `${info.resource}.${info.group}`} "${info.name ?? ''}": the object has been modified; please apply your changes to the latest version and try again`,
        { name: info.name ?? '', kind: info.resource, ...(info.group === '' ? {} : { group: info.group }) });
    }
  }

  /** True when this list/watch should answer 410 Expired. */
  takeExpiry(info: RequestInfo): boolean {
    return take(this.expiries, info) !== undefined;
  }
}

function take<T>(armed: Armed<T>[], info: RequestInfo): T | undefined {
  const idx = armed.findIndex((a) => matchesFilter(info, a.filter));
  if (idx < 0) return undefined;
  const entry = armed[idx]!;
  entry.remaining--;
  if (entry.remaining <= 0) armed.splice(idx, 1);
  return entry.payload;
}

function defaultReason(code: number): StatusReason {
  switch (code) {
    case 400: return 'BadRequest';
    case 403: return 'Forbidden';
    case 404: return 'NotFound';
    case 405: return 'MethodNotAllowed';
    case 409: return 'Conflict';
    case 410: return 'Expired';
    case 422: return 'Invalid';
    case 429: return 'TooManyRequests';
    case 503: return 'ServiceUnavailable';
    case 504: return 'Timeout';
    default: return 'InternalError';
  }
}
