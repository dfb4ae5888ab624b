import Database from 'better-sqlite3';
import { join } from 'node:path';
import { tempDir } from '../../tests/support/proc';
import { StateStore } from './state-store';

const E1 = '0190a000-0000-7000-8000-0000000000e1';
const E2 = '0190a000-0000-7000-8000-0000000000e2';
const PK = '{"id":1}';

describe('state.db cloud_versions: the version a change was made under', () => {
  it('reports the previous version for changes journaled at or before the write, the current one after', () => {
    const s = new StateStore(join(tempDir('cv'), 'state.db'));
    try {
      expect(s.cloudVersions.lookup('t', E1)).toBeUndefined(); // nothing written: no lookups at all
      s.cloudVersions.set('t', [{ pk: PK, cloudVersion: 3, fromSeq: 10, epoch: E1 }]);
      let lkcv = s.cloudVersions.lookup('t', E1)!;
      expect([lkcv(PK, 9), lkcv(PK, 10), lkcv(PK, 11)]).toEqual([undefined, undefined, 3]);
      expect(lkcv('{"id":2}', 11)).toBeUndefined();

      s.cloudVersions.set('t', [{ pk: PK, cloudVersion: 5, fromSeq: 20, epoch: E1 }]);
      lkcv = s.cloudVersions.lookup('t', E1)!;
      expect([lkcv(PK, 15), lkcv(PK, 20), lkcv(PK, 21)]).toEqual([3, 3, 5]);

      // The same version again (sent again after a conflict) moves nothing; an older one neither.
      s.cloudVersions.set('t', [{ pk: PK, cloudVersion: 5, fromSeq: 30, epoch: E1 }]);
      s.cloudVersions.set('t', [{ pk: PK, cloudVersion: 4, fromSeq: 40, epoch: E1 }]);
      lkcv = s.cloudVersions.lookup('t', E1)!;
      expect([lkcv(PK, 20), lkcv(PK, 25), lkcv(PK, 35)]).toEqual([3, 5, 5]);
      expect(s.cloudVersions.get('t', PK)).toBe(5);

      // Another journal epoch cannot be compared by commit_seq: the current version.
      expect(s.cloudVersions.lookup('t', E2)!(PK, 1)).toBe(5);
      expect(s.cloudVersions.lookup('other', E1)).toBeUndefined();
    } finally {
      s.close();
    }
  });

  it('upgrades a state.db written before cloud_versions knew where a write landed', () => {
    const path = join(tempDir('cv-old'), 'state.db');
    const old = new Database(path);
    old.exec(`CREATE TABLE cloud_versions (
      table_name TEXT NOT NULL, pk TEXT NOT NULL, cloud_version INTEGER NOT NULL,
      PRIMARY KEY (table_name, pk)) WITHOUT ROWID`);
    old.prepare('INSERT INTO cloud_versions VALUES (?, ?, ?)').run('t', PK, 7);
    old.close();
    const s = new StateStore(path);
    try {
      expect(s.cloudVersions.lookup('t', E1)!(PK, 1)).toBe(7);
      s.cloudVersions.set('t', [{ pk: PK, cloudVersion: 8, fromSeq: 4, epoch: E1 }]);
      const lkcv = s.cloudVersions.lookup('t', E1)!;
      expect([lkcv(PK, 4), lkcv(PK, 5)]).toEqual([7, 8]);
    } finally {
      s.close();
    }
  });
});
