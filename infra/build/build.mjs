// Builds what the repository runs without a TypeScript loader: the two command-line binaries
// (dist/) and the operator console (console/dist/). Runs at `npm ci` (the `prepare` script) and
// before `make run` / `make test`; esbuild takes well under a second for all of it.
//
//   node infra/build/build.mjs            build everything
//   node infra/build/build.mjs --watch    rebuild on change (console work)
import { build, context } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const watch = process.argv.includes('--watch');

/** @type {import('esbuild').BuildOptions[]} */
const targets = [
  {
    // The CLIs: one ESM bundle each, split so that a command loads only what it needs (an
    // operator command never parses the cloud roles, NATS or Fastify). The packages every command
    // needs at start are bundled (Node then reads one file instead of hundreds); the rest stay in
    // node_modules. zod is bundled with the one package that validates through it, so both use
    // the same copy.
    entryPoints: { sluice: 'cli/sluice.ts', 'sluice-agent': 'edge-agent/bin.ts' },
    outdir: 'dist',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    plugins: [externalExcept(['commander', 'zod', 'fastify-type-provider-zod', 'uuidv7', 'yaml'])],
    sourcemap: 'linked',
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    banner: {
      // CommonJS packages and code that use require/__dirname keep working inside the ESM bundle.
      js: [
        "import { createRequire as __sluiceRequire } from 'node:module';",
        "import { fileURLToPath as __sluiceFileUrl } from 'node:url';",
        'const require = __sluiceRequire(import.meta.url);',
        'const __filename = __sluiceFileUrl(import.meta.url);',
        "const __dirname = __filename.slice(0, __filename.lastIndexOf('/'));",
      ].join('\n'),
    },
    logLevel: 'warning',
  },
];

if (existsSync(join(root, 'console', 'src', 'main.tsx'))) {
  targets.push({
    // The operator console: a static single-page app the API serves at /console.
    entryPoints: ['console/src/main.tsx'],
    outdir: 'console/dist',
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    sourcemap: 'linked',
    jsx: 'automatic',
    jsxImportSource: 'preact',
    loader: { '.css': 'css' },
    logLevel: 'warning',
  });
}

/** The console's page is static: copied beside the bundle it loads. */
function copyConsolePage() {
  if (!existsSync(join(root, 'console', 'index.html'))) return;
  mkdirSync(join(root, 'console', 'dist'), { recursive: true });
  copyFileSync(join(root, 'console', 'index.html'), join(root, 'console', 'dist', 'index.html'));
}

/** Every npm package stays external (resolved from node_modules at run time) but these. */
function externalExcept(bundled) {
  const keep = (path) => bundled.some((p) => path === p || path.startsWith(`${p}/`));
  return {
    name: 'external-except',
    setup(b) {
      b.onResolve({ filter: /^[^./]/ }, (args) =>
        args.path.startsWith('node:') || !keep(args.path) ? { path: args.path, external: true } : undefined,
      );
    },
  };
}

const started = Date.now();
copyConsolePage();
if (watch) {
  for (const t of targets) await (await context({ absWorkingDir: root, ...t })).watch();
  console.log('build: watching for changes');
} else {
  await Promise.all(targets.map((t) => build({ absWorkingDir: root, ...t })));
  console.log(`build: ${targets.map((t) => t.outdir).join(', ')} in ${Date.now() - started} ms`);
}
