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

const TICKS = 100; // USER_HZ on Linux

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICKS;
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
  begin(extra: readonly Tracked[] = []): {
    add: (t: Tracked) => void;
    end: () => Record<string, number>;
    /** CPU seconds per process name since `begin` (or since a process started, if later). */
    cpu: () => Record<string, number>;
  } {
    const all = [...this.tracked, ...extra];
    const cpuAtStart = new Map<number, number>();
    const mark = (t: Tracked) => {
      for (const pid of t.pids()) {
        resetPeak(pid);
        cpuAtStart.set(pid, cpuSeconds(pid) ?? 0);
      }
    };
    for (const t of all) mark(t);
    return {
      add: (t) => {
        all.push(t);
        mark(t);
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
      cpu: () => {
        const out: Record<string, number> = {};
        for (const t of all) {
          // Several processes under one name: the sum (PostgreSQL's backends share the work).
          let s = 0;
          for (const pid of t.pids()) s += Math.max(0, (cpuSeconds(pid) ?? 0) - (cpuAtStart.get(pid) ?? 0));
          if (s > 0) out[t.name] = Math.max(out[t.name] ?? 0, Math.round(s * 100) / 100);
        }
        return out;
      },
    };
  }
}
