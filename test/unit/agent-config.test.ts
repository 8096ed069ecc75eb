// The agent configuration's cross-field rules that the schema cannot state alone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AgentConfig, DEFAULT_GUE_PORT, decapGuePort } from '../../src/agent/config.ts';
import { isFulcrumError } from '../../src/shared/errors.ts';

const balancer = { interfaces: [{ name: 'eth0' }], nextHop: { fib: true } };

test('the decap GUE port: guePort, else the balancer\'s, else the default; a disagreement is a config error', () => {
  assert.equal(decapGuePort(AgentConfig.parse({ nodeName: 'n' })), DEFAULT_GUE_PORT);
  assert.equal(decapGuePort(AgentConfig.parse({ nodeName: 'n', guePort: 7000 })), 7000);
  assert.equal(decapGuePort(AgentConfig.parse({ nodeName: 'n', balancer: { ...balancer, guePort: 7001 } })), 7001);
  assert.equal(decapGuePort(AgentConfig.parse({ nodeName: 'n', guePort: 7001, balancer: { ...balancer, guePort: 7001 } })), 7001);
  assert.throws(() => decapGuePort(AgentConfig.parse({ nodeName: 'n', guePort: 7000, balancer })), (err: unknown) =>
    isFulcrumError(err) && err.code === 'ERR_CONFIG' && /guePort 7000 differs from balancer.guePort 6080/.test(err.message));
  assert.equal(AgentConfig.safeParse({ nodeName: 'n', guePort: 0 }).success, false);
});

test('sysctlRoot is an absolute path without a trailing slash, /proc/sys by default', () => {
  assert.equal(AgentConfig.parse({ nodeName: 'n' }).sysctlRoot, '/proc/sys');
  assert.equal(AgentConfig.parse({ nodeName: 'n', sysctlRoot: '/host/proc/sys' }).sysctlRoot, '/host/proc/sys');
  for (const bad of ['host/proc/sys', '/host/proc/sys/', '']) assert.equal(AgentConfig.safeParse({ nodeName: 'n', sysctlRoot: bad }).success, false, bad);
});
