import type { Ctx, StageResult } from './context';
import { percentiles, spread } from './stats';

export type Run = Readonly<{ rows: number; seconds: number; latenciesMs?: readonly number[] }>;

export const seconds = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `run` `ctx.sizes.runs` times (fewer if the run's deadline is near) and summarizes rows/s
 * (median, min, max) and the latencies of all runs together.
 */
export async function measure(
  ctx: Ctx,
  base: Omit<StageResult, 'profile' | 'rss_mb' | 'runs' | 'rows_per_s' | 'latency_ms'>,
  run: (i: number) => Promise<Run>,
  opts: { runs?: number; extraRss?: Parameters<Ctx['rss']['begin']>[0] } = {},
): Promise<StageResult> {
  const probe = ctx.rss.begin(opts.extraRss ?? []);
  const rates: number[] = [];
  const lat: number[] = [];
  let rows = 0;
  const n = opts.runs ?? ctx.sizes.runs;
  for (let i = 0; i < n; i++) {
    if (i > 0 && Date.now() > ctx.deadline) break;
    const r = await run(i);
    rates.push(r.rows / r.seconds);
    rows = r.rows;
    if (r.latenciesMs) lat.push(...r.latenciesMs);
  }
  const result: StageResult = {
    ...base,
    profile: ctx.profile,
    rows_per_run: rows,
    runs: rates.map((x) => Math.round(x)),
    rows_per_s: spread(rates),
    ...(lat.length ? { latency_ms: percentiles(lat) } : {}),
    rss_mb: probe.end(),
    cpu_s: probe.cpu(),
  };
  ctx.log(
    `  ${result.label}${base.row_bytes ? ` ${base.row_bytes} B` : ''}: ${Math.round(result.rows_per_s!.median).toLocaleString('en-US')} rows/s`,
  );
  return result;
}

/** Keep at most `window` promises in flight over `items`, in order of start. */
export async function windowed<T>(
  items: readonly T[],
  window: number,
  start: (item: T, i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  let failed: unknown;
  const lane = async () => {
    while (next < items.length && failed === undefined) {
      const i = next++;
      try {
        await start(items[i]!, i);
      } catch (err) {
        failed = err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, items.length) }, lane));
  if (failed !== undefined) throw failed instanceof Error ? failed : new Error(String(failed));
}
