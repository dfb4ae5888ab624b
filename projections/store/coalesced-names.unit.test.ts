import { coalescedTableName, isSafeIdentifier, mirrorTableName } from './identifiers';

const PROJECT = '0190f3a2-7b1c-7def-8abc-123456789abc';
const FLEET = '0190a0f1-0000-7000-8000-0000000000f1';
const HOSTILE = [
  'a"b',
  '"; DROP TABLE x; --',
  'ÜberTäble',
  '🚀 rockets',
  'x'.repeat(200),
  'My-Table',
  'my_table',
];

describe('coalesced table names', () => {
  it('edge_mirror_p{project8}_{table} and edge_mirror_f{fleet8}_{table}', () => {
    expect(coalescedTableName('project', PROJECT, 'device_state')).toBe('edge_mirror_p0190f3a2_device_state');
    expect(coalescedTableName('fleet', FLEET, 'device_state')).toBe('edge_mirror_f0190a0f1_device_state');
  });

  it('hostile table names become safe, distinct identifiers that never meet a device mirror table', () => {
    const names = HOSTILE.map((t) => coalescedTableName('project', PROJECT, t));
    for (const n of names) {
      expect(isSafeIdentifier(n)).toBe(true);
      expect(n).toMatch(/^edge_mirror_p0190f3a2_[a-z0-9_]+$/);
    }
    expect(new Set(names).size).toBe(names.length);
    // A device id starting with the same hex digits still names another table: the letter differs.
    expect(mirrorTableName(PROJECT, 'device_state')).not.toBe(
      coalescedTableName('project', PROJECT, 'device_state'),
    );
  });

  it('generations and salts change the name', () => {
    const g1 = coalescedTableName('fleet', FLEET, 't');
    expect(coalescedTableName('fleet', FLEET, 't', 2)).not.toBe(g1);
    expect(coalescedTableName('fleet', FLEET, 't', 1, 'salt')).not.toBe(g1);
  });
});
