// Fulcrum's in-process Kubernetes API server: the stand-in for kube-apiserver in the
// operator's tests and the demo lab. It speaks the real wire protocol (JSON over HTTP,
// watches, discovery, Tables) so @kubernetes/client-node and kubectl talk to it unmodified,
// and it keeps the semantics controllers depend on. Clients reach it only over HTTP: there
// is deliberately no in-process back door to its storage.
//
//   const server = await startApiServer();
//   const kc = server.kubeConfig();              // @kubernetes/client-node KubeConfig
//   execFile('kubectl', ['--kubeconfig', server.kubeconfigPath, 'get', 'ns']);
//   server.faults.breakWatches();
//   await server.stop();

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import type { Level, Logger } from 'pino';
import { builtinResourceTypes, NODE_PORT_RANGE } from './builtins.ts';
import { CrdController, crdResourceType } from './crds.ts';
import { Discovery } from './discovery.ts';
import { Faults } from './faults.ts';
import { GarbageCollector } from './gc.ts';
import { kubeConfigFor, kubeconfigYaml } from './kubeconfig.ts';
import { isObject, rfc3339 } from './meta.ts';
import { NamespaceController } from './namespaces.ts';
import { ResourceCatalog } from './resources.ts';
import { DEFAULT_WRITE_OPTIONS, RestStorage } from './rest.ts';
import { createRequestHandler } from './server.ts';
import { Store } from './store.ts';
import type { JsonObject, StrategyContext } from './types.ts';
import { WatchHub } from './watch.ts';

export { Faults } from './faults.ts';
export type { RequestCount, RequestFilter, RequestInfo, Verb } from './faults.ts';
export { KUBERNETES_VERSION } from './discovery.ts';

export interface ApiServerOptions {
  /** TCP port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  /** Events each resource keeps for watch resumption; older resourceVersions get 410. */
  historyLimit?: number;
  /** Interval of BOOKMARK events for watches that allow them. */
  bookmarkIntervalMs?: number;
  /** Watches without timeoutSeconds end after a random time in [this, 2×this) seconds. */
  minRequestTimeoutSeconds?: number;
  /** pino level; defaults to FULCRUM_APISERVER_LOG_LEVEL or "silent". */
  logLevel?: Level | 'silent';
  /** Namespace the written kubeconfig's context uses. */
  defaultNamespace?: string;
}

export interface ApiServer {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  /** A kubeconfig file for kubectl (plain http, insecure-skip-tls-verify). */
  readonly kubeconfigPath: string;
  /** A fresh client-node KubeConfig for this server. */
  kubeConfig(): KubeConfig;
  readonly faults: Faults;
  /** Open watch streams and the current global resourceVersion. */
  stats(): { openWatches: number; resourceVersion: number };
  stop(): Promise<void>;
}

const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];
const SERVICE_CIDR_BASE = (10 << 24) | (96 << 16); // 10.96.0.0/12, kubeadm's default
const SERVICE_CIDR_SIZE = 1 << 20;
const KUBERNETES_SERVICE_IP = '10.96.0.1';

function ipv4(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

export async function startApiServer(options: ApiServerOptions = {}): Promise<ApiServer> {
  const log: Logger = pino({ name: 'apiserver', level: options.logLevel ?? (process.env['FULCRUM_APISERVER_LOG_LEVEL'] as Level | undefined) ?? 'silent' });
  const store = new Store({ historyLimit: options.historyLimit ?? 1000 });
  const catalog = new ResourceCatalog();

  // Allocators scan the stored services, so released IPs and ports become free again.
  const servicesInUse = (): { ips: Set<string>; ports: Set<number> } => {
    const ips = new Set<string>();
    const ports = new Set<number>();
    for (const svc of store.list('core/services')) {
      const spec = isObject(svc['spec']) ? (svc['spec'] as JsonObject) : {};
      if (typeof spec['clusterIP'] === 'string') ips.add(spec['clusterIP']);
      for (const p of Array.isArray(spec['ports']) ? spec['ports'] : []) {
        if (isObject(p) && typeof p['nodePort'] === 'number') ports.add(p['nodePort']);
      }
      if (typeof spec['healthCheckNodePort'] === 'number') ports.add(spec['healthCheckNodePort']);
    }
    return { ips, ports };
  };
  let nextServiceIP = 10;
  const pendingPorts = new Set<number>(); // ports handed out within one request, not yet stored
  const ctx: StrategyContext = {
    now: () => rfc3339(),
    allocateClusterIP: () => {
      const { ips } = servicesInUse();
      for (let i = 0; i < SERVICE_CIDR_SIZE - 2; i++) {
        const candidate = ipv4(SERVICE_CIDR_BASE + 1 + ((nextServiceIP - 1 + i) % (SERVICE_CIDR_SIZE - 2)));
        if (!ips.has(candidate) && candidate !== KUBERNETES_SERVICE_IP) {
          nextServiceIP += i + 1;
          return candidate;
        }
      }
      throw new Error('service IP range exhausted');
    },
    allocateNodePort: () => {
      const { ports } = servicesInUse();
      const span = NODE_PORT_RANGE.max - NODE_PORT_RANGE.min + 1;
      const start = Math.floor(Math.random() * span);
      for (let i = 0; i < span; i++) {
        const candidate = NODE_PORT_RANGE.min + ((start + i) % span);
        if (!ports.has(candidate) && !pendingPorts.has(candidate)) {
          pendingPorts.add(candidate);
          setImmediate(() => pendingPorts.delete(candidate));
          return candidate;
        }
      }
      throw new Error('node port range exhausted');
    },
  };

  const rest = new RestStorage(store, catalog, ctx);
  const watches = new WatchHub(store, rest, {
    bookmarkIntervalMs: options.bookmarkIntervalMs ?? 60_000,
    minRequestTimeoutSeconds: options.minRequestTimeoutSeconds ?? 1800,
    maxBufferedBytes: 64 * 1024 * 1024,
  }, log);
  const crdType = crdResourceType();
  for (const rt of [...builtinResourceTypes(), crdType]) catalog.add(rt);
  const discovery = new Discovery(catalog);
  const faults = new Faults(store, watches);
  const crds = new CrdController(store, catalog, rest, watches, crdType, log);
  const gc = new GarbageCollector(store, catalog, rest, log);
  const namespaces = new NamespaceController(store, catalog, rest, log);
  crds.start();
  gc.start();
  namespaces.start();

  // What a fresh cluster holds: the system namespaces and the kubernetes Service.
  const nsType = catalog.get('', 'v1', 'namespaces')!;
  for (const name of SYSTEM_NAMESPACES) {
    rest.create(nsType, undefined, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } }, DEFAULT_WRITE_OPTIONS);
  }
  rest.create(catalog.get('', 'v1', 'services')!, 'default', {
    apiVersion: 'v1', kind: 'Service',
    metadata: { name: 'kubernetes', labels: { component: 'apiserver', provider: 'kubernetes' } },
    spec: { clusterIP: KUBERNETES_SERVICE_IP, ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: 6443 }] },
  }, DEFAULT_WRITE_OPTIONS);

  let address = '';
  const sockets = new Set<Socket>();
  const server: Server = createServer(createRequestHandler({
    catalog, rest, watches, discovery, faults, log,
    serverAddress: () => address,
  }));
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // Watches are long-lived; the default request timeouts would cut them.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  address = `127.0.0.1:${port}`;
  const url = `http://${address}`;
  const namespace = options.defaultNamespace ?? 'default';

  const dir = await mkdtemp(join(tmpdir(), 'fulcrum-apiserver-'));
  const kubeconfigPath = join(dir, 'kubeconfig');
  await writeFile(kubeconfigPath, kubeconfigYaml(url, namespace), { mode: 0o600 });
  log.info({ url, kubeconfigPath }, 'apiserver listening');

  let stopped = false;
  return {
    url,
    port,
    kubeconfigPath,
    faults,
    kubeConfig: () => kubeConfigFor(url, namespace),
    stats: () => ({ openWatches: watches.openCount, resourceVersion: store.currentRevision }),
    async stop() {
      if (stopped) return;
      stopped = true;
      crds.stop();
      gc.stop();
      namespaces.stop();
      watches.closeAll();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
