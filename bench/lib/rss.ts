import { readFileSync, writeFileSync } from 'node:fs';

/**
 * Peak resident memory per process, per stage, from /proc (Linux). `begin` resets each tracked
 * process's high-water mark (`echo 5 > /proc/PID/clear_refs`), `end` reads `VmHWM`: the peak
 * since the reset. Read before a process exits; a process that is gone reports nothing.
 */
export type Tracked = Readonly<{ name: string; pids: () => readonly number[] }>;

function vmHwmKb(pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function resetPeak(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    /* not ours, or gone: its peak then covers its whole life */
  }
}

/** Children of a process (for PostgreSQL: the backends and helpers of the postmaster). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

export const self: Tracked = { name: 'bench', pids: () => [process.pid] };

export class PeakRss {
  private readonly tracked: Tracked[];
  constructor(base: readonly Tracked[]) {
    this.tracked = [self, ...base];
  }

  /** Start a measurement over the base processes and these extra ones. */
  begin(extra: readonly Tracked[] = []): { add: (t: Tracked) => void; end: () => Record<string, number> } {
    const all = [...this.tracked, ...extra];
    for (const t of all) for (const pid of t.pids()) resetPeak(pid);
    return {
      add: (t) => {
        all.push(t);
        for (const pid of t.pids()) resetPeak(pid);
      },
      end: () => {
        const out: Record<string, number> = {};
        for (const t of all) {
          // Several processes under one name (PostgreSQL backends, agents): the largest one.
          const kb = Math.max(0, ...t.pids().map((p) => vmHwmKb(p) ?? 0));
          if (kb > 0) out[t.name] = Math.max(out[t.name] ?? 0, Math.round(kb / 1024));
        }
        return out;
      },
    };
  }
}
