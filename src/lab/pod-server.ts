// The lab's backend workload: one process per pod, started inside the pod's network
// namespace by traffic.ts. Every answer names the pod, so a client learns which
// backend its flow reached without any help from the balancer.
//
//   HTTP on [::]:<http-port>, each one given (IPv4 and IPv6)
//     GET  /                       → "<pod>\n"
//     GET  /stream?bytes=N&ms=T    → "<pod>\n" then N bytes, paced over about T ms
//     POST /sink                   → "<pod> <bytes received>\n" once the body ends
//   UDP on each --udp-bind address and each <udp-port>
//     any datagram                 → "<pod>"
//
// TCP listens on the wildcard: an accepted connection answers from the address it was
// accepted on, the VIP. UDP has no such memory, so the datagram sockets are bound to
// the VIPs themselves (the pod sets ip_nonlocal_bind so that works before the agent
// has put the VIP on lo): replies then leave from the VIP, as direct server return
// requires, and a client that connected its socket to the VIP accepts them.
//
// Prints one JSON line {"ready":true,...} on stdout once every socket is bound.
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    name: { type: 'string' },
    'http-port': { type: 'string', multiple: true, default: ['80'] },
    'udp-port': { type: 'string', multiple: true, default: ['5353'] },
    'udp-bind': { type: 'string', multiple: true, default: [] },
  },
});

const podName = values.name;
if (!podName) {
  process.stderr.write('pod-server: --name is required\n');
  process.exit(2);
}
const httpPorts = values['http-port'].map(Number);
const udpPorts = values['udp-port'].map(Number);

/** Pacing granularity of /stream: small enough to look continuous, big enough to be cheap. */
const STREAM_TICK_MS = 20;
const FILL = Buffer.alloc(64 * 1024, 0x61);

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://pod');
  res.setHeader('x-pod', podName!);
  if (req.method === 'GET' && url.pathname === '/') {
    const body = `${podName}\n`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  if (req.method === 'GET' && url.pathname === '/stream') {
    stream(res, Number(url.searchParams.get('bytes') ?? 0), Number(url.searchParams.get('ms') ?? 0));
    return;
  }
  if (req.method === 'POST' && url.pathname === '/sink') {
    let received = 0;
    req.on('data', (chunk: Buffer) => { received += chunk.length; });
    req.on('end', () => {
      const body = `${podName} ${received}\n`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    return;
  }
  res.writeHead(404, { 'content-length': 0 });
  res.end();
}

/** Sends the pod's name line, then `bytes` bytes spread evenly over about `ms`
 * milliseconds (as fast as the connection allows when ms is 0). */
function stream(res: ServerResponse, bytes: number, ms: number): void {
  const head = Buffer.from(`${podName}\n`);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': head.length + bytes });
  res.write(head);
  const started = Date.now();
  let sent = 0;
  const pump = (): void => {
    if (res.destroyed) return;
    // How much should be out by now; everything when unpaced.
    const due = ms > 0 ? Math.min(bytes, Math.ceil((bytes * (Date.now() - started + STREAM_TICK_MS)) / ms)) : bytes;
    while (sent < due) {
      const n = Math.min(FILL.length, due - sent);
      sent += n;
      if (!res.write(FILL.subarray(0, n))) {
        res.once('drain', pump);
        return;
      }
    }
    if (sent >= bytes) res.end();
    else setTimeout(pump, STREAM_TICK_MS);
  };
  pump();
}

const httpServers = httpPorts.map(() => {
  const server = createServer(handle);
  // Held client connections may sit idle for the length of a test: never time them out.
  server.keepAliveTimeout = 0;
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  return server;
});

const udpSockets: UdpSocket[] = [];

function listenHttp(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '::', port, ipv6Only: false }, () => resolve());
  });
}

function bindUdp(address: string, port: number): Promise<void> {
  const socket = createSocket({ type: address.includes(':') ? 'udp6' : 'udp4' });
  udpSockets.push(socket);
  socket.on('message', (_msg, from) => {
    socket.send(podName!, from.port, from.address);
  });
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address, port, exclusive: true }, () => resolve());
  });
}

function shutdown(): void {
  for (const server of httpServers) {
    server.closeAllConnections();
    server.close();
  }
  for (const s of udpSockets) s.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

try {
  for (const [i, server] of httpServers.entries()) await listenHttp(server, httpPorts[i]!);
  for (const address of values['udp-bind']) for (const port of udpPorts) await bindUdp(address, port);
  process.stdout.write(`${JSON.stringify({ ready: true, pod: podName, httpPorts, udpPorts, udp: values['udp-bind'] })}\n`);
} catch (err) {
  process.stderr.write(`pod-server ${podName}: ${(err as Error).message}\n`);
  process.exit(1);
}
