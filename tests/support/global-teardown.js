module.exports = async function globalTeardown() {
  const cluster = globalThis.__SLUICE_PG__;
  if (cluster) cluster.stop();
};
