/** The demo application's tables: keyed settings and an order log with a composite key. */
export const DEMO_SCHEMA = `
CREATE TABLE IF NOT EXISTS device_state (id INTEGER PRIMARY KEY, mode TEXT, setpoint REAL, updated_at TEXT);
CREATE TABLE IF NOT EXISTS order_events (order_id TEXT, line INTEGER, qty INTEGER, note TEXT, PRIMARY KEY (order_id, line));
`;
