/** Wait for a condition with a deadline; tests never sleep for a fixed time. */
export async function waitFor<T>(
  probe: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  opts: {
    timeoutMs?: number;
    intervalMs?: number;
    /** What was awaited; a function is called only at the timeout, so it can show the state then. */
    message?: string | (() => string);
  } = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const intervalMs = opts.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== null && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${messageOf(opts.message)}${why}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

function messageOf(message: string | (() => string) | undefined): string {
  if (typeof message !== 'function') return message ?? 'condition';
  try {
    return message();
  } catch (err) {
    return `condition (its message failed: ${err instanceof Error ? err.message : String(err)})`;
  }
}
