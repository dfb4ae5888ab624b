/**
 * The import rules of docs/architecture.md fail `make test` when broken: each forbidden import
 * or purity hole below is shown failing the real lint (ESLint on a domain file) or the real
 * dependency check (dependency-cruiser with the repository's config, on a small tree of files).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tempDir } from '../support/proc';
import { ROOT } from '../support/stack';

describe('purity of domain/ (ESLint)', () => {
  /** ESLint as `make test` runs it, on source given as a file of domain/ (read from stdin). */
  const messagesOf = async (code: string): Promise<string[]> => {
    let out: string;
    try {
      out = execFileSync(
        join(ROOT, 'node_modules', '.bin', 'eslint'),
        ['--stdin', '--stdin-filename', join(ROOT, 'domain/lineage/probe.ts'), '--format', 'json'],
        { cwd: ROOT, input: code, encoding: 'utf8' },
      );
    } catch (err) {
      // It exits non-zero when a rule is broken; the report is still on stdout.
      out = (err as { stdout: string }).stdout;
    }
    const [result] = JSON.parse(out) as { messages: { ruleId: string; message: string }[] }[];
    return result!.messages.map((m) => `${m.ruleId}: ${m.message}`);
  };

  // The holes the older rules left open (the others, Date.now() and Math.random(), were already closed).
  it.each([
    [
      'a uuidv7 import',
      "import { uuidv7 } from 'uuidv7';\nexport const id = uuidv7();\n",
      'no-restricted-imports',
    ],
    [
      'crypto.randomUUID()',
      'export const id = globalThis.crypto.randomUUID();\n',
      'Ids come in with the command',
    ],
    ['performance.now()', 'export const t = performance.now();\n', 'performance'],
  ])('refuses %s', async (_what, code, expected) => {
    const messages = await messagesOf(code);
    expect(messages.join('\n')).toContain(expected);
  });

  it('accepts a pure function', async () => {
    expect(await messagesOf('export const add = (a: number, b: number): number => a + b;\n')).toEqual([]);
  });
});

describe('boundaries between folders (dependency-cruiser)', () => {
  /** Files of a small tree, with the repository's tsconfig and packages. */
  function tree(files: Record<string, string>): string {
    const dir = tempDir('boundaries');
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    // The repository's rules, reading the packages through the link as if they were here.
    writeFileSync(
      join(dir, '.dependency-cruiser.cjs'),
      `const base = require(${JSON.stringify(join(ROOT, '.dependency-cruiser.cjs'))});\n` +
        'module.exports = { ...base, options: { ...base.options, preserveSymlinks: true } };\n',
    );
    writeFileSync(join(dir, 'package.json'), readFileSync(join(ROOT, 'package.json')));
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { module: 'commonjs', moduleResolution: 'node', strict: true } }),
    );
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    return dir;
  }
  function violations(dir: string): string[] {
    let out: string;
    try {
      out = execFileSync(
        join(ROOT, 'node_modules', '.bin', 'depcruise'),
        [
          '--config',
          '.dependency-cruiser.cjs',
          '--output-type',
          'json',
          'domain',
          'bridge',
          'infra',
          'edge-agent',
        ],
        { cwd: dir, encoding: 'utf8' },
      );
    } catch (err) {
      // It exits non-zero when a rule is broken; the report is still on stdout.
      out = (err as { stdout: string }).stdout;
    }
    const report = JSON.parse(out) as {
      summary: { violations: { rule: { name: string }; from: string; to: string }[] };
    };
    return report.summary.violations.map((v) => `${v.rule.name} ${v.from} → ${v.to}`).sort();
  }

  it('refuses domain → infra, domain → npm outside the allowlist, cloud → edge-agent, and cycles', () => {
    const dir = tree({
      'domain/rules.ts': "import { store } from '../infra/store';\nexport const rule = store;\n",
      'domain/ids.ts': "import { uuidv7 } from 'uuidv7';\nexport const id = uuidv7;\n",
      'domain/ok.ts': "import { z } from 'zod';\nexport const schema = z.string();\n",
      'infra/store.ts': 'export const store = 1;\n',
      'infra/a.ts': "import { b } from './b';\nexport const a = () => b;\n",
      'infra/b.ts': "import { a } from './a';\nexport const b = () => a;\n",
      'bridge/dispatch.ts': "import { sign } from '../edge-agent/sign';\nexport const send = sign;\n",
      'edge-agent/sign.ts': 'export const sign = 1;\n',
    });
    const found = violations(dir);
    expect(found).toEqual(
      expect.arrayContaining([
        'cloud-never-imports-edge-agent bridge/dispatch.ts → edge-agent/sign.ts',
        'domain-imports-only-domain domain/rules.ts → infra/store.ts',
        expect.stringMatching(/^domain-npm-allowlist domain\/ids\.ts → node_modules\/uuidv7\//),
        expect.stringMatching(/^no-circular infra\/(a|b)\.ts → infra\/(a|b)\.ts$/),
      ]),
    );
    // Nothing else: the allowed import (zod) passes.
    expect(found.filter((v) => v.includes('domain/ok.ts'))).toEqual([]);
  });
});
