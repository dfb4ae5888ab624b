// Starts one private PostgreSQL cluster for a whole jest run (initdb into a temp dir, free port).
// Suites create their own database in it (tests/support/postgres.ts). Plain JS: jest loads it
// before any transform is set up.
const { spawnSync } = require('node:child_process');
const { mkdtempSync, chmodSync, existsSync, readdirSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const net = require('node:net');

function pgBin(name) {
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const p = join(base, v, 'bin', name);
      if (existsSync(p)) return p;
    }
  }
  return name;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// `fsync: true` (benchmarks of durability) keeps PostgreSQL's own default; tests run without it.
async function startCluster({ fsync = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-pg-'));
  chmodSync(dir, 0o777);
  const dataDir = join(dir, 'data');
  const port = await freePort();
  const asRoot = process.getuid && process.getuid() === 0;
  const run = (bin, args) => {
    const cmd = asRoot ? 'runuser' : bin;
    const full = asRoot ? ['-u', 'postgres', '--', bin, ...args] : args;
    const r = spawnSync(cmd, full, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${bin} failed: ${r.stderr || r.stdout}`);
  };
  run(pgBin('initdb'), ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  run(pgBin('pg_ctl'), [
    '-D',
    dataDir,
    '-l',
    join(dir, 'pg.log'),
    '-w',
    '-o',
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=${fsync ? 'on' : 'off'} -c max_connections=300`,
    'start',
  ]);
  const stop = () => {
    try {
      run(pgBin('pg_ctl'), ['-D', dataDir, '-m', 'immediate', 'stop']);
    } catch {
      /* already gone */
    }
  };
  return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, dataDir, dir, port, stop, run, pgBin };
}

module.exports = { startCluster, pgBin };
