// The agent's one HTTP server: /metrics for Prometheus, /healthz for the liveness
// probe (the process serves requests and its event loop is not stuck), /readyz for the
// readiness probe (the data plane is loaded, attached, and the last reconcile
// succeeded). Plain node:http: three read-only routes need no framework.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { monitorEventLoopDelay, type ELDHistogram } from 'node:perf_hooks';
import type { AddressInfo } from 'node:net';
import { FulcrumError } from '../shared/errors.ts';
import { errorFields, type Logger } from '../shared/logging.ts';

/** One readiness condition; all must hold for /readyz to answer 200. */
export type ReadinessCheck = { readonly name: string; readonly ok: boolean; readonly detail?: string };

export type HttpHandlers = {
  metrics(): Promise<{ contentType: string; body: string }>;
  readiness(): readonly ReadinessCheck[];
};

export type HttpOptions = {
  readonly host: string;
  readonly port: number;
  readonly log: Logger;
  /** /healthz fails when the event loop stalled longer than this within the last window. Default 10 s. */
  readonly maxEventLoopStallMs?: number;
};

/** The event-loop delay is judged over windows of this length, then the histogram restarts. */
const HEALTH_WINDOW_MS = 30_000;

export class AgentHttpServer {
  readonly #server: Server;
  readonly #handlers: HttpHandlers;
  readonly #log: Logger;
  readonly #maxStallMs: number;
  readonly #loopDelay: ELDHistogram;
  #windowTimer: NodeJS.Timeout | undefined;
  /** The worst stall of the previous window, so a fresh window does not forget it at once. */
  #previousWindowMaxMs = 0;

  private constructor(handlers: HttpHandlers, options: HttpOptions) {
    this.#handlers = handlers;
    this.#log = options.log;
    this.#maxStallMs = options.maxEventLoopStallMs ?? 10_000;
    this.#loopDelay = monitorEventLoopDelay({ resolution: 20 });
    this.#server = createServer((req, res) => void this.#route(req, res));
  }

  /** Starts listening; rejects with ERR_CONFIG when the address cannot be bound. */
  static async listen(handlers: HttpHandlers, options: HttpOptions): Promise<AgentHttpServer> {
    const server = new AgentHttpServer(handlers, options);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        reject(new FulcrumError('ERR_CONFIG', `cannot serve metrics on ${options.host}:${options.port} (metrics.host / metrics.port): ${err.code ?? err.message}`,
          { cause: err, details: { host: options.host, port: options.port } }));
      };
      server.#server.once('error', onError);
      server.#server.listen(options.port, options.host, () => {
        server.#server.off('error', onError);
        resolve();
      });
    });
    server.#server.on('error', (err) => options.log.error(errorFields(err), 'HTTP server error'));
    server.#loopDelay.enable();
    server.#windowTimer = setInterval(() => {
      server.#previousWindowMaxMs = server.#loopDelay.max / 1e6;
      server.#loopDelay.reset();
    }, HEALTH_WINDOW_MS);
    server.#windowTimer.unref();
    options.log.info({ address: server.address() }, 'serving /metrics, /healthz, /readyz');
    return server;
  }

  address(): { host: string; port: number } {
    const info = this.#server.address() as AddressInfo;
    return { host: info.address, port: info.port };
  }

  async close(): Promise<void> {
    clearInterval(this.#windowTimer);
    this.#loopDelay.disable();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?', 1)[0];
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
        return;
      }
      switch (path) {
        case '/metrics': {
          const { contentType, body } = await this.#handlers.metrics();
          send(res, 200, contentType, body);
          return;
        }
        case '/healthz': {
          const worstMs = Math.max(this.#previousWindowMaxMs, this.#loopDelay.max / 1e6);
          const ok = worstMs <= this.#maxStallMs;
          sendJson(res, ok ? 200 : 503, { status: ok ? 'ok' : 'event loop stalled', maxEventLoopDelayMs: Math.round(worstMs) });
          return;
        }
        case '/readyz': {
          const checks = this.#handlers.readiness();
          const ready = checks.length > 0 && checks.every((c) => c.ok);
          sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', checks });
          return;
        }
        default:
          send(res, 404, 'text/plain; charset=utf-8', 'not found: /metrics, /healthz, /readyz\n');
      }
    } catch (err) {
      this.#log.error({ path, ...errorFields(err) }, 'HTTP handler failed');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', `internal error: ${(err as Error).message}\n`);
      else res.destroy();
    }
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json', `${JSON.stringify(value)}\n`);
}
