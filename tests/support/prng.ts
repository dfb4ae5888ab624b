/**
 * The seeded PRNG of tests and benchmarks (xorshift32): numbers in [0, 1), the same sequence for
 * the same seed, so a failing run can be replayed with the same choices and every benchmark
 * stage gets the same rows.
 */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}
