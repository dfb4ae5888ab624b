import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../tests/support/proc';
import { StateStore } from './state-store';

const EPOCH = '0190a000-0000-7000-8000-0000000000e1';
const WINDOW = 4;
// A full batch of a table with a backlog (500 rows of ~80 bytes).
const PAYLOAD = JSON.stringify({
  rows: Array.from({ length: 500 }, (_, i) => ({ id: i, v: 'x'.repeat(60) })),
});

const size = (path: string) => (existsSync(path) ? statSync(path).size : 0);

/**
 * What a rows lane does to state.db while it drains a backlog: record each batch with its
 * payload before publishing, confirm the oldest once the window is full. Returns the largest
 * state.db + WAL seen.
 */
function drain(s: StateStore, path: string, batches: number, from = 0): number {
  let peak = 0;
  const open: { id: string; last: number }[] = [];
  for (let i = from; i < from + batches; i++) {
    const id = `b-${i}`;
    s.batches.recordRowBatch({
      batchId: id,
      table: 't',
      epoch: EPOCH,
      firstSeq: i * 500 + 1,
      lastSeq: (i + 1) * 500,
      withSchema: false,
      hash: 'h',
      payload: PAYLOAD,
    });
    open.push({ id, last: (i + 1) * 500 });
    if (open.length >= WINDOW) {
      const done = open.shift()!;
      s.batches.confirmRows('t', done.last, [done.id]);
    }
    peak = Math.max(peak, size(path) + size(`${path}-wal`));
  }
  return peak;
}

function fillDisk(dir: string): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  try {
    for (const chunk of [Buffer.alloc(16 * 1024, 1), Buffer.alloc(512, 1)]) {
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

/** A 2 MiB tmpfs, when this process may mount one (root); undefined otherwise. */
function smallDisk(): { dir: string; unmount: () => void } | undefined {
  if (process.getuid?.() !== 0 || process.platform !== 'linux') return undefined;
  const dir = join(tempDir('state-disk'), 'state');
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  return { dir, unmount: () => execFileSync('umount', ['-l', dir]) };
}

describe('state.db on a small disk', () => {
  it('keeps state.db and its WAL well under 2 MiB while a backlog drains', () => {
    const path = join(tempDir('state-budget'), 'state.db');
    const s = new StateStore(path);
    s.tables.ensure('t', 'rows');
    s.batches.resetEpoch('t', EPOCH);
    try {
      // 300 batches of ~45 KB: 13 MB through state.db, 4 batches held at a time.
      expect(drain(s, path, 300)).toBeLessThan(1024 * 1024);
    } finally {
      s.close();
    }
  });

  const disk = smallDisk();
  (disk ? it : it.skip)('says the disk is full, then carries on by itself once space is freed', () => {
    const { dir, unmount } = disk!;
    const path = join(dir, 'state.db');
    try {
      const s = new StateStore(path);
      s.tables.ensure('t', 'rows');
      s.batches.resetEpoch('t', EPOCH);
      drain(s, path, 20);
      const filler = fillDisk(dir);
      let code: string | undefined;
      try {
        drain(s, path, 80, 20);
      } catch (err) {
        code = (err as { code?: string }).code;
      }
      expect(code).toBe('SQLITE_FULL');
      s.relieveFullDisk();
      const kept = s.batches.inflight('t').map((r) => r.batchId);
      expect(kept.length).toBeGreaterThan(0);

      rmSync(filler);
      // Far more than the disk holds goes through once there is room again.
      drain(s, path, 300, 100);
      expect(s.batches.inflight('t')).toHaveLength(kept.length + WINDOW - 1);
      expect(s.tables.get('t')!.confirmedSeq).toBe((100 + 300 - WINDOW + 1) * 500);
      s.close();
      const db = new Database(path, { readonly: true });
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      db.close();
    } finally {
      unmount();
    }
  });
});
