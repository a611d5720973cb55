// the support chat app's customer/mechanic chat with real socket.io clients of both
// generations: intake, accept, presence by user id starting the session,
// messages with an idempotent resend, typing, read markers, the end.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MATRIX, PAIRS, emitAck, label, sleep, useConsultd } from '../lib/clients.mjs';

const EVENTS = [
  'session:status',
  'chat:new_message',
  'chat:typing',
  'chat:read',
  'presence:join',
  'presence:leave',
  'presence:sync',
];
const { client, api, token } = useConsultd(EVENTS);

let n = 0;
function people() {
  n += 1;
  return {
    customerId: `chat-cust${n}`,
    mechanicId: `chat-mech${n}`,
    customer: token(`chat-cust${n}`, 'customer', 'Cathy'),
    mechanic: token(`chat-mech${n}`, 'mechanic', 'Mo'),
    rival: token(`chat-rival${n}`, 'mechanic', 'Rita'),
  };
}

describe('support chat: chat sessions', () => {
  PAIRS.forEach(({ host, guest }) => {
    test(`mechanic ${label(host)}, customer ${label(guest)}`, async () => {
      const p = people();
      const intake = await api('POST', '/api/chat-sessions', p.customer, { concern: 'Check engine light' });
      assert.equal(intake.status, 201, JSON.stringify(intake.body));
      const id = intake.body.data.id;
      assert.equal(intake.body.data.status, 'pending');

      // Test 1: the customer waits alone in the room.
      const customer = await client(guest, p.customer);
      let ack = await emitAck(customer, 'chat:join_room', { roomId: id });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      assert.deepEqual(ack.messages, []);
      const alone = await customer.next('presence:sync');
      assert.deepEqual(Object.keys(alone.users), [p.customerId]);

      // Test 2: the mechanic accepts (first wins) and joins.
      const accepted = await api('POST', `/api/chat-sessions/${id}/accept`, p.mechanic);
      assert.equal(accepted.status, 200);
      assert.equal(accepted.body.data.status, 'waiting');
      const late = await api('POST', `/api/chat-sessions/${id}/accept`, p.rival);
      assert.equal(late.status, 409);
      assert.equal((await customer.next('session:status')).status, 'waiting');

      const mechanic = await client(host, p.mechanic);
      ack = await emitAck(mechanic, 'chat:join_room', { roomId: id });
      assert.equal(ack.ok, true);
      assert.deepEqual(await customer.next('presence:join'), { roomId: id, userId: p.mechanicId, role: 'mechanic' });
      // Test 3: both present, by user id: the server starts the session.
      const live = await customer.next('session:status');
      assert.equal(live.status, 'live');
      assert.equal(Date.parse(live.ends_at) - Date.parse(live.started_at), 30 * 60 * 1000);
      // The mechanic connected after the accept: its resync said `waiting` first.
      let mine = await mechanic.next('session:status');
      if (mine.status === 'waiting') mine = await mechanic.next('session:status');
      assert.deepEqual(mine, live);

      // Messages: stored, then to everyone in the room, the sender included.
      ack = await emitAck(customer, 'chat:send_message', { roomId: id, content: 'Hello 👋', clientMessageId: 'c-1' });
      assert.equal(ack.ok, true);
      assert.deepEqual(await customer.next('chat:new_message'), ack.message);
      assert.deepEqual(await mechanic.next('chat:new_message'), ack.message);
      // The resend after a lost ack stores nothing new.
      const again = await emitAck(customer, 'chat:send_message', { roomId: id, content: 'Hello 👋', clientMessageId: 'c-1' });
      assert.equal(again.message.id, ack.message.id);
      customer.socket.emit('chat:typing', { roomId: id, isTyping: true });
      assert.deepEqual(await mechanic.next('chat:typing'), { roomId: id, userId: p.customerId, isTyping: true });
      await emitAck(mechanic, 'chat:read', { roomId: id, messageId: ack.message.id });
      assert.deepEqual(await customer.next('chat:read'), { roomId: id, userId: p.mechanicId, messageId: ack.message.id });
      await sleep(200);
      assert.ok(!mechanic.pending().includes('chat:new_message'), 'the resend was not broadcast');
      const history = await api('GET', `/api/chat/${id}/messages`, p.mechanic);
      assert.deepEqual(history.body.data, [ack.message]);

      // The end: both told; sending is refused.
      const ended = await api('POST', `/api/chat-sessions/${id}/end`, p.customer);
      assert.equal(ended.body.data.status, 'ended');
      assert.equal((await mechanic.next('session:status')).status, 'ended');
      ack = await emitAck(mechanic, 'chat:send_message', { roomId: id, content: 'too late' });
      assert.equal(ack.error.code, 'conflict');
      for (const c of [customer, mechanic]) c.socket.disconnect();
    });
  });

  MATRIX.forEach((config) => test(`strangers and the losing mechanic on ${label(config)} are refused and hear nothing`, async () => {
    const p = people();
    const id = (await api('POST', '/api/chat-sessions', p.customer, {})).body.data.id;
    await api('POST', `/api/chat-sessions/${id}/accept`, p.mechanic);
    const customer = await client('v4', p.customer, ['websocket']);
    await emitAck(customer, 'chat:join_room', { roomId: id });
    const rival = await client(config, p.rival);
    const stranger = await client(config, token(`chat-nosy${n}`, 'customer'));
    for (const c of [rival, stranger]) {
      const ack = await emitAck(c, 'chat:join_room', { roomId: id });
      assert.equal(ack.error.code, 'forbidden');
      const sent = await emitAck(c, 'chat:send_message', { roomId: id, content: 'hi' });
      assert.equal(sent.error.code, 'forbidden');
    }
    await emitAck(customer, 'chat:send_message', { roomId: id, content: 'private' });
    await sleep(300);
    assert.deepEqual(rival.pending(), []);
    assert.deepEqual(stranger.pending(), []);
    assert.equal((await api('GET', `/api/chat/${id}/messages`, p.rival)).status, 404);
    for (const c of [customer, rival, stranger]) c.socket.disconnect();
  }));
});
