// Watch streams: newline-delimited JSON watch events over a chunked HTTP response, served
// from the store's per-table history and live commits, with the watch cache's semantics:
//
// - no resourceVersion (or "0"): synthetic ADDED events for the current state, then changes;
// - resourceVersion N: every change after N, or an ERROR event carrying a 410 Expired Status
//   when N is older than the retained history (informers then re-list);
// - sendInitialEvents=true: the current state, then a BOOKMARK annotated
//   k8s.io/initial-events-end (the streaming-list protocol);
// - selectors filter with transitions: an object that stops matching is reported DELETED and
//   one that starts matching ADDED, so a filtered cache stays exact;
// - BOOKMARK events when allowWatchBookmarks is set; timeoutSeconds ends the stream.

import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { RestStorage } from './rest.ts';
import { ApiError, expired } from './status.ts';
import type { StatusObject } from './status.ts';
import type { Store, StoredEvent } from './store.ts';
import { buildTable } from './table.ts';
import type { IncludeObject } from './table.ts';
import type { KubeObject, ResourceType } from './types.ts';
import { groupVersion } from './types.ts';

export interface WatchParams {
  rt: ResourceType;
  namespace: string | undefined;
  labelSelector: string | undefined;
  fieldSelector: string | undefined;
  resourceVersion: string | undefined;
  allowWatchBookmarks: boolean;
  sendInitialEvents: boolean;
  timeoutSeconds: number | undefined;
  /** Set when the client asked for Table output (kubectl get -w). */
  table: { includeObject: IncludeObject } | undefined;
  /** Set when the client asked for PartialObjectMetadata (metadata-only informers). */
  partialMetadata: boolean;
}

export interface WatchOptions {
  bookmarkIntervalMs: number;
  /** Watches without timeoutSeconds last a random time in [min, 2*min), as the apiserver's
   *  --min-request-timeout makes them. */
  minRequestTimeoutSeconds: number;
  /** A watcher that stops reading is cut off once this much output is queued for it. */
  maxBufferedBytes: number;
}

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

interface Watcher {
  readonly storageKey: string;
  readonly res: ServerResponse;
  close(): void;
}

export class WatchHub {
  private readonly store: Store;
  private readonly rest: RestStorage;
  private readonly options: WatchOptions;
  private readonly log: Logger;
  private readonly watchers = new Set<Watcher>();
  /** Serialised events, shared by all watchers of the same version and event type. */
  private readonly encoded = new WeakMap<object, Map<string, string>>();

  constructor(store: Store, rest: RestStorage, options: WatchOptions, log: Logger) {
    this.store = store;
    this.rest = rest;
    this.options = options;
    this.log = log;
  }

  get openCount(): number {
    return this.watchers.size;
  }

  /** Starts a watch on `res`. Errors found before streaming (bad selectors) are thrown so the
   *  caller answers with a plain Status; a too-old resourceVersion is an in-stream ERROR. */
  serve(res: ServerResponse, params: WatchParams): void {
    const { rt } = params;
    const match = this.rest.matcher(rt, params.namespace, params.labelSelector, params.fieldSelector);
    const rvParam = params.resourceVersion ?? '';
    if (rvParam !== '' && !/^\d+$/.test(rvParam)) {
      throw new ApiError(400, 'BadRequest', `invalid resource version: "${rvParam}"`);
    }
    const gv = groupVersion(rt.group, rt.version);

    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders();

    let closed = false;
    let firstTableEvent = true;
    const write = (line: string): void => {
      if (closed) return;
      res.write(line);
      if (res.writableLength > this.options.maxBufferedBytes) {
        this.log.warn({ resource: rt.resource }, 'watch: consumer too slow, closing its stream');
        close();
      }
    };
    const encode = (type: EventType, stored: KubeObject, cacheKey: object | undefined): string => {
      if (params.table !== undefined) {
        const table = buildTable(rt, [this.rest.external(rt, stored)], {
          includeObject: params.table.includeObject, withColumnDefinitions: firstTableEvent,
        }, { resourceVersion: stored.metadata.resourceVersion ?? '' });
        firstTableEvent = false;
        return JSON.stringify({ type, object: table }) + '\n';
      }
      const variant = `${type}|${gv}|${params.partialMetadata ? 'meta' : 'full'}`;
      const cache = cacheKey === undefined ? undefined : this.encoded.get(cacheKey) ?? new Map<string, string>();
      const hit = cache?.get(variant);
      if (hit !== undefined) return hit;
      const external = this.rest.external(rt, stored);
      const object = params.partialMetadata
        ? { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: external.metadata }
        : external;
      const line = JSON.stringify({ type, object }) + '\n';
      if (cache !== undefined && cacheKey !== undefined) {
        cache.set(variant, line);
        this.encoded.set(cacheKey, cache);
      }
      return line;
    };
    const deliver = (event: StoredEvent): void => {
      const nowMatches = match(event.object);
      const wasMatching = event.previous !== undefined && match(event.previous);
      let type: EventType | undefined;
      if (event.type === 'ADDED') type = nowMatches ? 'ADDED' : undefined;
      else if (event.type === 'DELETED') type = wasMatching || nowMatches ? 'DELETED' : undefined;
      else if (nowMatches) type = wasMatching ? 'MODIFIED' : 'ADDED';
      else if (wasMatching) type = 'DELETED';
      if (type !== undefined) write(encode(type, event.object, event));
    };
    const bookmark = (annotations?: Record<string, string>): void => {
      const metadata: Record<string, unknown> = { resourceVersion: String(this.store.currentRevision) };
      if (annotations !== undefined) metadata['annotations'] = annotations;
      write(JSON.stringify({ type: 'BOOKMARK', object: { kind: rt.kind, apiVersion: gv, metadata } }) + '\n');
    };

    const timers: NodeJS.Timeout[] = [];
    let unsubscribe: () => void = () => {};
    const watcher: Watcher = { storageKey: rt.storageKey, res, close: () => close() };
    const close = (): void => {
      if (closed) return;
      closed = true;
      unsubscribe();
      for (const t of timers) clearTimeout(t);
      this.watchers.delete(watcher);
      res.end();
    };
    res.on('close', close);

    // Everything from here to subscribe() runs in one tick: no commit can fall in between,
    // so the stream neither misses nor repeats an event.
    const initialState = rvParam === '' || rvParam === '0' || params.sendInitialEvents;
    if (initialState) {
      for (const obj of this.store.list(rt.storageKey, params.namespace)) {
        if (match(obj)) write(encode('ADDED', obj, obj));
      }
      if (params.sendInitialEvents) bookmark({ 'k8s.io/initial-events-end': 'true' });
    } else {
      const since = this.store.eventsSince(rt.storageKey, Number(rvParam));
      if (since === 'expired') {
        const oldest = this.store.oldestResumable(rt.storageKey);
        const status: StatusObject = expired(`too old resource version: ${rvParam} (${oldest})`).status;
        write(JSON.stringify({ type: 'ERROR', object: status }) + '\n');
        close();
        return;
      }
      for (const event of since) deliver(event);
    }
    unsubscribe = this.store.subscribe(rt.storageKey, deliver);
    this.watchers.add(watcher);

    const timeoutSeconds = params.timeoutSeconds !== undefined && params.timeoutSeconds > 0
      ? params.timeoutSeconds
      : this.options.minRequestTimeoutSeconds * (1 + Math.random());
    timers.push(setTimeout(close, timeoutSeconds * 1000).unref());
    if (params.allowWatchBookmarks && params.table === undefined) {
      const tick = (): void => {
        bookmark();
        timers.push(setTimeout(tick, this.options.bookmarkIntervalMs).unref());
      };
      timers.push(setTimeout(tick, this.options.bookmarkIntervalMs).unref());
    }
  }

  /** An in-stream 410 for a watch that a fault injection told to fail. */
  serveExpired(res: ServerResponse, message: string): void {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
    res.end(JSON.stringify({ type: 'ERROR', object: expired(message).status }) + '\n');
  }

  /** Resets every watch connection (fault injection: a network cut or apiserver restart). */
  breakAll(): number {
    const all = [...this.watchers];
    for (const w of all) {
      w.res.socket?.destroy();
      w.close();
    }
    return all.length;
  }

  /** Ends the watches of one storage table cleanly (its resource stopped being served). */
  closeStorage(storageKey: string): void {
    for (const w of [...this.watchers]) if (w.storageKey === storageKey) w.close();
  }

  closeAll(): void {
    for (const w of [...this.watchers]) w.close();
  }
}
