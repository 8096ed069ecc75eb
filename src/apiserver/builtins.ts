// Built-in resource types the project needs, each with the parts of its real registry
// strategy that controllers observe: defaulting, status handling, generation policy, field
// selectors, strategic-merge-patch keys, validation and printer columns. Kubernetes v1.33 is
// the reference; where a real strategy does something this server does not, the comment says so.

import { isIP } from 'node:net';
import { asString, deepEqual, getPath, isObject, validateName } from './meta.ts';
import type { NameRule } from './meta.ts';
import { fieldErrors } from './status.ts';
import type { FieldError, JsonObject, KubeObject, PatchMeta, PatchMetaEntry, PrinterColumn, ResourceType, StrategyContext } from './types.ts';

/** Name rules per resource, applied by the generic registry to metadata.name. */
export const NAME_RULES: Record<string, NameRule> = {
  'core/namespaces': 'dns1123-label',
  'core/services': 'dns1035-label',
};

const METADATA_PATCH_META: [string, PatchMetaEntry][] = [
  ['metadata.finalizers', { strategy: 'merge' }],
  ['metadata.ownerReferences', { strategy: 'merge', mergeKey: 'uid' }],
];

function patchMeta(entries: [string, PatchMetaEntry][]): PatchMeta {
  return new Map([...METADATA_PATCH_META, ...entries]);
}

/** Strategic-merge metadata shared by every type (its ObjectMeta tags only). */
export const OBJECT_META_PATCH_META: PatchMeta = patchMeta([]);

function define(partial: Partial<ResourceType> & Pick<ResourceType, 'group' | 'version' | 'resource' | 'kind' | 'namespaced'>): ResourceType {
  const storageKey = `${partial.group === '' ? 'core' : partial.group}/${partial.resource}`;
  return {
    singular: partial.kind.toLowerCase(),
    listKind: `${partial.kind}List`,
    shortNames: [],
    categories: [],
    storageKey,
    storageVersion: partial.group === '' ? partial.version : `${partial.group}/${partial.version}`,
    statusSubresource: false,
    extraSubresources: [],
    generation: 'none',
    allowCreateOnUpdate: false,
    fieldLabels: {},
    patchMeta: OBJECT_META_PATCH_META,
    printerColumns: [],
    ...partial,
  };
}

const str = (path: string) => (o: KubeObject): string | undefined => asString(getPath(o, path));

function spec(obj: KubeObject): JsonObject {
  if (!isObject(obj['spec'])) obj['spec'] = {};
  return obj['spec'] as JsonObject;
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

// ---------------------------------------------------------------- namespaces

const namespaces = define({
  group: '', version: 'v1', resource: 'namespaces', kind: 'Namespace', namespaced: false,
  shortNames: ['ns'],
  statusSubresource: true,
  extraSubresources: ['finalize'],
  fieldLabels: { 'status.phase': str('status.phase') },
  patchMeta: patchMeta([['status.conditions', { strategy: 'merge', mergeKey: 'type' }]]),
  printerColumns: [
    { name: 'Status', type: 'string', description: 'The status of the namespace', compute: (o) => getPath(o, 'status.phase') ?? '' },
  ],
  prepareForCreate(obj) {
    obj['status'] = { phase: 'Active' };
    const s = spec(obj);
    // The namespace controller's finalizer: content is deleted before the namespace goes.
    const finalizers = list(s['finalizers']).filter((f): f is string => typeof f === 'string');
    if (!finalizers.includes('kubernetes')) finalizers.push('kubernetes');
    s['finalizers'] = finalizers;
    // Since v1.21 every namespace carries its own name as an immutable label.
    obj.metadata.labels = { ...(obj.metadata.labels ?? {}), 'kubernetes.io/metadata.name': obj.metadata.name ?? '' };
  },
  prepareForUpdate(obj, old) {
    // spec.finalizers change only through the /finalize subresource.
    obj['spec'] = old['spec'];
    obj.metadata.labels = { ...(obj.metadata.labels ?? {}), 'kubernetes.io/metadata.name': obj.metadata.name ?? '' };
  },
});

// ---------------------------------------------------------------- services

const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];
const PROTOCOLS = ['TCP', 'UDP', 'SCTP'];
export const NODE_PORT_RANGE = { min: 30000, max: 32767 };

function needsNodePorts(svcSpec: JsonObject): boolean {
  if (svcSpec['type'] === 'NodePort') return true;
  return svcSpec['type'] === 'LoadBalancer' && svcSpec['allocateLoadBalancerNodePorts'] !== false;
}

function defaultService(obj: KubeObject, ctx: StrategyContext, old: KubeObject | undefined): void {
  const s = spec(obj);
  s['type'] ??= 'ClusterIP';
  s['sessionAffinity'] ??= 'None';
  const oldSpec = old !== undefined && isObject(old['spec']) ? (old['spec'] as JsonObject) : undefined;
  if (s['type'] === 'ExternalName') return;
  // Allocated values survive an update that omits them (kubectl replace, PUT of a manifest).
  if (oldSpec !== undefined && (s['clusterIP'] === undefined || s['clusterIP'] === '') && oldSpec['type'] !== 'ExternalName') {
    s['clusterIP'] = oldSpec['clusterIP'];
    s['clusterIPs'] = oldSpec['clusterIPs'];
    s['ipFamilies'] ??= oldSpec['ipFamilies'];
    s['ipFamilyPolicy'] ??= oldSpec['ipFamilyPolicy'];
  }
  if (s['clusterIP'] === undefined || s['clusterIP'] === '') s['clusterIP'] = ctx.allocateClusterIP();
  s['clusterIPs'] ??= [s['clusterIP']];
  if (s['clusterIP'] !== 'None') s['ipFamilies'] ??= ['IPv4'];
  s['ipFamilyPolicy'] ??= 'SingleStack';
  s['internalTrafficPolicy'] ??= 'Cluster';
  if (s['type'] === 'NodePort' || s['type'] === 'LoadBalancer') s['externalTrafficPolicy'] ??= 'Cluster';
  if (s['type'] === 'LoadBalancer') s['allocateLoadBalancerNodePorts'] ??= true;
  const oldPorts = oldSpec !== undefined && needsNodePorts(oldSpec) ? list(oldSpec['ports']) : [];
  for (const port of list(s['ports'])) {
    if (!isObject(port)) continue;
    port['protocol'] ??= 'TCP';
    port['targetPort'] ??= port['port'];
    if (!needsNodePorts(s)) continue;
    if (port['nodePort'] === undefined || port['nodePort'] === 0) {
      const previous = oldPorts.find((p) => isObject(p) && p['port'] === port['port'] && (p['protocol'] ?? 'TCP') === port['protocol']);
      port['nodePort'] = isObject(previous) && typeof previous['nodePort'] === 'number' ? previous['nodePort'] : ctx.allocateNodePort();
    }
  }
  if (s['type'] === 'LoadBalancer' && s['externalTrafficPolicy'] === 'Local' && s['healthCheckNodePort'] === undefined) {
    s['healthCheckNodePort'] = oldSpec?.['healthCheckNodePort'] ?? ctx.allocateNodePort();
  }
}

function validateService(obj: KubeObject, old: KubeObject | undefined): FieldError[] {
  const errors: FieldError[] = [];
  const s = isObject(obj['spec']) ? (obj['spec'] as JsonObject) : {};
  const type = s['type'];
  if (!SERVICE_TYPES.includes(String(type))) errors.push(fieldErrors.notSupported('spec.type', type, SERVICE_TYPES));
  const ports = list(s['ports']);
  const headless = s['clusterIP'] === 'None';
  if (ports.length === 0 && type !== 'ExternalName' && !headless) errors.push(fieldErrors.required('spec.ports'));
  const names = new Set<string>();
  ports.forEach((p, i) => {
    const path = `spec.ports[${i}]`;
    if (!isObject(p)) return;
    const port = p['port'];
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
      errors.push(fieldErrors.invalid(`${path}.port`, port, 'must be between 1 and 65535, inclusive'));
    }
    if (!PROTOCOLS.includes(String(p['protocol']))) errors.push(fieldErrors.notSupported(`${path}.protocol`, p['protocol'], PROTOCOLS));
    const name = p['name'];
    if (ports.length > 1 && (typeof name !== 'string' || name === '')) errors.push(fieldErrors.required(`${path}.name`));
    if (typeof name === 'string' && name !== '') {
      if (names.has(name)) errors.push(fieldErrors.duplicate(`${path}.name`, name));
      names.add(name);
    }
    const nodePort = p['nodePort'];
    if (nodePort !== undefined && nodePort !== 0) {
      if (!needsNodePorts(s) && type !== 'LoadBalancer') {
        errors.push(fieldErrors.forbidden(`${path}.nodePort`, `may not be used when \`type\` is '${String(type)}'`));
      } else if (typeof nodePort !== 'number' || nodePort < NODE_PORT_RANGE.min || nodePort > NODE_PORT_RANGE.max) {
        errors.push(fieldErrors.invalid(`${path}.nodePort`, nodePort, `provided port is not in the valid range. The range of valid ports is ${NODE_PORT_RANGE.min}-${NODE_PORT_RANGE.max}`));
      }
    }
    const target = p['targetPort'];
    if (typeof target === 'number' && (target < 1 || target > 65535)) {
      errors.push(fieldErrors.invalid(`${path}.targetPort`, target, 'must be between 1 and 65535, inclusive'));
    }
  });
  const etp = s['externalTrafficPolicy'];
  if (etp !== undefined && type !== 'NodePort' && type !== 'LoadBalancer') {
    errors.push(fieldErrors.invalid('spec.externalTrafficPolicy', etp, 'may only be set when `type` is \'NodePort\' or \'LoadBalancer\''));
  } else if (etp !== undefined && etp !== 'Cluster' && etp !== 'Local') {
    errors.push(fieldErrors.notSupported('spec.externalTrafficPolicy', etp, ['Cluster', 'Local']));
  }
  const lbClass = s['loadBalancerClass'];
  if (lbClass !== undefined && lbClass !== null && type !== 'LoadBalancer') {
    errors.push(fieldErrors.forbidden('spec.loadBalancerClass', 'may only be used when `type` is \'LoadBalancer\''));
  }
  const ip = s['clusterIP'];
  if (typeof ip === 'string' && ip !== 'None' && ip !== '' && isIP(ip) === 0) {
    errors.push(fieldErrors.invalid('spec.clusterIPs[0]', ip, 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)'));
  }
  for (const [i, address] of list(s['externalIPs']).entries()) {
    if (typeof address !== 'string' || isIP(address) === 0) errors.push(fieldErrors.invalid(`spec.externalIPs[${i}]`, address, 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)'));
  }
  if (old !== undefined) {
    const oldSpec = isObject(old['spec']) ? (old['spec'] as JsonObject) : {};
    if (oldSpec['type'] !== 'ExternalName' && type !== 'ExternalName' && oldSpec['clusterIP'] !== undefined && !deepEqual(oldSpec['clusterIP'], s['clusterIP'])) {
      errors.push(fieldErrors.invalid('spec.clusterIPs[0]', s['clusterIP'], 'may not change once set'));
    }
    if (oldSpec['type'] === 'LoadBalancer' && type === 'LoadBalancer' && !deepEqual(oldSpec['loadBalancerClass'], lbClass)) {
      errors.push(fieldErrors.invalid('spec.loadBalancerClass', lbClass ?? null, 'may not change once set'));
    }
  }
  errors.push(...validateLoadBalancerStatus(obj));
  return errors;
}

function validateLoadBalancerStatus(obj: KubeObject): FieldError[] {
  const errors: FieldError[] = [];
  const ingress = list(getPath(obj, 'status.loadBalancer.ingress'));
  ingress.forEach((entry, i) => {
    const path = `status.loadBalancer.ingress[${i}]`;
    if (!isObject(entry)) return;
    const ip = entry['ip'];
    if (ip !== undefined && (typeof ip !== 'string' || isIP(ip) === 0)) {
      errors.push(fieldErrors.invalid(`${path}.ip`, ip, 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)'));
    }
    const mode = entry['ipMode'];
    if (mode !== undefined) {
      if (ip === undefined) errors.push(fieldErrors.required(`${path}.ipMode`, 'must be specified when `ip` is set'));
      if (mode !== 'VIP' && mode !== 'Proxy') errors.push(fieldErrors.notSupported(`${path}.ipMode`, mode, ['VIP', 'Proxy']));
    }
  });
  return errors;
}

function servicePorts(o: KubeObject): string {
  const ports = list(getPath(o, 'spec.ports')).filter(isObject);
  if (ports.length === 0) return '<none>';
  return ports.map((p) => `${String(p['port'])}${p['nodePort'] ? `:${String(p['nodePort'])}` : ''}/${String(p['protocol'] ?? 'TCP')}`).join(',');
}

function externalIPs(o: KubeObject): string {
  const type = getPath(o, 'spec.type');
  const ingress = list(getPath(o, 'status.loadBalancer.ingress')).filter(isObject).map((i) => String(i['ip'] ?? i['hostname'] ?? ''));
  const external = list(getPath(o, 'spec.externalIPs')).map(String);
  if (type === 'LoadBalancer') {
    const all = [...ingress, ...external];
    return all.length > 0 ? all.join(',') : '<pending>';
  }
  if (type === 'ExternalName') return asString(getPath(o, 'spec.externalName')) ?? '<none>';
  return external.length > 0 ? external.join(',') : '<none>';
}

const services = define({
  group: '', version: 'v1', resource: 'services', kind: 'Service', namespaced: true,
  shortNames: ['svc'],
  categories: ['all'],
  statusSubresource: true,
  fieldLabels: { 'spec.clusterIP': str('spec.clusterIP'), 'spec.type': str('spec.type') },
  patchMeta: patchMeta([
    ['spec.ports', { strategy: 'merge', mergeKey: 'port' }],
    ['status.conditions', { strategy: 'merge', mergeKey: 'type' }],
  ]),
  printerColumns: [
    { name: 'Type', type: 'string', compute: (o) => getPath(o, 'spec.type') ?? '' },
    { name: 'Cluster-IP', type: 'string', compute: (o) => getPath(o, 'spec.clusterIP') ?? '' },
    { name: 'External-IP', type: 'string', compute: externalIPs },
    { name: 'Port(s)', type: 'string', compute: servicePorts },
  ],
  prepareForCreate(obj, ctx) {
    obj['status'] = { loadBalancer: {} };
    defaultService(obj, ctx, undefined);
  },
  prepareForUpdate(obj, old, ctx) {
    defaultService(obj, ctx, old);
  },
  validate: validateService,
});

// ---------------------------------------------------------------- nodes

function nodeStatus(o: KubeObject): string {
  const ready = list(getPath(o, 'status.conditions')).find((c) => isObject(c) && c['type'] === 'Ready');
  let status = !isObject(ready) ? 'Unknown' : ready['status'] === 'True' ? 'Ready' : 'NotReady';
  if (getPath(o, 'spec.unschedulable') === true) status += ',SchedulingDisabled';
  return status;
}

function nodeRoles(o: KubeObject): string {
  const roles = Object.keys(o.metadata.labels ?? {})
    .filter((l) => l.startsWith('node-role.kubernetes.io/'))
    .map((l) => l.slice('node-role.kubernetes.io/'.length));
  return roles.length > 0 ? roles.sort().join(',') : '<none>';
}

const nodes = define({
  group: '', version: 'v1', resource: 'nodes', kind: 'Node', namespaced: false,
  shortNames: ['no'],
  statusSubresource: true,
  fieldLabels: { 'spec.unschedulable': (o) => String(getPath(o, 'spec.unschedulable') === true) },
  patchMeta: patchMeta([
    ['spec.podCIDRs', { strategy: 'merge' }],
    ['status.conditions', { strategy: 'merge', mergeKey: 'type' }],
    ['status.addresses', { strategy: 'merge', mergeKey: 'type' }],
  ]),
  printerColumns: [
    { name: 'Status', type: 'string', compute: nodeStatus },
    { name: 'Roles', type: 'string', compute: nodeRoles },
    { name: 'Version', type: 'string', compute: (o) => getPath(o, 'status.nodeInfo.kubeletVersion') ?? '' },
    { name: 'Internal-IP', type: 'string', priority: 1, compute: (o) => {
      const a = list(getPath(o, 'status.addresses')).find((x) => isObject(x) && x['type'] === 'InternalIP');
      return isObject(a) ? a['address'] : '<none>';
    } },
  ],
  // Nodes accept status on create: kubelets register with their status already filled in.
  validate(obj) {
    const errors: FieldError[] = [];
    list(getPath(obj, 'status.addresses')).forEach((a, i) => {
      if (!isObject(a)) return;
      if (typeof a['type'] !== 'string' || a['type'] === '') errors.push(fieldErrors.required(`status.addresses[${i}].type`));
      if (typeof a['address'] !== 'string' || a['address'] === '') errors.push(fieldErrors.required(`status.addresses[${i}].address`));
    });
    return errors;
  },
});

// ---------------------------------------------------------------- pods

const CONTAINER_PATCH_META: [string, PatchMetaEntry][] = ['containers', 'initContainers', 'ephemeralContainers'].flatMap((c) => [
  [`spec.${c}`, { strategy: 'merge', mergeKey: 'name' }],
  [`spec.${c}.ports`, { strategy: 'merge', mergeKey: 'containerPort' }],
  [`spec.${c}.env`, { strategy: 'merge', mergeKey: 'name' }],
  [`spec.${c}.volumeMounts`, { strategy: 'merge', mergeKey: 'mountPath' }],
  [`spec.${c}.volumeDevices`, { strategy: 'merge', mergeKey: 'devicePath' }],
] as [string, PatchMetaEntry][]);

function podQOS(podSpec: JsonObject): string {
  const containers = [...list(podSpec['containers']), ...list(podSpec['initContainers'])].filter(isObject);
  let any = false;
  let guaranteed = true;
  for (const c of containers) {
    const requests = isObject(getPath(c, 'resources.requests')) ? (getPath(c, 'resources.requests') as JsonObject) : {};
    const limits = isObject(getPath(c, 'resources.limits')) ? (getPath(c, 'resources.limits') as JsonObject) : {};
    if (Object.keys(requests).length > 0 || Object.keys(limits).length > 0) any = true;
    for (const r of ['cpu', 'memory']) {
      if (limits[r] === undefined || (requests[r] !== undefined && requests[r] !== limits[r])) guaranteed = false;
    }
  }
  if (!any) return 'BestEffort';
  return guaranteed ? 'Guaranteed' : 'Burstable';
}

function defaultPod(obj: KubeObject): void {
  const s = spec(obj);
  s['restartPolicy'] ??= 'Always';
  s['dnsPolicy'] ??= 'ClusterFirst';
  s['schedulerName'] ??= 'default-scheduler';
  s['terminationGracePeriodSeconds'] ??= 30;
  s['enableServiceLinks'] ??= true;
  s['securityContext'] ??= {};
  for (const c of [...list(s['containers']), ...list(s['initContainers'])]) {
    if (!isObject(c)) continue;
    const image = typeof c['image'] === 'string' ? c['image'] : '';
    const tagged = /:[^/]+$/.test(image) && !image.endsWith(':latest');
    c['imagePullPolicy'] ??= tagged || image.includes('@') ? 'IfNotPresent' : 'Always';
    c['terminationMessagePath'] ??= '/dev/termination-log';
    c['terminationMessagePolicy'] ??= 'File';
    c['resources'] ??= {};
    for (const p of list(c['ports'])) if (isObject(p)) p['protocol'] ??= 'TCP';
  }
}

/** The fields of a running pod's spec an update may change (ValidatePodUpdate). */
function mutablePodSpecMask(podSpec: unknown): unknown {
  if (!isObject(podSpec)) return podSpec;
  const masked: JsonObject = { ...podSpec };
  for (const field of ['containers', 'initContainers']) {
    masked[field] = list(podSpec[field]).map((c) => (isObject(c) ? { ...c, image: undefined } : c));
  }
  delete masked['activeDeadlineSeconds'];
  delete masked['tolerations'];
  delete masked['terminationGracePeriodSeconds'];
  delete masked['schedulingGates'];
  return masked;
}

function podReady(o: KubeObject): string {
  const statuses = list(getPath(o, 'status.containerStatuses')).filter(isObject);
  const total = list(getPath(o, 'spec.containers')).length;
  return `${statuses.filter((s) => s['ready'] === true).length}/${total}`;
}

const pods = define({
  group: '', version: 'v1', resource: 'pods', kind: 'Pod', namespaced: true,
  shortNames: ['po'],
  categories: ['all'],
  statusSubresource: true,
  fieldLabels: {
    'spec.nodeName': str('spec.nodeName'),
    'spec.restartPolicy': str('spec.restartPolicy'),
    'spec.schedulerName': str('spec.schedulerName'),
    'spec.serviceAccountName': str('spec.serviceAccountName'),
    'spec.hostNetwork': (o) => String(getPath(o, 'spec.hostNetwork') === true),
    'status.phase': str('status.phase'),
    'status.podIP': str('status.podIP'),
    'status.nominatedNodeName': str('status.nominatedNodeName'),
  },
  patchMeta: patchMeta([
    ...CONTAINER_PATCH_META,
    ['spec.volumes', { strategy: 'merge', mergeKey: 'name' }],
    ['spec.imagePullSecrets', { strategy: 'merge', mergeKey: 'name' }],
    ['spec.hostAliases', { strategy: 'merge', mergeKey: 'ip' }],
    ['spec.schedulingGates', { strategy: 'merge', mergeKey: 'name' }],
    ['status.conditions', { strategy: 'merge', mergeKey: 'type' }],
    ['status.podIPs', { strategy: 'merge', mergeKey: 'ip' }],
    ['status.hostIPs', { strategy: 'merge', mergeKey: 'ip' }],
  ]),
  printerColumns: [
    { name: 'Ready', type: 'string', compute: podReady },
    { name: 'Status', type: 'string', compute: (o) => (o.metadata.deletionTimestamp ? 'Terminating' : getPath(o, 'status.phase') ?? '') },
    { name: 'IP', type: 'string', priority: 1, compute: (o) => getPath(o, 'status.podIP') ?? '<none>' },
    { name: 'Node', type: 'string', priority: 1, compute: (o) => getPath(o, 'spec.nodeName') ?? '<none>' },
  ],
  prepareForCreate(obj) {
    defaultPod(obj);
    obj['status'] = { phase: 'Pending', qosClass: podQOS(spec(obj)) };
  },
  prepareForUpdate(obj) {
    defaultPod(obj);
  },
  validate(obj, old) {
    const errors: FieldError[] = [];
    const containers = list(getPath(obj, 'spec.containers'));
    if (containers.length === 0) errors.push(fieldErrors.required('spec.containers'));
    containers.forEach((c, i) => {
      if (!isObject(c)) return;
      if (typeof c['name'] !== 'string' || c['name'] === '') errors.push(fieldErrors.required(`spec.containers[${i}].name`));
      if (typeof c['image'] !== 'string' || c['image'] === '') errors.push(fieldErrors.required(`spec.containers[${i}].image`));
    });
    if (old !== undefined && !deepEqual(mutablePodSpecMask(obj['spec']), mutablePodSpecMask(old['spec']))) {
      errors.push(fieldErrors.forbidden('spec', 'pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)'));
    }
    return errors;
  },
});

// ---------------------------------------------------------------- events (core/v1 and events.k8s.io/v1)

const EVENT_TYPES = ['Normal', 'Warning'];

/** events.k8s.io/v1 field ↔ core/v1 field. Both APIs serve one storage, as in the real server. */
const EVENT_FIELD_MAP: [string, string][] = [
  ['regarding', 'involvedObject'],
  ['note', 'message'],
  ['reportingController', 'reportingComponent'],
  ['deprecatedSource', 'source'],
  ['deprecatedFirstTimestamp', 'firstTimestamp'],
  ['deprecatedLastTimestamp', 'lastTimestamp'],
  ['deprecatedCount', 'count'],
];
const EVENT_SHARED_FIELDS = ['metadata', 'eventTime', 'series', 'reportingInstance', 'action', 'reason', 'related', 'type'];

function convertEvent(src: KubeObject, apiVersion: string, toStorage: boolean): KubeObject {
  const out: KubeObject = { apiVersion, kind: 'Event', metadata: src.metadata };
  for (const f of EVENT_SHARED_FIELDS) if (src[f] !== undefined && f !== 'metadata') out[f] = src[f];
  for (const [external, core] of EVENT_FIELD_MAP) {
    const from = toStorage ? external : core;
    const to = toStorage ? core : external;
    if (src[from] !== undefined) out[to] = src[from];
  }
  return out;
}

function eventObject(o: KubeObject): string {
  const ref = isObject(o['involvedObject']) ? (o['involvedObject'] as JsonObject) : {};
  return `${String(ref['kind'] ?? '').toLowerCase()}/${String(ref['name'] ?? '')}`;
}

const EVENT_FIELD_LABELS: Record<string, (o: KubeObject) => string | undefined> = {
  'involvedObject.kind': str('involvedObject.kind'),
  'involvedObject.namespace': str('involvedObject.namespace'),
  'involvedObject.name': str('involvedObject.name'),
  'involvedObject.uid': str('involvedObject.uid'),
  'involvedObject.apiVersion': str('involvedObject.apiVersion'),
  'involvedObject.resourceVersion': str('involvedObject.resourceVersion'),
  'involvedObject.fieldPath': str('involvedObject.fieldPath'),
  reason: str('reason'),
  reportingComponent: str('reportingComponent'),
  source: str('source.component'),
  type: str('type'),
};

function validateCoreEvent(obj: KubeObject): FieldError[] {
  const errors: FieldError[] = [];
  const ns = asString(getPath(obj, 'involvedObject.namespace'));
  if (ns !== undefined && ns !== '' && ns !== obj.metadata.namespace) {
    errors.push(fieldErrors.invalid('involvedObject.namespace', ns, 'does not match event.namespace'));
  }
  const type = obj['type'];
  if (type !== undefined && type !== '' && !EVENT_TYPES.includes(String(type))) errors.push(fieldErrors.notSupported('type', type, EVENT_TYPES));
  if (obj['eventTime'] !== undefined && obj['eventTime'] !== null) {
    // A "new" event (one with eventTime) must carry the fields events.k8s.io requires.
    errors.push(...validateNewEvent(obj, 'reportingComponent', 'message'));
  }
  return errors;
}

function validateNewEvent(obj: KubeObject, controllerField: string, noteField: string): FieldError[] {
  const errors: FieldError[] = [];
  if (obj['eventTime'] === undefined || obj['eventTime'] === null) errors.push(fieldErrors.required('eventTime'));
  const controller = obj[controllerField];
  if (typeof controller !== 'string' || controller === '') errors.push(fieldErrors.required(controllerField));
  if (typeof obj['reportingInstance'] !== 'string' || obj['reportingInstance'] === '') errors.push(fieldErrors.required('reportingInstance'));
  if (typeof obj['action'] !== 'string' || obj['action'] === '') errors.push(fieldErrors.required('action'));
  if (typeof obj['reason'] !== 'string' || obj['reason'] === '') errors.push(fieldErrors.required('reason'));
  if (!EVENT_TYPES.includes(String(obj['type']))) errors.push(fieldErrors.notSupported('type', obj['type'], EVENT_TYPES));
  const note = obj[noteField];
  if (typeof note === 'string' && Buffer.byteLength(note) > 1024) errors.push(fieldErrors.tooLong(noteField, 1024));
  return errors;
}

const coreEvents = define({
  group: '', version: 'v1', resource: 'events', kind: 'Event', namespaced: true,
  shortNames: ['ev'],
  allowCreateOnUpdate: true,
  fieldLabels: EVENT_FIELD_LABELS,
  printerColumns: [
    { name: 'Type', type: 'string', compute: (o) => o['type'] ?? '' },
    { name: 'Reason', type: 'string', compute: (o) => o['reason'] ?? '' },
    { name: 'Object', type: 'string', compute: eventObject },
    { name: 'Message', type: 'string', compute: (o) => o['message'] ?? '' },
  ],
  validate: validateCoreEvent,
});

const eventsV1 = define({
  group: 'events.k8s.io', version: 'v1', resource: 'events', kind: 'Event', namespaced: true,
  shortNames: ['ev'],
  allowCreateOnUpdate: true,
  storageKey: coreEvents.storageKey,
  storageVersion: 'v1',
  fieldLabels: EVENT_FIELD_LABELS,
  printerColumns: coreEvents.printerColumns,
  toExternal: (stored) => convertEvent(stored, 'events.k8s.io/v1', false),
  toStorage: (external) => convertEvent(external, 'v1', true),
  fieldLabelToStorage(label) {
    for (const [external, core] of EVENT_FIELD_MAP) {
      if (label === external) return core === 'source' ? 'source' : core;
      if (label.startsWith(`${external}.`)) return core + label.slice(external.length);
    }
    return label;
  },
  // events.k8s.io validates new-style events (the objects arrive here in storage form).
  validate: (obj) => [...validateCoreEvent({ ...obj, eventTime: obj['eventTime'] ?? null }), ...validateNewEvent(obj, 'reportingComponent', 'message')]
    .map((e) => ({ ...e, field: e.field.replace(/^reportingComponent/, 'reportingController').replace(/^message/, 'note').replace(/^involvedObject/, 'regarding') })),
});

// ---------------------------------------------------------------- endpointslices

const ADDRESS_TYPES = ['IPv4', 'IPv6', 'FQDN'];

function validateEndpointSlice(obj: KubeObject, old: KubeObject | undefined): FieldError[] {
  const errors: FieldError[] = [];
  const addressType = obj['addressType'];
  if (!ADDRESS_TYPES.includes(String(addressType))) {
    errors.push(addressType === undefined ? fieldErrors.required('addressType') : fieldErrors.notSupported('addressType', addressType, ADDRESS_TYPES));
  }
  if (old !== undefined && old['addressType'] !== addressType) errors.push(fieldErrors.immutable('addressType', addressType));
  const endpoints = list(obj['endpoints']);
  if (endpoints.length > 1000) errors.push(fieldErrors.tooMany('endpoints', endpoints.length, 1000));
  endpoints.forEach((ep, i) => {
    const path = `endpoints[${i}]`;
    if (!isObject(ep)) return;
    const addresses = list(ep['addresses']);
    if (addresses.length === 0) errors.push(fieldErrors.required(`${path}.addresses`, 'must contain at least 1 address'));
    if (addresses.length > 100) errors.push(fieldErrors.tooMany(`${path}.addresses`, addresses.length, 100));
    addresses.forEach((a, j) => {
      const family = typeof a === 'string' ? isIP(a) : 0;
      if (addressType === 'IPv4' && family !== 4) errors.push(fieldErrors.invalid(`${path}.addresses[${j}]`, a, 'must be a valid IPv4 address'));
      if (addressType === 'IPv6' && family !== 6) errors.push(fieldErrors.invalid(`${path}.addresses[${j}]`, a, 'must be a valid IPv6 address'));
    });
    if (typeof ep['nodeName'] === 'string') errors.push(...validateName(ep['nodeName'], 'dns1123-subdomain', `${path}.nodeName`));
    if (ep['hostname'] !== undefined && typeof ep['hostname'] === 'string') errors.push(...validateName(ep['hostname'], 'dns1123-label', `${path}.hostname`));
  });
  const ports = list(obj['ports']);
  if (ports.length > 100) errors.push(fieldErrors.tooMany('ports', ports.length, 100));
  const names = new Set<string>();
  ports.forEach((p, i) => {
    if (!isObject(p)) return;
    const port = p['port'];
    if (port !== undefined && port !== null && (typeof port !== 'number' || port < 1 || port > 65535)) {
      errors.push(fieldErrors.invalid(`ports[${i}].port`, port, 'must be between 1 and 65535, inclusive'));
    }
    if (!PROTOCOLS.includes(String(p['protocol']))) errors.push(fieldErrors.notSupported(`ports[${i}].protocol`, p['protocol'], PROTOCOLS));
    const name = typeof p['name'] === 'string' ? p['name'] : '';
    if (names.has(name)) errors.push(fieldErrors.duplicate(`ports[${i}].name`, name));
    names.add(name);
    if (name !== '') errors.push(...validateName(name, 'dns1123-label', `ports[${i}].name`));
  });
  return errors;
}

function defaultEndpointSlice(obj: KubeObject): void {
  for (const p of list(obj['ports'])) {
    if (!isObject(p)) continue;
    p['protocol'] ??= 'TCP';
    p['name'] ??= '';
  }
}

const endpointSlices = define({
  group: 'discovery.k8s.io', version: 'v1', resource: 'endpointslices', kind: 'EndpointSlice', namespaced: true,
  allowCreateOnUpdate: false,
  generation: 'non-metadata',
  printerColumns: [
    { name: 'AddressType', type: 'string', compute: (o) => o['addressType'] ?? '' },
    { name: 'Ports', type: 'string', compute: (o) => list(o['ports']).filter(isObject).map((p) => String(p['port'] ?? '')).join(',') || '<unset>' },
    { name: 'Endpoints', type: 'string', compute: (o) => {
      const addrs = list(o['endpoints']).filter(isObject).flatMap((e) => list(e['addresses']).map(String));
      if (addrs.length === 0) return '<unset>';
      return addrs.length > 3 ? `${addrs.slice(0, 3).join(',')} + ${addrs.length - 3} more...` : addrs.join(',');
    } },
  ],
  prepareForCreate: defaultEndpointSlice,
  prepareForUpdate: defaultEndpointSlice,
  validate: validateEndpointSlice,
});

// ---------------------------------------------------------------- leases

const leases = define({
  group: 'coordination.k8s.io', version: 'v1', resource: 'leases', kind: 'Lease', namespaced: true,
  allowCreateOnUpdate: true,
  printerColumns: [
    { name: 'Holder', type: 'string', compute: (o) => getPath(o, 'spec.holderIdentity') ?? '' },
  ],
  validate(obj) {
    const errors: FieldError[] = [];
    const duration = getPath(obj, 'spec.leaseDurationSeconds');
    if (duration !== undefined && duration !== null && (typeof duration !== 'number' || duration <= 0)) {
      errors.push(fieldErrors.invalid('spec.leaseDurationSeconds', duration, 'must be greater than 0'));
    }
    const transitions = getPath(obj, 'spec.leaseTransitions');
    if (transitions !== undefined && transitions !== null && (typeof transitions !== 'number' || transitions < 0)) {
      errors.push(fieldErrors.invalid('spec.leaseTransitions', transitions, 'must be greater than or equal to 0'));
    }
    return errors;
  },
});

/** Built-in types in the order discovery lists them. The CRD type itself lives in crds.ts. */
export function builtinResourceTypes(): ResourceType[] {
  return [namespaces, services, nodes, pods, coreEvents, eventsV1, endpointSlices, leases];
}

export const PRINTER_COLUMN_NAME: PrinterColumn = { name: 'Name', type: 'string', format: 'name', description: 'Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names' };
