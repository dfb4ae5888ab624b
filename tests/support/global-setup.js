const { startCluster } = require('./postgres-cluster');

module.exports = async function globalSetup() {
  if (process.env.SLUICE_TEST_PG_URL) return; // an existing server: suites create databases in it
  const cluster = await startCluster();
  process.env.SLUICE_TEST_PG_URL = cluster.url;
  globalThis.__SLUICE_PG__ = cluster;
};
