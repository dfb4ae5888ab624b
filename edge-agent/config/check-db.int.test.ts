import Database from 'better-sqlite3';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkAgainstDatabase } from './check-db';
import { formatProblem, parseAgentConfig } from './load';

/** `sluice-agent validate`: the filters and ts_column against the real database file. */
describe('validate against the database', () => {
  it('reports unknown and excluded key columns, a bad predicate and a missing ts_column, with YAML paths', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-check-db-'));
    const path = join(dir, 'app.db');
    const db = new Database(path);
    db.exec(
      'CREATE TABLE t (id INTEGER PRIMARY KEY, status TEXT, secret TEXT); CREATE TABLE temps (id INTEGER PRIMARY KEY, v REAL)',
    );
    db.close();
    const r = parseAgentConfig(
      `connection: { server_url: "mqtt://127.0.0.1:1", device_id: d, root_topic: s/d }
sqlite-replication:
  source_db_path: ${JSON.stringify(path)}
  table_strategies:
    t: { exclude_columns: [id, nope], where: "id IN (SELECT id FROM temps)" }
    temps: { strategy: telemetry, ts_column: ts }
    later: { exclude_columns: [x] }
`,
      {},
    );
    if (!r.ok) throw new Error(r.problems.map(formatProblem).join('\n'));
    const out = checkAgainstDatabase(r.config);
    expect(out.problems.map(formatProblem)).toEqual([
      'sqlite-replication.table_strategies.t.exclude_columns: t has no column nope (it has id, status, secret)',
      'sqlite-replication.table_strategies.t.exclude_columns: id is part of the PRIMARY KEY of t: key columns are always sent (the cloud keys the mirror by them)',
      expect.stringMatching(
        /^sqlite-replication\.table_strategies\.t\.where: must be a deterministic expression .*subqueries prohibited/,
      ),
      'sqlite-replication.table_strategies.temps.ts_column: temps has no column ts (it has id, v)',
    ]);
    expect(out.warnings.map(formatProblem)).toEqual([
      `sqlite-replication.table_strategies.later: ${path} has no table later: its filters were not checked`,
    ]);
  });
});
