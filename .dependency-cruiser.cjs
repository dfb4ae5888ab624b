/**
 * Import rules checked by `make test` (docs/architecture.md, "Import rules"):
 * no cycles anywhere, a pure domain, and cloud roles that never reach into the edge agent.
 * Type-only imports count: a cycle through types is still a cycle in the design.
 */
const TEST = '\\.(unit|int|e2e)\\.test\\.ts$';

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Modules import each other in one direction; move the shared part into a module both use.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'domain-imports-only-domain',
      severity: 'error',
      comment: 'domain/ is pure: it imports nothing of the roles or adapters (tests may use tests/support).',
      from: { path: '^domain/', pathNot: TEST },
      to: { pathNot: '^domain/', dependencyTypesNot: ['npm', 'npm-dev', 'npm-optional', 'npm-peer', 'core'] },
    },
    {
      name: 'domain-no-node-builtins',
      severity: 'error',
      comment: 'domain/ takes time, ids and IO results as inputs: no node: modules.',
      from: { path: '^domain/', pathNot: TEST },
      to: { dependencyTypes: ['core'] },
    },
    {
      name: 'domain-npm-allowlist',
      severity: 'error',
      comment: 'domain/ uses pure libraries only: zod (wire schemas) and @noble/hashes (digests).',
      from: { path: '^domain/', pathNot: TEST },
      to: {
        dependencyTypes: ['npm', 'npm-dev', 'npm-optional', 'npm-peer'],
        pathNot: '(^|/)node_modules/(zod|@noble/hashes)/',
      },
    },
    {
      name: 'cloud-never-imports-edge-agent',
      severity: 'error',
      comment:
        'The cloud roles run without the agent; what both need lives in domain/ or infra/ (tests may drive an agent).',
      from: { path: '^(bridge|worker|projections|api|cli)/', pathNot: TEST },
      to: { path: '^edge-agent/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|\\.data|coverage)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.tsx', '.js', '.mjs', '.cjs', '.d.ts'],
    },
  },
};
