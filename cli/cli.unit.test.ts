import { CliError, EXIT, exitCodeFor } from './client';
import { actionsFromFlags, parseActionsFile } from './column-actions';
import { summarizeEvent } from './event-summary';
import { table } from './table';
import { runCli } from './program';

const usage = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(CliError);
    return (err as CliError).exitCode;
  }
  throw new Error('expected a CliError');
};

describe('column actions from flags', () => {
  const cols = ['id', 'mode', 'setpoint', 'a:b'];

  it('means "mirror everything" without flags', () => {
    expect(actionsFromFlags({}, cols)).toBeUndefined();
  });

  it('renames, ignores and defers, comma-separated or repeated', () => {
    expect(
      actionsFromFlags({ mirror: ['mode:hvac_mode', 'id'], ignore: ['setpoint'], defer: [] }, cols),
    ).toEqual([
      { column: 'mode', action: 'mirror', mirror_column_name: 'hvac_mode' },
      { column: 'id', action: 'mirror' },
      { column: 'setpoint', action: 'ignore' },
    ]);
    expect(actionsFromFlags({ ignore: ['mode, setpoint'] }, cols)).toEqual([
      { column: 'mode', action: 'ignore' },
      { column: 'setpoint', action: 'ignore' },
    ]);
  });

  it('keeps a column whose name has a colon whole, and renames it after the last colon', () => {
    expect(actionsFromFlags({ mirror: ['a:b'] }, cols)).toEqual([{ column: 'a:b', action: 'mirror' }]);
    expect(actionsFromFlags({ mirror: ['a:b:ab'] }, cols)).toEqual([
      { column: 'a:b', action: 'mirror', mirror_column_name: 'ab' },
    ]);
  });

  it('refuses unknown columns, a column given twice, and an empty name', () => {
    expect(usage(() => actionsFromFlags({ ignore: ['nope'] }, cols))).toBe(EXIT.usage);
    expect(usage(() => actionsFromFlags({ mirror: ['mode'], ignore: ['mode'] }, cols))).toBe(EXIT.usage);
    expect(usage(() => actionsFromFlags({ mirror: ['mode:'] }, cols))).toBe(EXIT.usage);
    // Without a known schema, names are passed through for the server to judge.
    expect(actionsFromFlags({ ignore: ['nope'] })).toEqual([{ column: 'nope', action: 'ignore' }]);
  });

  it('reads an actions file as an array or {column_actions}', () => {
    const one = [{ column: 'mode', action: 'ignore' }];
    expect(parseActionsFile(JSON.stringify(one), 'f.json')).toEqual(one);
    expect(parseActionsFile(JSON.stringify({ column_actions: one }), 'f.json')).toEqual(one);
    expect(usage(() => parseActionsFile('{', 'f.json'))).toBe(EXIT.usage);
    expect(usage(() => parseActionsFile('[{"column":"mode","action":"copy"}]', 'f.json'))).toBe(EXIT.usage);
  });
});

describe('exit codes', () => {
  it('maps HTTP answers to the documented codes', () => {
    expect([400, 401, 403, 404, 409, 410, 422, 500, 503].map((s) => exitCodeFor(s))).toEqual([
      EXIT.usage,
      EXIT.auth,
      EXIT.auth,
      EXIT.notFound,
      EXIT.conflict,
      EXIT.notFound,
      EXIT.usage,
      EXIT.unexpected,
      EXIT.unexpected,
    ]);
  });
});

describe('output', () => {
  it('aligns columns, right-aligns numbers and cuts long cells', () => {
    const out = table(
      [
        { id: 'a', n: 5, long: 'x'.repeat(20) },
        { id: 'bbb', n: 12345, long: null },
      ],
      [
        { header: 'ID', get: (r) => r.id },
        { header: 'N', get: (r) => r.n, right: true },
        { header: 'LONG', get: (r) => r.long, max: 8 },
      ],
    );
    expect(out).toBe('ID       N  LONG\na        5  xxxxxxx…\nbbb  12345  -\n');
  });

  it('summarizes events in words', () => {
    expect(
      summarizeEvent('RowsStaged', {
        reason: 'schema_review',
        rows: [{ commit_seq: 4 }, { commit_seq: 9 }],
        duplicates_skipped: 2,
      }),
    ).toBe('2 rows staged (schema_review) commit_seq 4–9, 2 duplicates skipped');
    expect(summarizeEvent('SomethingNew', { a: 1 })).toBe('{"a":1}');
    expect(
      summarizeEvent('StateWriteConflictDetected', {
        conflicts: [{ commit_seq: 7 }, { commit_seq: 9 }],
        reissued: 1,
      }),
    ).toBe('2 device change(s) lost to the cloud row (commit_seq 7, 9); 1 key(s) sent again');
    expect(summarizeEvent('CloudRowsWritten', { cloud_version: 3, rows: [{}, {}] })).toBe(
      '2 cloud rows written as cloud_version 3',
    );
  });
});

describe('sluice rows write', () => {
  const run = async (args: string[]) => {
    let err = '';
    const { code } = await runCli(
      [
        ...args,
        '--api',
        'http://127.0.0.1:9',
        '--token',
        't',
        '--project',
        '0190a000-0000-7000-8000-000000000001',
      ],
      { out: async () => {}, err: (t) => void (err += t) },
    );
    return { code, err };
  };
  const L = '0190a000-0000-7000-8000-0000000000aa';

  it('refuses rows that are not JSON, and a write of nothing, before any request', async () => {
    const bad = await run(['rows', 'write', L, '--device', 'd', '--row', '{pk:1}']);
    expect(bad.code).toBe(EXIT.usage);
    expect(bad.err).toContain('--row is not JSON');
    const none = await run(['rows', 'write', L, '--device', 'd']);
    expect(none.code).toBe(EXIT.usage);
    expect(none.err).toContain('nothing to write');
    expect((await run(['lineages', 'authority', L, 'cloud'])).code).toBe(EXIT.usage);
  });
});
