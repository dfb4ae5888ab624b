export type RetryDelays = Readonly<{
  baseMs: number;
  maxMs: number;
  /** The spread around the delay, as a fraction: 0.25 draws from 75 % to 125 %. */
  jitter: number;
}>;

/**
 * The delay before retry number `attempt` (from 0): `baseMs · 2^attempt`, at most `maxMs`, spread
 * by `jitter` so that many clients that failed together do not retry together.
 */
export function backoffDelay(attempt: number, b: RetryDelays): number {
  const ms = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(attempt, 30));
  return ms * (1 - b.jitter + Math.random() * 2 * b.jitter);
}
