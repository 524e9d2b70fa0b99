/**
 * The tickets table, the same on every engine: rotation only of a live
 * ticket, families started again by a password join, drops by device, user
 * and pair (revoke, passwd), and the status summary.
 */
import type { Test } from 'tap';
import type { Store, TicketRow } from '../../servers/store/store.js';

const row = (id: string, deviceId: string, userId: string, at: number, expiresAt = at + 1000): TicketRow => ({
  id, deviceId, userId, verifier: new Uint8Array(32).fill(id.charCodeAt(0)), issuedAt: at, expiresAt, usedAt: null, successor: null,
});

export function ticketContract(t: Test, name: string, open: () => Promise<Store>): void {
  t.test(`tickets: ${name}`, async (t) => {
    const s = await open();
    t.teardown(() => s.close());
    const pk = new Uint8Array(32).fill(1);
    await s.addDevice({ id: 'd1', mac: '02:00:00:00:00:01', publicKey: pk, kind: 'terminal' });
    await s.addDevice({ id: 'd2', mac: '02:00:00:00:00:02', publicKey: pk, kind: 'terminal' });
    await s.addUser({ id: 'u1', passwordHash: 'h1' });

    await s.startTicketFamily(row('a', 'd1', 'u1', 100));
    t.match(await s.getTicket('a'), { id: 'a', deviceId: 'd1', userId: 'u1', issuedAt: 100, expiresAt: 1100, usedAt: null, successor: null }, 'ticket round trip');
    t.same([...(await s.getTicket('a'))!.verifier], [...new Uint8Array(32).fill(97)], 'verifier bytes round trip');
    t.equal(await s.getTicket('zz'), undefined, 'an unknown ticket is undefined');

    t.equal(await s.rotateTicket('a', row('b', 'd1', 'u1', 200), 200), true, 'a live ticket rotates');
    t.match(await s.getTicket('a'), { usedAt: 200, successor: 'b' }, 'the old one is retired, naming its successor');
    t.equal(await s.rotateTicket('a', row('c', 'd1', 'u1', 300), 300), false, 'a retired ticket does not rotate again');
    t.equal(await s.getTicket('c'), undefined, 'and issues nothing');

    t.same(await s.ticketSummary(250), new Map([['d1', { live: true, lastUsedAt: 200 }]]), 'summary: live, last used');
    t.same(await s.ticketSummary(5000), new Map([['d1', { live: false, lastUsedAt: 200 }]]), 'summary after expiry: none live');

    // Expired tickets of the family go with the next rotation.
    await s.rotateTicket('b', row('d', 'd1', 'u1', 2000), 2000);
    t.equal(await s.getTicket('a'), undefined, 'an expired retired ticket is swept at the next rotation');
    t.ok(await s.getTicket('d'), 'the new one is there');

    await s.startTicketFamily(row('e', 'd1', 'u1', 3000));
    t.equal(await s.getTicket('d'), undefined, 'a password join starts the family again');
    await s.startTicketFamily(row('f', 'd2', 'u1', 3000));
    await s.addUser({ id: 'u2', passwordHash: 'h2' });
    await s.startTicketFamily(row('g', 'd2', 'u2', 3000));
    t.equal(await s.dropTickets({ deviceId: 'd2', userId: 'u2' }), 1, 'drop one pair');
    t.ok(await s.getTicket('f'), "the device's other pair stays");

    t.equal(await s.setPassword('u1', 'h1b'), true, 'password changed');
    t.equal((await s.getUser('u1'))!.passwordHash, 'h1b', 'the new hash is stored');
    t.equal(await s.getTicket('e'), undefined, "the user's tickets went with the old password");
    t.equal(await s.getTicket('f'), undefined, 'on every device');
    t.equal(await s.setPassword('ghost', 'x'), false, 'no such user');

    await s.startTicketFamily(row('h', 'd2', 'u2', 4000));
    t.equal(await s.revokeDevice('d2'), true, 'revoke');
    t.equal(await s.getTicket('h'), undefined, "a revoked device's tickets are dropped with it");
    t.equal(await s.dropTickets({}), 0, 'dropping nothing named drops nothing');
  });
}
