// How the agent's Node.js runtime is configured where it is deployed (the Helm chart's
// NODE_OPTIONS, the lab's agent processes). A 1 MB young generation makes V8 collect
// the short-lived garbage of a big reconcile (rings built one by one, parsed desired
// state) before it grows the heap: the agent programmed with 512 VIPs × 100 backends
// then holds ~145 MB instead of ~300 MB (npm run bench:agent).
export const AGENT_NODE_OPTIONS = ['--max-semi-space-size=1'] as const;
