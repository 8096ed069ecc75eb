// List-then-watch with a local cache: how the operator reads the cluster, and how the
// agent reads its own BalancerNode (one object, by fieldSelector).
//
// - List first (every page), replace the cache, tell handlers what changed; then watch
//   from the list's resourceVersion.
// - 410 Gone on a watch (in the stream or on the request) → relist at once: the history
//   we would resume from is gone, and only a fresh list can say what changed meanwhile.
//   A list that answers 410 (an expired continue token) is retried with backoff, so a
//   server that keeps answering so is not hammered.
// - Any other failure (connection reset, 5xx, timeout) → restart with jittered
//   exponential backoff, resuming from the last resourceVersion seen. client-node's own
//   informer stops after such errors; this loop owns the restart.
// - A watch the server ends cleanly (its timeout, 5–10 minutes) resumes at once.
// - A connection that died silently is noticed: TCP keepalive on the socket (the
//   client's stream), and an idle limit — a watch that delivers nothing, not even a
//   bookmark (the server sends one about every minute), for idleMs is replaced. Not
//   client-node's Watch, whose 30 s idle abort would reconnect every quiet watch twice
//   a minute.
import type { IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorFields, type Logger } from '../logging.ts';
import { resourcePath, type KubeClient } from './client.ts';
import { KubeApiError, isApiError } from './errors.ts';
import type { KubeObject, ResourceType } from './objects.ts';

export type InformerEventType = 'added' | 'updated' | 'deleted';

export interface InformerEvent<T> {
  type: InformerEventType;
  object: T;
  /** The cached object this one replaces (updated, and deleted when known). */
  old?: T;
  /** A list (a consistent read replacing the cache) or the watch (the next change in order). */
  source: 'list' | 'watch';
}

export type InformerHandler<T> = (event: InformerEvent<T>) => void;

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

export interface InformerOptions<T> {
  client: KubeClient;
  type: ResourceType;
  log: Logger;
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  backoff?: BackoffOptions;
  /** Applied to every object before it is cached (e.g. to drop managedFields). */
  transform?: (obj: T) => T;
  /** Decodes a watch line (UTF-8; default JSON.parse), e.g. to skip parts already known. */
  decode?: (line: Buffer) => { type: string; object: T };
  /** Server-side watch timeout; default random in [300, 600) s per watch. */
  watchTimeoutSeconds?: number;
  /** A watch that delivers nothing (not even a bookmark) for this long is replaced. Default 150 s. */
  idleMs?: number;
  /** Called after every complete list, once its events were handled. */
  onListed?: () => void;
  /** Called on every restart: expired (410, relisting) or error (backing off). */
  onRestart?: (reason: 'expired' | 'error') => void;
}

export interface InformerStats {
  lists: number;
  watches: number;
  relistsAfterGone: number;
  restartsAfterError: number;
  events: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 200, maxMs: 30_000 };
export const DEFAULT_WATCH_IDLE_MS = 150_000;

/** Exponential backoff with jitter: a delay in [d/2, d] where d = min(max, initial·2^attempt). */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxMs, options.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Drops what a controller never reads and a cache should not hold. */
export function stripObject<T extends KubeObject>(obj: T): T {
  if (obj.metadata.managedFields !== undefined) delete obj.metadata.managedFields;
  const ann = obj.metadata.annotations;
  if (ann !== undefined && 'kubectl.kubernetes.io/last-applied-configuration' in ann) {
    delete ann['kubectl.kubernetes.io/last-applied-configuration'];
  }
  return obj;
}

function cacheKey(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

class WatchEnded extends Error {}

export class Informer<T extends KubeObject> {
  readonly type: ResourceType;
  readonly synced: Promise<void>;
  readonly stats: InformerStats = { lists: 0, watches: 0, relistsAfterGone: 0, restartsAfterError: 0, events: 0 };
  private readonly options: InformerOptions<T>;
  private readonly log: Logger;
  private readonly cache = new Map<string, T>();
  private readonly handlers = new Set<InformerHandler<T>>();
  private resourceVersion: string | undefined;
  private markSynced!: () => void;
  private synced_ = false;
  private abort: AbortController | undefined;
  private running: Promise<void> | undefined;
  private attempt = 0;

  constructor(options: InformerOptions<T>) {
    this.options = options;
    this.type = options.type;
    this.log = options.log.child({ informer: options.type.plural });
    this.synced = new Promise((resolve) => {
      this.markSynced = resolve;
    });
  }

  get hasSynced(): boolean {
    return this.synced_;
  }

  /** Registers a handler; returns its removal. Handlers must not throw or block. */
  on(handler: InformerHandler<T>): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  get(name: string, namespace?: string): T | undefined {
    return this.cache.get(cacheKey(namespace, name));
  }

  /** By "namespace/name" (or "name" for cluster-scoped objects). */
  getByKey(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  values(): IterableIterator<T> {
    return this.cache.values();
  }

  get size(): number {
    return this.cache.size;
  }

  start(): void {
    if (this.running !== undefined) return;
    this.abort = new AbortController();
    this.running = this.loop(this.abort.signal).catch((err: unknown) => {
      if (!this.abort?.signal.aborted) this.log.error({ err }, 'informer loop ended');
    });
  }

  async stop(): Promise<void> {
    this.abort?.abort();
    await this.running;
    this.running = undefined;
  }

  // ---------------------------------------------------------------- the loop

  private async loop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      let listing = false;
      try {
        if (this.resourceVersion === undefined) {
          listing = true;
          await this.relist(signal);
          listing = false;
        }
        await this.watch(signal);
      } catch (err) {
        if (signal.aborted) return;
        if (isApiError(err, 410) && !listing) {
          this.stats.relistsAfterGone++;
          this.options.onRestart?.('expired');
          this.log.info({ resourceVersion: this.resourceVersion }, 'the watch\'s resourceVersion expired (410); listing again');
          this.resourceVersion = undefined;
          continue;
        }
        this.stats.restartsAfterError++;
        this.options.onRestart?.('error');
        const delay = backoffDelay(this.attempt++, this.options.backoff ?? DEFAULT_BACKOFF);
        this.log.warn({ ...errorFields(err), delayMs: delay, attempt: this.attempt, during: listing ? 'list' : 'watch' }, 'list/watch failed; restarting after backoff');
        try {
          await sleep(delay, undefined, { signal });
        } catch {
          return;
        }
      }
    }
  }

  private async relist(signal: AbortSignal): Promise<void> {
    this.stats.lists++;
    const { items, resourceVersion } = await this.options.client.list<T>(this.type, {
      ...(this.options.namespace !== undefined ? { namespace: this.options.namespace } : {}),
      ...(this.options.labelSelector !== undefined ? { labelSelector: this.options.labelSelector } : {}),
      ...(this.options.fieldSelector !== undefined ? { fieldSelector: this.options.fieldSelector } : {}),
      signal,
    });
    const seen = new Set<string>();
    for (const raw of items) {
      const obj = this.prepare(raw);
      const key = cacheKey(obj.metadata.namespace, obj.metadata.name);
      seen.add(key);
      this.store(key, obj, 'list');
    }
    for (const [key, old] of this.cache) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        this.emit({ type: 'deleted', object: old, old, source: 'list' });
      }
    }
    this.resourceVersion = resourceVersion;
    this.attempt = 0;
    if (!this.synced_) {
      this.synced_ = true;
      this.markSynced();
    }
    try {
      this.options.onListed?.();
    } catch (err) {
      this.log.error({ err }, 'informer onListed threw');
    }
  }

  private async watch(signal: AbortSignal): Promise<void> {
    const path = resourcePath(this.type, this.options.namespace);
    const timeoutSeconds = this.options.watchTimeoutSeconds ?? 300 + Math.floor(Math.random() * 300);
    this.stats.watches++;
    const res = await this.options.client.stream(path, {
      query: {
        watch: 1,
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds,
        labelSelector: this.options.labelSelector,
        fieldSelector: this.options.fieldSelector,
      },
      signal,
    });
    const opened = Date.now();
    let events = 0;
    try {
      await this.consume(res, signal, () => {
        events++;
        this.attempt = 0;
      });
    } catch (err) {
      if (err instanceof WatchEnded) {
        // A clean end (the server's timeout) resumes at once, unless the server keeps
        // closing straight away: then it is a failure like any other and backs off.
        if (events === 0 && Date.now() - opened < 1000) throw new KubeApiError(0, 'WatchClosed', 'watch closed immediately');
        return;
      }
      throw err;
    }
  }

  private consume(res: IncomingMessage, signal: AbortSignal, onEvent: () => void): Promise<never> {
    return new Promise<never>((_, reject) => {
      // Lines can be half a megabyte (a BalancerNode) arriving in many chunks: keep the
      // chunks of the current line as bytes, look for the newline in new data only, and
      // leave decoding to handleLine (which may read only part of the line).
      let pending: Buffer[] = [];
      let done = false;
      let idle: NodeJS.Timeout | undefined;
      const idleMs = this.options.idleMs ?? DEFAULT_WATCH_IDLE_MS;
      const finish = (err: Error): void => {
        if (done) return;
        done = true;
        clearTimeout(idle);
        signal.removeEventListener('abort', onAbort);
        res.destroy();
        reject(err);
      };
      const armIdle = (): void => {
        clearTimeout(idle);
        idle = setTimeout(() => finish(new KubeApiError(0, 'WatchIdle', `the watch delivered nothing for ${idleMs} ms`)), idleMs);
      };
      const onAbort = (): void => finish(new KubeApiError(0, 'Aborted', 'informer stopped'));
      signal.addEventListener('abort', onAbort, { once: true });
      armIdle();
      res.on('data', (chunk: Buffer) => {
        armIdle();
        let from = 0;
        let nl: number;
        while ((nl = chunk.indexOf(10, from)) >= 0) {
          pending.push(chunk.subarray(from, nl));
          const line = pending.length === 1 ? pending[0]! : Buffer.concat(pending);
          pending = [];
          from = nl + 1;
          if (line.length === 0 || (line.length === 1 && line[0] === 13)) continue;
          try {
            this.handleLine(line);
            onEvent();
          } catch (err) {
            finish(err instanceof Error ? err : new Error(String(err)));
            return;
          }
        }
        if (from < chunk.length) pending.push(chunk.subarray(from));
      });
      res.on('end', () => finish(new WatchEnded('watch ended')));
      res.on('aborted', () => finish(new KubeApiError(0, 'ConnectionReset', 'watch connection reset')));
      res.on('error', (err) => finish(new KubeApiError(0, 'ConnectionReset', `watch connection failed: ${err.message}`, undefined, { cause: err })));
      res.on('close', () => finish(new KubeApiError(0, 'ConnectionReset', 'watch connection closed')));
    });
  }

  private handleLine(line: Buffer): void {
    const event = (this.options.decode !== undefined ? this.options.decode(line) : JSON.parse(line.toString('utf8'))) as { type: string; object: T & { code?: number; reason?: string; message?: string } };
    const obj = event.object;
    switch (event.type) {
      case 'ADDED':
      case 'MODIFIED': {
        const prepared = this.prepare(obj);
        this.store(cacheKey(prepared.metadata.namespace, prepared.metadata.name), prepared, 'watch');
        break;
      }
      case 'DELETED': {
        const key = cacheKey(obj.metadata.namespace, obj.metadata.name);
        const old = this.cache.get(key);
        this.cache.delete(key);
        this.emit({ type: 'deleted', object: this.prepare(obj), ...(old !== undefined ? { old } : {}), source: 'watch' });
        break;
      }
      case 'BOOKMARK':
        break;
      case 'ERROR': {
        const code = typeof obj.code === 'number' ? obj.code : 500;
        throw new KubeApiError(code, obj.reason ?? 'Unknown', `watch error: ${obj.message ?? code}`, obj as never);
      }
      default:
        throw new KubeApiError(0, 'BadWatchEvent', `unknown watch event type ${event.type}`);
    }
    this.stats.events++;
    if (obj.metadata?.resourceVersion !== undefined) this.resourceVersion = obj.metadata.resourceVersion;
  }

  private prepare(obj: T): T {
    const stripped = stripObject(obj);
    return this.options.transform !== undefined ? this.options.transform(stripped) : stripped;
  }

  private store(key: string, obj: T, source: 'list' | 'watch'): void {
    const old = this.cache.get(key);
    if (old !== undefined && old.metadata.resourceVersion === obj.metadata.resourceVersion) return;
    this.cache.set(key, obj);
    this.emit(old === undefined ? { type: 'added', object: obj, source } : { type: 'updated', object: obj, old, source });
  }

  private emit(event: InformerEvent<T>): void {
    for (const handler of this.handlers) {
      try {
        handler(event);
      } catch (err) {
        this.log.error({ err }, 'informer handler threw');
      }
    }
  }
}
