import { parseAgentConfig } from '../../edge-agent/config/load';
import { badBrokerUrls, brokerServers, splitBrokerUrls } from './brokers';

const yaml = (serverUrl: string) => `
connection:
  server_url: ${serverUrl}
  device_id: gw-1
  root_topic: acme/gw-1
sqlite-replication:
  source_db_path: /tmp/app.db
`;

describe('broker URL lists', () => {
  it('reads one URL or several, in order, with default ports', () => {
    expect(brokerServers('mqtt://a:1884')).toEqual([{ host: 'a', port: 1884, protocol: 'mqtt' }]);
    expect(brokerServers(' mqtt://a , mqtts://b,tls://[::1]:9000,')).toEqual([
      { host: 'a', port: 1883, protocol: 'mqtt' },
      { host: 'b', port: 8883, protocol: 'mqtts' },
      { host: '::1', port: 9000, protocol: 'ssl' },
    ]);
    expect(splitBrokerUrls(' , ')).toEqual([]);
    expect(badBrokerUrls('mqtt://a,http://b,mqtt://')).toEqual(['http://b', 'mqtt://']);
  });

  it('takes the agent URL as a string, a comma list or a YAML list, and names a bad entry', () => {
    const url = (text: string) => {
      const r = parseAgentConfig(text, {});
      return r.ok ? r.config.connection.serverUrl : r.problems.map((p) => p.message).join('; ');
    };
    expect(url(yaml('mqtt://a:1883'))).toBe('mqtt://a:1883');
    expect(url(yaml('"mqtt://a:1883,mqtt://b:1883"'))).toBe('mqtt://a:1883,mqtt://b:1883');
    expect(url(yaml('[mqtt://a:1883, mqtt://b:1883]'))).toBe('mqtt://a:1883,mqtt://b:1883');
    expect(url(yaml('[mqtt://a:1883, "b:1883"]'))).toContain('got "b:1883"');
  });
});
