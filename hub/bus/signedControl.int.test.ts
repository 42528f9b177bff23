import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createLogger } from '../log.ts';
import { NATS_URL } from '../testing/natsClient.ts';
import { waitUntil } from '../testing/until.ts';
import { createNatsBus } from './natsBus.ts';
import { withSignedControl } from './signedControl.ts';

const SECRET = 'signed-control-test-secret-0123456789ab';

/** Two signed buses ("nodes") on the machine's NATS. */
describe('signed control messages over NATS', () => {
  const log = createLogger('silent');
  const raws: ReturnType<typeof createNatsBus>[] = [];
  const node = async () => {
    const raw = createNatsBus({ servers: NATS_URL, name: `signed control test ${randomUUID()}`, log });
    await raw.ready;
    raws.push(raw);
    return { raw, bus: withSignedControl(raw, SECRET, log) };
  };

  after(async () => {
    for (const b of raws) await b.close();
  });

  it("signedControl - an othersOnly subscription gets the other node's messages and not its own echo", async () => {
    // Given two nodes and a kind of this test alone; node a subscribes twice: othersOnly, and plainly
    const kind = `test.k${randomUUID()}`;
    const [a, b] = [await node(), await node()];
    const others: string[] = [];
    const all: string[] = [];
    a.bus.subscribeControl(kind, (p) => others.push(Buffer.from(p).toString()), { othersOnly: true });
    a.bus.subscribeControl(kind, (p) => all.push(Buffer.from(p).toString()));
    await a.raw.flush();
    // When node a publishes, then node b
    a.bus.publishControl(kind, Buffer.from('from-a'));
    await a.raw.flush();
    b.bus.publishControl(kind, Buffer.from('from-b'));
    // Then the plain subscription sees both, a's own echo included (the positive control: it did come back)
    await waitUntil('both messages on the plain subscription', async () => all.length === 2);
    assert.deepEqual([...all].sort(), ['from-a', 'from-b']);
    // and the othersOnly one, which NATS served in the same order, only b's
    await waitUntil("b's message on the othersOnly subscription", async () => others.length >= 1);
    assert.deepEqual(others, ['from-b']);
    assert.equal(a.bus.rejectedControl, 0, 'its own echo is dropped, not counted as a forgery');
  });
});
