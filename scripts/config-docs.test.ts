import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { renderConfigDocs } from './config-docs.ts';
import { loadConfig } from '../hub/config/config.ts';

describe('config', () => {
  it('config - docs/configuration.md matches the settings table (run npm run docs:config)', () => {
    const onDisk = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
    assert.equal(onDisk, renderConfigDocs());
  });

  it('config - a bad value names the variable', () => {
    assert.throws(() => loadConfig({ ORGHUB_PORT: 'eighty', ORGHUB_JWT_HS256_SECRET: 'x'.repeat(32) }), /ORGHUB_PORT/);
    assert.throws(() => loadConfig({ ORGHUB_MAX_SUBSCRIPTIONS: '0', ORGHUB_JWT_HS256_SECRET: 'x'.repeat(32) }), /ORGHUB_MAX_SUBSCRIPTIONS/);
    assert.throws(() => loadConfig({ ORGHUB_LOG_LEVEL: 'loud', ORGHUB_JWT_HS256_SECRET: 'x'.repeat(32) }), /ORGHUB_LOG_LEVEL/);
    assert.throws(() => loadConfig({}), /ORGHUB_JWT_JWKS/);
    assert.throws(() => loadConfig({ ORGHUB_JWT_HS256_SECRET: 'short' }), /ORGHUB_JWT_HS256_SECRET/);
    assert.throws(() => loadConfig({ ORGHUB_JWT_JWKS: '/x', ORGHUB_ROLE_GRANTS: '{nope' }), /ORGHUB_ROLE_GRANTS/);
  });

  it('config - defaults apply and numbers are coerced', () => {
    const c = loadConfig({ ORGHUB_JWT_JWKS: '/keys.json', ORGHUB_PORT: '9000' });
    assert.equal(c.ORGHUB_PORT, 9000);
    assert.equal(c.ORGHUB_ORG_CLAIM, 'org');
    assert.equal(c.ORGHUB_MQTT_PORT, 1883);
    assert.equal(c.ORGHUB_JWT_CLOCK_TOLERANCE, 0);
  });
});
