/** What must be stopped if the run ends early (deadline, Ctrl-C, a failure): servers, roles, agents. */
const stops = new Map<number, () => Promise<unknown> | unknown>();
let next = 0;

export function onCleanup(stop: () => Promise<unknown> | unknown): () => void {
  const id = next++;
  stops.set(id, stop);
  return () => stops.delete(id);
}

/** Newest first (roles before the servers they use), each bounded so a hung one cannot block. */
export async function cleanupAll(timeoutMs = 10_000): Promise<void> {
  const all = [...stops.entries()].reverse();
  stops.clear();
  for (const [, stop] of all) {
    await Promise.race([
      Promise.resolve()
        .then(stop)
        .catch(() => undefined),
      new Promise((r) => setTimeout(r, timeoutMs).unref()),
    ]);
  }
}
