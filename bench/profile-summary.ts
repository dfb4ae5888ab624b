/**
 * Summarize V8 CPU profiles (`--cpu-prof`): self time per function, the top N, per file given.
 *   node --import ./node_modules/tsx/dist/loader.mjs bench/profile-summary.ts DIR_OR_FILES… [--top N]
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

type Node = {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
};
type Profile = { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number };

export function summarize(
  p: Profile,
  top: number,
): { total_ms: number; rows: { fn: string; ms: number; pct: number }[] } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++)
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  const byFn = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    const where = f.url
      ? `${relative(process.cwd(), f.url.replace(/^file:\/\//, ''))}:${f.lineNumber + 1}`
      : '';
    const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
    byFn.set(key, (byFn.get(key) ?? 0) + us);
    total += us;
  }
  const rows = [...byFn.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([fn, us]) => ({ fn, ms: Math.round(us / 1000), pct: Math.round((us / total) * 1000) / 10 }));
  return { total_ms: Math.round(total / 1000), rows };
}

function files(args: string[]): string[] {
  return args.flatMap((a) =>
    statSync(a).isDirectory()
      ? readdirSync(a, { recursive: true })
          .map(String)
          .filter((f) => f.endsWith('.cpuprofile'))
          .map((f) => join(a, f))
      : [a],
  );
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const t = argv.indexOf('--top');
  const top = t >= 0 ? Number(argv[t + 1]) : 15;
  const paths = argv.filter((a, i) => a !== '--top' && i !== t + 1);
  for (const f of files(paths)) {
    const s = summarize(JSON.parse(readFileSync(f, 'utf8')) as Profile, top);
    console.log(`\n${f}: ${s.total_ms} ms sampled`);
    for (const r of s.rows)
      console.log(`  ${String(r.pct).padStart(5)} %  ${String(r.ms).padStart(7)} ms  ${r.fn}`);
  }
}
