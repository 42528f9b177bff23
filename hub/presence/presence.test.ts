import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseNamespaces, presenceTopic, topicScope } from './presence.ts';

describe('presence scopes', () => {
  const ns = parseNamespaces(' rooms, chat ,,');
  it('presence - namespaces are the trimmed non-empty entries', () => {
    assert.deepEqual([...ns], ['rooms', 'chat']);
    assert.equal(parseNamespaces('').size, 0);
  });
  it('presence - only a concrete topic of a configured namespace has per-topic presence', () => {
    assert.equal(topicScope('rooms/r1', ns), 'rooms/r1');
    assert.equal(topicScope('chat/a/b', ns), 'chat/a/b');
    assert.equal(topicScope('rooms/+', ns), undefined);
    assert.equal(topicScope('rooms/#', ns), undefined);
    assert.equal(topicScope('devices/d1', ns), undefined);
    assert.equal(topicScope('roomsx/r1', ns), undefined);
    assert.equal(topicScope('rooms/r1', new Set()), undefined);
  });
  it('presence - events of a scope go on $presence/<scope>', () => {
    assert.equal(presenceTopic('rooms/r1'), '$presence/rooms/r1');
    assert.equal(presenceTopic('@org'), '$presence/@org');
  });
});
