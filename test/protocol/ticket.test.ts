/**
 * Ticket sealing (protocol/ticket.ts): only the two ends of the join
 * request can open the ticket — the config server, which holds that
 * request's reply and channel keys, cannot — and the verifier check.
 */
import t from 'tap';
import { sealRequest, openRequest } from '../../protocol/sealed.js';
import { decodeEnvelope } from '../../protocol/envelope.js';
import { openTicket, sealTicket, ticketMatches, ticketVerifier, decodeTicket, encodeTicket, isTicketRefusal } from '../../protocol/ticket.js';
import { backends } from '../helpers/backends.js';
import { KagiError } from '../../protocol/errors.js';

for (const c of backends) {
  t.test(`tickets on ${c.name}`, async (t) => {
    const device = c.generateKeyPair();
    const auth = c.generateKeyPair();
    const route = { type: 'join.request' as const, from: 'd1', to: 'auth', seq: 1, reqId: 7 };
    const sent = sealRequest(c, route, device.secretKey, auth.publicKey, { user: 'alice' }, 1_800_000_000, 0);
    const got = openRequest(c, decodeEnvelope(sent.bytes), auth.secretKey, device.publicKey);
    const ticket = { id: '00112233445566778899aabbccddeeff', secret: c.randomBytes(32), expiresAt: 1_900_000_000_000 };

    const sealed = sealTicket(c, got.secrets.ticketKey(), ticket);
    const opened = openTicket(c, sent.secrets.ticketKey(), sealed);
    t.same({ ...opened, secret: [...opened.secret] }, { ...ticket, secret: [...ticket.secret] }, 'the device opens what auth sealed');

    // What the config server is handed for this request: its reply and channel keys.
    const { up, down } = got.secrets.channelKeys();
    for (const [what, key] of [['reply key', got.secrets.replyKey()], ['channel up', up], ['channel down', down]] as const) {
      t.throws(() => openTicket(c, key, sealed), KagiError, `the ${what} does not open the ticket`);
    }
    const flipped = sealed.slice();
    flipped[3]! ^= 1;
    t.throws(() => openTicket(c, sent.secrets.ticketKey(), flipped), /failed authentication/, 'a changed byte is refused');

    t.ok(ticketMatches(c, ticket.secret, ticketVerifier(c, ticket.secret)), 'the verifier matches its secret');
    const other = ticket.secret.slice();
    other[31]! ^= 0x80;
    t.notOk(ticketMatches(c, other, ticketVerifier(c, ticket.secret)), 'and no other');
    t.same(decodeTicket(encodeTicket(ticket)).id, ticket.id, 'stored form round trip');
    t.throws(() => decodeTicket(encodeTicket({ ...ticket, id: 'not-hex' })), /32 hex digits/, 'a bad id is refused');
    t.ok(isTicketRefusal('ticket-reused') && !isTicketRefusal('password'), 'ticket refusals are told apart from the rest');
  });
}
