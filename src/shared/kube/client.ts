// The one Kubernetes client of the operator and the agent: a small JSON client on top of
// client-node's KubeConfig (which owns credentials: certificates, tokens, exec plugins,
// TLS settings). Objects travel as the wire JSON, for built-ins and custom resources
// alike; every failure is a KubeApiError (ERR_KUBE_API) carrying the HTTP code and the
// API's metav1.Status reason, so callers can branch on 404 / 409 / 410.
import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeApiError, type ApiStatus } from './errors.ts';
import type { KubeObject, ResourceType } from './objects.ts';

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

export type PatchType = 'merge' | 'json' | 'strategic';
const PATCH_CONTENT_TYPES: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
  strategic: 'application/strategic-merge-patch+json',
};

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  /** A body already serialised as JSON, in parts sent one after another (large objects
   *  composed from cached pieces, never joined into one string). */
  rawBody?: readonly Uint8Array[];
  contentType?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** TCP keepalive probes on a watch's socket start after this much silence. */
const STREAM_KEEPALIVE_MS = 30_000;

export function resourcePath(rt: ResourceType, namespace?: string, name?: string, subresource?: string): string {
  let path = rt.group === '' ? `/api/${rt.version}` : `/apis/${rt.group}/${rt.version}`;
  if (rt.namespaced && namespace !== undefined) path += `/namespaces/${encodeURIComponent(namespace)}`;
  path += `/${rt.plural}`;
  if (name !== undefined) path += `/${encodeURIComponent(name)}`;
  if (subresource !== undefined) path += `/${subresource}`;
  return path;
}

export class KubeClient {
  private readonly kc: KubeConfig;
  private readonly server: URL;
  private readonly agent: http.Agent;
  private readonly userAgent: string;
  private readonly defaultTimeoutMs: number;
  private readonly writeGate: (() => string | undefined) | undefined;

  /**
   * `writeGate`, when given, is asked before every request that is not a GET: a reason
   * string refuses it without sending (a leader-elected process that no longer holds its
   * lease must not write, even in the moment before it notices).
   */
  constructor(kc: KubeConfig, options: { userAgent?: string; timeoutMs?: number; writeGate?: () => string | undefined } = {}) {
    const cluster = kc.getCurrentCluster();
    if (cluster === null) throw new Error('kubeconfig has no current cluster');
    this.kc = kc;
    this.server = new URL(cluster.server);
    this.userAgent = options.userAgent ?? 'fulcrum-operator';
    this.defaultTimeoutMs = options.timeoutMs ?? 30_000;
    this.writeGate = options.writeGate;
    this.agent = this.server.protocol === 'https:'
      ? new https.Agent({ keepAlive: true, maxSockets: 16 })
      : new http.Agent({ keepAlive: true, maxSockets: 16 });
  }

  close(): void {
    this.agent.destroy();
  }

  /** One request; resolves with the parsed body, rejects with KubeApiError. */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const res = await this.send(method, path, options);
    const text = await readBody(res);
    const code = res.statusCode ?? 0;
    if (code >= 200 && code < 300) return (text === '' ? undefined : withoutManagedFields(JSON.parse(text))) as T;
    throw errorFrom(code, text, `${method} ${path}`);
  }

  /** One request; resolves with the body as bytes (for callers that read only part of a large answer). */
  async requestBytes(method: string, path: string, options: RequestOptions = {}): Promise<Buffer> {
    const res = await this.send(method, path, options);
    const bytes = await readBytes(res);
    const code = res.statusCode ?? 0;
    if (code >= 200 && code < 300) return bytes;
    throw errorFrom(code, bytes.toString('utf8'), `${method} ${path}`);
  }

  /**
   * A streaming GET (watch): the response once the status line says 200. No request
   * timeout (the reader owns an idle limit); TCP keepalive notices a peer that vanished.
   */
  async stream(path: string, options: RequestOptions = {}): Promise<IncomingMessage> {
    const res = await this.send('GET', path, { ...options, timeoutMs: 0, keepAliveMs: STREAM_KEEPALIVE_MS });
    const code = res.statusCode ?? 0;
    if (code === 200) return res;
    const text = await readBody(res);
    throw errorFrom(code, text, `GET ${path}`);
  }

  // ---------------------------------------------------------------- verbs on a resource type

  get<T extends KubeObject>(rt: ResourceType, name: string, namespace?: string): Promise<T> {
    return this.request<T>('GET', resourcePath(rt, namespace, name));
  }

  /** Lists every page (consistent snapshot via `continue`). */
  async list<T extends KubeObject>(rt: ResourceType, options: { namespace?: string; labelSelector?: string; fieldSelector?: string; limit?: number; signal?: AbortSignal } = {}): Promise<ListResult<T>> {
    const items: T[] = [];
    let continueToken: string | undefined;
    let resourceVersion = '';
    do {
      const page = await this.request<{ items: T[] | null; metadata?: { resourceVersion?: string; continue?: string } }>('GET', resourcePath(rt, options.namespace), {
        query: { labelSelector: options.labelSelector, fieldSelector: options.fieldSelector, limit: options.limit ?? 500, continue: continueToken },
        ...(options.signal !== undefined ? { signal: options.signal } : {}),
      });
      for (const item of page.items ?? []) items.push(item);
      resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
      continueToken = page.metadata?.continue || undefined;
    } while (continueToken !== undefined);
    return { items, resourceVersion };
  }

  create<T extends KubeObject>(rt: ResourceType, body: T, namespace?: string): Promise<T> {
    return this.request<T>('POST', resourcePath(rt, namespace ?? body.metadata.namespace), { body });
  }

  /**
   * PUT: optimistic concurrency through body.metadata.resourceVersion (409 when stale;
   * a metadata.uid other than the stored one is a 409 too).
   */
  replace<T extends KubeObject>(rt: ResourceType, body: T, subresource?: string, options: { fieldManager?: string } = {}): Promise<T> {
    return this.request<T>('PUT', resourcePath(rt, body.metadata.namespace, body.metadata.name, subresource), {
      body, ...(options.fieldManager !== undefined ? { query: { fieldManager: options.fieldManager } } : {}),
    });
  }

  patch<T extends KubeObject>(rt: ResourceType, name: string, namespace: string | undefined, patch: unknown, options: { type?: PatchType; subresource?: string } = {}): Promise<T> {
    return this.request<T>('PATCH', resourcePath(rt, namespace, name, options.subresource), {
      body: patch, contentType: PATCH_CONTENT_TYPES[options.type ?? 'merge'],
    });
  }

  delete(rt: ResourceType, name: string, namespace?: string, preconditions?: { uid?: string; resourceVersion?: string }): Promise<unknown> {
    return this.request('DELETE', resourcePath(rt, namespace, name), {
      body: { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background', ...(preconditions !== undefined ? { preconditions } : {}) },
    });
  }

  // ---------------------------------------------------------------- transport

  private async send(method: string, path: string, options: RequestOptions & { keepAliveMs?: number }): Promise<IncomingMessage> {
    if (method !== 'GET' && this.writeGate !== undefined) {
      const refused = this.writeGate();
      if (refused !== undefined) throw new KubeApiError(0, 'LeaseNotHeld', `${method} ${path}: not sent: ${refused}`);
    }
    const url = new URL(this.server.toString().replace(/\/$/, '') + path);
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
    // client-node fills in TLS material and credentials (refreshing tokens as needed);
    // method and path tell a KubeConfig subclass (tests) which request it is.
    const opts: https.RequestOptions = { method, path: url.pathname + url.search, headers: {} };
    await this.kc.applyToHTTPSOptions(opts);
    const headers: Record<string, string> = {
      ...(opts.headers as Record<string, string>),
      Accept: 'application/json',
      'User-Agent': this.userAgent,
    };
    let payload: readonly Uint8Array[] | undefined;
    if (options.body !== undefined || options.rawBody !== undefined) {
      payload = options.rawBody ?? [Buffer.from(JSON.stringify(options.body))];
      headers['Content-Type'] = options.contentType ?? 'application/json';
      headers['Content-Length'] = String(payload.reduce((n, p) => n + p.byteLength, 0));
    }
    const transport = url.protocol === 'https:' ? https : http;
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = transport.request(url, {
        method,
        headers,
        agent: this.agent,
        ...(url.protocol === 'https:' ? { ca: opts.ca, cert: opts.cert, key: opts.key, rejectUnauthorized: opts.rejectUnauthorized ?? true, servername: opts.servername } : {}),
        ...(options.signal !== undefined ? { signal: options.signal } : {}),
      }, resolve);
      const keepAliveMs = options.keepAliveMs;
      if (keepAliveMs !== undefined) req.on('socket', (socket) => socket.setKeepAlive(true, keepAliveMs));
      if (timeoutMs > 0) {
        req.setTimeout(timeoutMs, () => req.destroy(new KubeApiError(0, 'Timeout', `${method} ${path}: no answer within ${timeoutMs} ms`)));
      }
      req.on('error', (err) => reject(err instanceof KubeApiError ? err : new KubeApiError(0, 'ConnectionFailed', `${method} ${path}: ${err.message}`, undefined, { cause: err })));
      for (const part of payload ?? []) req.write(part);
      req.end();
    });
  }
}

/**
 * Drops metadata.managedFields from an answer (an object, or a list's items): the
 * operator and the agent never read them, they can outweigh the object, and a copy that keeps them
 * would send them back on the next write, overwriting the server's record of who owns
 * which field.
 */
export function withoutManagedFields<T>(body: T): T {
  const strip = (o: unknown): void => {
    const meta = (o as { metadata?: { managedFields?: unknown } } | null)?.metadata;
    if (meta !== undefined && meta !== null && typeof meta === 'object' && 'managedFields' in meta) delete meta.managedFields;
  };
  if (body !== null && typeof body === 'object') {
    strip(body);
    const items = (body as { items?: unknown }).items;
    if (Array.isArray(items)) for (const item of items) strip(item);
  }
  return body;
}

async function readBody(res: IncomingMessage): Promise<string> {
  return (await readBytes(res)).toString('utf8');
}

function readBytes(res: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    res.on('error', (err) => reject(new KubeApiError(0, 'ConnectionFailed', err.message, undefined, { cause: err })));
    res.on('aborted', () => reject(new KubeApiError(0, 'ConnectionFailed', 'response aborted')));
  });
}

function errorFrom(code: number, text: string, what: string): KubeApiError {
  let status: ApiStatus | undefined;
  try {
    status = JSON.parse(text) as ApiStatus;
  } catch {
    status = undefined;
  }
  const reason = status?.reason ?? (code === 404 ? 'NotFound' : code === 409 ? 'Conflict' : code === 410 ? 'Expired' : 'Unknown');
  return new KubeApiError(code, reason, `${what}: ${code} ${status?.message ?? text.slice(0, 200)}`, status);
}
