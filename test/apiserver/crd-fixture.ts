// The CRD the apiserver tests use, read from the same YAML kubectl applies. loadYaml maps the
// wire names (x-kubernetes-validations, default) onto client-node's model properties, which
// its serializer needs to send them back.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadYaml } from '@kubernetes/client-node';
import type { V1CustomResourceDefinition } from '@kubernetes/client-node';
import { FIXTURES } from './helpers.ts';

export const POOL_CRD = loadYaml<V1CustomResourceDefinition>(readFileSync(join(FIXTURES, 'crd.yaml'), 'utf8'));
