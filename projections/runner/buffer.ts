import { backoffDelay } from '../../infra/backoff';

/**
 * A bounded hand-over between the JetStream reader and the applying loop. When it is full the
 * reader stops pulling, so a slow store slows the consumer instead of filling memory.
 */
export class BoundedBuffer<T extends { readonly size: number }> {
  private items: T[] = [];
  private bytes = 0;
  private closed = false;
  private takers: (() => void)[] = [];
  private pushers: (() => void)[] = [];

  /** Full at `capacity` items, or at `capacityBytes` (large messages must not fill memory). */
  constructor(
    private readonly capacity: number,
    private readonly capacityBytes = Number.POSITIVE_INFINITY,
  ) {}

  private static wake(waiters: (() => void)[]): void {
    for (const w of waiters.splice(0)) w();
  }

  /** Resolves false when the buffer was closed (the item is dropped; it will be read again). */
  async push(item: T): Promise<boolean> {
    while (
      !this.closed &&
      (this.items.length >= this.capacity || (this.items.length > 0 && this.bytes >= this.capacityBytes))
    ) {
      await new Promise<void>((r) => this.pushers.push(r));
    }
    if (this.closed) return false;
    this.items.push(item);
    this.bytes += item.size;
    BoundedBuffer.wake(this.takers);
    return true;
  }

  /**
   * Wait for at least one item, then take as many as are ready up to `maxItems` and `maxBytes`
   * (always at least one). Resolves null once closed and empty.
   */
  async take(maxItems: number, maxBytes: number): Promise<T[] | null> {
    while (this.items.length === 0 && !this.closed) {
      await new Promise<void>((r) => this.takers.push(r));
    }
    if (this.items.length === 0) return null;
    let n = 0;
    let bytes = 0;
    while (n < this.items.length && n < maxItems) {
      const size = this.items[n]!.size;
      if (n > 0 && bytes + size > maxBytes) break;
      bytes += size;
      n++;
    }
    const out = this.items.splice(0, n);
    this.bytes -= bytes;
    BoundedBuffer.wake(this.pushers);
    return out;
  }

  close(): void {
    this.closed = true;
    BoundedBuffer.wake(this.takers);
    BoundedBuffer.wake(this.pushers);
  }

  get length(): number {
    return this.items.length;
  }
}

/** A delay that `cancel()` ends early (so stopping never waits out a backoff). */
export function cancellableDelay(ms: number): { promise: Promise<void>; cancel: () => void } {
  let cancel = () => {};
  const promise = new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    cancel = () => {
      clearTimeout(t);
      resolve();
    };
  });
  return { promise, cancel };
}

/** The runner's retry delays: 100 ms doubling up to 5 s, ±25 %. */
export const backoffMs = (attempt: number): number =>
  backoffDelay(attempt, { baseMs: 100, maxMs: 5_000, jitter: 0.25 });
