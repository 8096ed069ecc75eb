// The lab's traffic generator: one process per client namespace, started by
// traffic.ts inside that namespace (so every packet it sends starts there, never in
// the host namespace). It takes JSON-line requests on stdin and answers on stdout:
//
//   → {"id":1,"method":"http","params":{...}}
//   ← {"id":1,"result":{...}}   or   {"id":1,"error":"..."}
//   ← {"event":"progress","transfer":"t1","bytes":123}    (unsolicited)
//
// Every flow uses a source port the caller chose, so the caller can name a flow by
// its 5-tuple, repeat it exactly (through another balancer, after a change), and find
// it in the balancer's connection table.
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import type {
  FlowError, FlowResult, HoldOpenParams, HttpParams, TransferParams, TransferResult, UdpParams, WorkerRequest,
} from './traffic-protocol.ts';

const CONNECT_TIMEOUT_MS = 3000;

function send(message: unknown): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/** Socket errors as the few outcomes a test cares about. */
function classify(err: unknown): FlowError {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ECONNRESET':
    case 'EPIPE':
      return 'reset';
    case 'ECONNREFUSED':
      return 'refused';
    case 'ETIMEDOUT':
      return 'timeout';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'unreachable';
    case 'EADDRINUSE':
      return 'port-in-use';
    default:
      return (err as Error).message === 'timeout' ? 'timeout' : `other: ${code ?? (err as Error).message}`;
  }
}

/** Runs `task` over `items` with at most `limit` in flight; results keep the input order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await task(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  return out;
}

function openSocket(target: string, port: number, sourcePort: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: target, port, localPort: sourcePort, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('timeout'));
    }, CONNECT_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve(socket);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    socket.once('error', onError);
  });
}

function hostHeader(target: string): string {
  return target.includes(':') ? `[${target}]` : target;
}

/** One short-lived HTTP/1.0 exchange: the server answers and closes. The server closes
 * first, so the TIME_WAIT state stays on the pod and the port is free again at once. */
async function httpOnce(target: string, port: number, sourcePort: number, timeoutMs: number): Promise<FlowResult> {
  let socket: Socket;
  try {
    socket = await openSocket(target, port, sourcePort);
  } catch (err) {
    return { sourcePort, error: classify(err) };
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ sourcePort, error: 'timeout' });
    }, timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('error', (err) => {
      clearTimeout(timer);
      resolve({ sourcePort, error: classify(err) });
    });
    socket.once('end', () => {
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      if (!text.startsWith('HTTP/1.') || split < 0) resolve({ sourcePort, error: 'bad-response' });
      else resolve({ sourcePort, pod: text.slice(split + 4).trim() });
    });
    socket.write(`GET / HTTP/1.0\r\nHost: ${hostHeader(target)}\r\n\r\n`);
  });
}

async function httpFlows(p: HttpParams): Promise<FlowResult[]> {
  return mapLimit(p.sourcePorts, p.concurrency, (sp) => httpOnce(p.target, p.port, sp, p.timeoutMs));
}

/** One UDP flow: a socket bound to the source port and connected to the VIP (so only a
 * reply from the VIP itself counts), retried on silence. */
function udpOnce(p: UdpParams, sourcePort: number): Promise<FlowResult> {
  return new Promise((resolve) => {
    const socket = createSocket({ type: p.target.includes(':') ? 'udp6' : 'udp4' });
    let attempts = 0;
    let timer: NodeJS.Timeout | undefined;
    const finish = (result: FlowResult): void => {
      clearTimeout(timer);
      socket.close();
      resolve(result);
    };
    const attempt = (): void => {
      if (attempts++ >= p.attempts) {
        finish({ sourcePort, error: 'timeout' });
        return;
      }
      socket.send(`who ${sourcePort}`);
      timer = setTimeout(attempt, p.timeoutMs);
    };
    socket.on('message', (msg) => finish({ sourcePort, pod: msg.toString().trim() }));
    socket.on('error', (err) => finish({ sourcePort, error: classify(err) }));
    socket.bind({ port: sourcePort, exclusive: true }, () => {
      socket.connect(p.port, p.target, attempt);
    });
  });
}

async function udpFlows(p: UdpParams): Promise<FlowResult[]> {
  return mapLimit(p.sourcePorts, p.concurrency, (sp) => udpOnce(p, sp));
}

// ── long-lived transfers ──────────────────────────────────────────────────────

const PROGRESS_INTERVAL_MS = 200;
const UPLOAD_TICK_MS = 20;
const FILL = Buffer.alloc(64 * 1024, 0x62);

const transfers = new Map<string, Promise<TransferResult>>();

/**
 * A download (the pod streams `bytes` to us, paced over `durationMs`) or an upload (we
 * stream `bytes` to the pod, paced, and it reports what it received). Resolves when
 * the transfer ends, however it ends. Reports progress as events meanwhile.
 */
function transfer(p: TransferParams): Promise<TransferResult> {
  const started = Date.now();
  let bytes = 0;
  let lastData = started;
  let maxGapMs = 0;
  let pod: string | undefined;
  const progress = setInterval(() => send({ event: 'progress', transfer: p.id, bytes, pod }), PROGRESS_INTERVAL_MS);
  const result = (fields: Pick<TransferResult, 'completed' | 'error'>): TransferResult => ({
    id: p.id,
    sourcePort: p.sourcePort,
    direction: p.direction,
    pod,
    bytes,
    expected: p.bytes,
    durationMs: Date.now() - started,
    maxGapMs: Math.max(maxGapMs, Date.now() - lastData),
    ...fields,
  });
  const onData = (n: number): void => {
    const now = Date.now();
    maxGapMs = Math.max(maxGapMs, now - lastData);
    lastData = now;
    bytes += n;
  };

  return new Promise<TransferResult>((resolve) => {
    let socket: Socket | undefined;
    let done = false;
    const finish = (fields: Pick<TransferResult, 'completed' | 'error'>): void => {
      if (done) return;
      done = true;
      clearInterval(progress);
      clearInterval(watchdog);
      socket?.destroy();
      resolve(result(fields));
    };
    const watchdog = setInterval(() => {
      if (Date.now() - lastData > p.stallTimeoutMs) finish({ completed: false, error: 'stalled' });
      else if (Date.now() - started > p.timeoutMs) finish({ completed: false, error: 'timeout' });
    }, PROGRESS_INTERVAL_MS);
    openSocket(p.target, p.port, p.sourcePort).then((s) => {
      socket = s;
      let head = Buffer.alloc(0);
      let headerDone = false;
      let bodyText = '';
      s.on('error', (err) => finish({ completed: false, error: classify(err) }));
      s.on('end', () => {
        if (p.direction === 'download') {
          finish(bytes === p.bytes ? { completed: true } : { completed: false, error: 'short' });
        } else {
          const [name, count] = bodyText.trim().split(/\s+/);
          pod = name;
          finish(Number(count) === p.bytes && bytes === p.bytes ? { completed: true } : { completed: false, error: 'short' });
        }
      });
      s.on('data', (chunk: Buffer) => {
        if (!headerDone) {
          head = Buffer.concat([head, chunk]);
          const split = head.indexOf('\r\n\r\n');
          if (split < 0) return;
          headerDone = true;
          chunk = head.subarray(split + 4);
        }
        if (p.direction === 'upload') {
          bodyText += chunk.toString('latin1');
          return;
        }
        // The body opens with the pod's name line, then the payload.
        if (pod === undefined) {
          const nl = chunk.indexOf(0x0a);
          if (nl < 0) return; // the name line is a few bytes: it arrives in one piece
          pod = chunk.subarray(0, nl).toString();
          chunk = chunk.subarray(nl + 1);
        }
        onData(chunk.length);
      });
      const host = hostHeader(p.target);
      if (p.direction === 'download') {
        s.write(`GET /stream?bytes=${p.bytes}&ms=${p.durationMs} HTTP/1.0\r\nHost: ${host}\r\n\r\n`);
        return;
      }
      s.write(`POST /sink HTTP/1.0\r\nHost: ${host}\r\nContent-Length: ${p.bytes}\r\n\r\n`);
      let sent = 0;
      const pump = (): void => {
        if (s.destroyed) return;
        const due = p.durationMs > 0 ? Math.min(p.bytes, Math.ceil((p.bytes * (Date.now() - started + UPLOAD_TICK_MS)) / p.durationMs)) : p.bytes;
        while (sent < due) {
          const n = Math.min(FILL.length, due - sent);
          sent += n;
          // Upload progress = what the kernel has taken; it only takes what fits the
          // window, so a stalled path shows as a stall here too.
          if (!s.write(FILL.subarray(0, n), () => onData(n))) {
            s.once('drain', pump);
            return;
          }
        }
        if (sent < p.bytes) setTimeout(pump, UPLOAD_TICK_MS);
      };
      pump();
    }, (err: unknown) => finish({ completed: false, error: classify(err) }));
  });
}

// ── held connections ──────────────────────────────────────────────────────────

/** A keep-alive HTTP/1.1 connection that can ask "which pod are you?" again later. */
class HeldConnection {
  readonly sourcePort: number;
  private readonly socket: Socket;
  private buffer = Buffer.alloc(0);
  private waiting: { resolve: (r: FlowResult) => void; timer: NodeJS.Timeout } | undefined;
  private failure: FlowError | undefined;

  constructor(sourcePort: number, socket: Socket) {
    this.sourcePort = sourcePort;
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.tryComplete();
    });
    socket.on('error', (err) => this.fail(classify(err)));
    socket.on('close', () => this.fail('closed'));
  }

  request(target: string, timeoutMs: number): Promise<FlowResult> {
    if (this.failure !== undefined) return Promise.resolve({ sourcePort: this.sourcePort, error: this.failure });
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        resolve({ sourcePort: this.sourcePort, error: 'timeout' });
      }, timeoutMs);
      this.waiting = { resolve, timer };
      this.socket.write(`GET / HTTP/1.1\r\nHost: ${hostHeader(target)}\r\n\r\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private tryComplete(): void {
    const split = this.buffer.indexOf('\r\n\r\n');
    if (split < 0 || !this.waiting) return;
    const headers = this.buffer.subarray(0, split).toString('latin1');
    const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(headers)?.[1] ?? NaN);
    if (!Number.isFinite(length) || this.buffer.length < split + 4 + length) return;
    const body = this.buffer.subarray(split + 4, split + 4 + length).toString().trim();
    this.buffer = this.buffer.subarray(split + 4 + length);
    const { resolve, timer } = this.waiting;
    this.waiting = undefined;
    clearTimeout(timer);
    resolve({ sourcePort: this.sourcePort, pod: body });
  }

  private fail(error: FlowError): void {
    this.failure ??= error;
    if (!this.waiting) return;
    const { resolve, timer } = this.waiting;
    this.waiting = undefined;
    clearTimeout(timer);
    resolve({ sourcePort: this.sourcePort, error: this.failure });
  }
}

type HoldGroup = { target: string; timeoutMs: number; connections: (HeldConnection | FlowResult)[] };
const holds = new Map<string, HoldGroup>();

async function holdOpen(p: HoldOpenParams): Promise<FlowResult[]> {
  const connections = await mapLimit(p.sourcePorts, p.concurrency, async (sp): Promise<HeldConnection | FlowResult> => {
    try {
      return new HeldConnection(sp, await openSocket(p.target, p.port, sp));
    } catch (err) {
      return { sourcePort: sp, error: classify(err) };
    }
  });
  holds.set(p.id, { target: p.target, timeoutMs: p.timeoutMs, connections });
  return holdRequest(p.id);
}

async function holdRequest(id: string): Promise<FlowResult[]> {
  const group = holds.get(id);
  if (!group) throw new Error(`no held connections ${id}`);
  return Promise.all(group.connections.map((c) => (c instanceof HeldConnection ? c.request(group.target, group.timeoutMs) : Promise.resolve(c))));
}

function holdClose(id: string): void {
  for (const c of holds.get(id)?.connections ?? []) if (c instanceof HeldConnection) c.close();
  holds.delete(id);
}

// ── dispatch ──────────────────────────────────────────────────────────────────

async function dispatch(req: WorkerRequest): Promise<unknown> {
  switch (req.method) {
    case 'http':
      return httpFlows(req.params);
    case 'udp':
      return udpFlows(req.params);
    case 'transferStart': {
      if (transfers.has(req.params.id)) throw new Error(`transfer ${req.params.id} exists`);
      transfers.set(req.params.id, transfer(req.params));
      return { started: req.params.id };
    }
    case 'transferResult': {
      const running = transfers.get(req.params.id);
      if (!running) throw new Error(`no transfer ${req.params.id}`);
      const result = await running;
      transfers.delete(req.params.id);
      return result;
    }
    case 'holdOpen':
      return holdOpen(req.params);
    case 'holdRequest':
      return holdRequest(req.params.id);
    case 'holdClose':
      holdClose(req.params.id);
      return { closed: req.params.id };
  }
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim() === '') return;
  let req: WorkerRequest;
  try {
    req = JSON.parse(line) as WorkerRequest;
  } catch {
    send({ id: null, error: `not JSON: ${line.slice(0, 80)}` });
    return;
  }
  dispatch(req).then(
    (result) => send({ id: req.id, result }),
    (err: unknown) => send({ id: req.id, error: (err as Error).message }),
  );
});
// The driver closing stdin (or dying) ends the worker and every flow it holds.
lines.on('close', () => process.exit(0));
send({ event: 'ready', pid: process.pid });
