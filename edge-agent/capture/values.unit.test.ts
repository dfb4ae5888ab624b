import Database from 'better-sqlite3';
import { reconcile } from './install';
import { Journal } from './journal';
import { decodeWireValue, encodeSqliteValue, parseExact, parseJournalArray } from './values';

function journaled(value: unknown): unknown {
  const db = new Database(':memory:');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v)');
  reconcile(db, { strategyOf: () => 'rows', snapshotOnFirstRun: false, newEpoch: () => 'e' });
  db.prepare('INSERT INTO t (id, v) VALUES (1, ?)').run(value);
  const j = new Journal(db);
  return parseJournalArray(j.after(j.counters()[0]!.tid, 0, 1)[0]!.data)[1];
}

describe('wire values', () => {
  it.each([
    ['2^63 − 1', 9223372036854775807n, { $int: '9223372036854775807' }],
    ['−2^63', -9223372036854775808n, { $int: '-9223372036854775808' }],
    ['2^53 − 1 (still a number)', 9007199254740991n, 9007199254740991],
    ['2^53 (no longer exact as a double)', 9007199254740992n, { $int: '9007199254740992' }],
    ['a small integer', 42n, 42],
    ['REAL', 0.1 + 0.2, 0.30000000000000004],
    ['REAL with a big exponent', 1.5e300, 1.5e300],
    ['+Infinity (REAL)', Infinity, 'Infinity'],
    ['−Infinity (REAL)', -Infinity, '-Infinity'],
    ['NULL', null, null],
    ['TEXT with quotes and unicode', 'a"b\\c 😀 \u0000x', 'a"b\\c 😀 \u0000x'],
    ['TEXT that looks like a big number', '12345678901234567890', '12345678901234567890'],
    ['BLOB', Buffer.from([0, 1, 2, 254, 255]), { $blob: 'AAEC/v8=' }],
    ['empty BLOB', Buffer.alloc(0), { $blob: '' }],
  ])('%s survives trigger → journal → wire', (_name, value, wire) => {
    expect(journaled(value)).toEqual(wire);
  });

  it('encodes values read directly (telemetry) the same way', () => {
    expect(encodeSqliteValue(9223372036854775807n)).toEqual({ $int: '9223372036854775807' });
    expect(encodeSqliteValue(5n)).toBe(5);
    expect(encodeSqliteValue(Buffer.from('hi'))).toEqual({ $blob: 'aGk=' });
    expect(encodeSqliteValue(-Infinity)).toBe('-Infinity');
    expect(encodeSqliteValue(null)).toBeNull();
  });

  it('decodes wire values for write-back exactly', () => {
    expect(decodeWireValue({ $int: '9223372036854775807' })).toBe(9223372036854775807n);
    expect(decodeWireValue(3)).toBe(3n);
    expect(decodeWireValue(2.5)).toBe(2.5);
    expect(decodeWireValue({ $blob: 'AAEC' })).toEqual(Buffer.from([0, 1, 2]));
    expect(decodeWireValue(true)).toBe(1);
  });

  it('parses exactly where JSON.parse would round', () => {
    expect(parseExact('[9007199254740993,-1.5e3,"x\\"y",{"$h":"00"},null,true]')).toEqual([
      { $int: '9007199254740993' },
      -1500,
      'x"y',
      { $h: '00' },
      null,
      true,
    ]);
    expect(() => parseExact('[1,')).toThrow(/invalid JSON/);
  });
});
