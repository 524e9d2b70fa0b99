/**
 * The Store contract: what every store must do, one suite for all of them
 * (SQLite today; PostgreSQL runs the same suite when it lands).
 */
import type { Test } from 'tap';
import type { Store } from '../../servers/store/store.js';
import { SEQ_WINDOW } from '../../protocol/replay.js';
import { CONNECT_ERAS_KEPT, ERA_IDLE_SWEEP_S } from '../../servers/store/windows.js';

export function storeContract(t: Test, name: string, open: () => Promise<Store>): void {
  t.test(`Store contract: ${name}`, async (t) => {
    const s = await open();
    t.teardown(() => s.close());
    const pk = new Uint8Array(32).fill(7);
    await s.addDevice({ id: 'd1', mac: '02:00:00:00:00:01', publicKey: pk, kind: 'terminal' });
    t.match(await s.getDevice('d1'), { id: 'd1', mac: '02:00:00:00:00:01', kind: 'terminal', revoked: false }, 'device round trip');
    t.same([...(await s.getDevice('d1'))!.publicKey], [...pk], 'public key bytes round trip');
    await t.rejects(s.addDevice({ id: 'd1', mac: 'x', publicKey: pk, kind: 'terminal' }), { name: 'ConflictError' }, 'duplicate device is a ConflictError');
    t.equal(await s.getDevice('nope'), undefined, 'missing device is undefined');

    await s.addUser({ id: 'u1', passwordHash: 'scrypt$1$2$3$aa$bb' });
    t.same(await s.getUser('u1'), { id: 'u1', passwordHash: 'scrypt$1$2$3$aa$bb' }, 'user round trip');
    await s.addVpn({ id: 'v1', protocol: 'udp', port: 9, priority: 3, maxBandwidth: 1000, flag: 1, totalRate: 5 });
    t.same(await s.getVpn('v1'), { id: 'v1', protocol: 'udp', port: 9, priority: 3, maxBandwidth: 1000, flag: 1, totalRate: 5, rekeyPeriodMs: 0, rekeyRequestedAt: 0 }, 'VPN row round trip (1e)');
    t.equal(await s.setRekeyRequest('v1', 77), true, 'rekey request recorded');
    t.equal((await s.getVpn('v1'))!.rekeyRequestedAt, 77, 'rekey request read back');
    t.equal(await s.setRekeyRequest('ghost', 1), false, 'rekey request for a missing VPN is false');
    t.equal(await s.updateVpn('v1', { priority: 7, totalRate: 9 }), true, 'updateVpn');
    t.match(await s.getVpn('v1'), { priority: 7, totalRate: 9, maxBandwidth: 1000, flag: 1 }, 'only the given columns change');
    t.equal(await s.updateVpn('ghost', { priority: 1 }), false, 'updateVpn of a missing VPN is false');
    await s.updateVpn('v1', { priority: 3, totalRate: 5 });
    await s.grant('v1', 'u1');
    t.same(await s.grantsOf('u1'), ['v1'], 'grant');
    t.same(await s.listGrants(), [{ vpnId: 'v1', userId: 'u1' }], 'every grant in one read');
    t.same(await s.joinedAs(), new Map(), 'nobody has joined yet');
    await s.setJoinedAs('d1', 'u0', 1);
    await s.setJoinedAs('d1', 'u1', 2);
    t.same(await s.joinedAs(), new Map([['d1', 'u1']]), 'who a device joined as: the latest join wins');
    await s.clearJoinedAs('d1');
    t.same(await s.joinedAs(), new Map(), 'a device that left on its own has joined as nobody');

    // Device history (migration 16, kagi why): each event keeps its own columns.
    t.same(await s.deviceHistory('d1'), { auth: null, refusal: null, eviction: null }, 'no history yet');
    await s.noteRefusal('d1', { at: 5_000_000_000_001, code: 'password', reason: 'wrong user id or password', user: 'u1' });
    await s.noteAuth('d1', 5_000_000_000_002, 'join', 'u1');
    await s.noteEviction('d1', 5_000_000_000_003, ['v1', 'v2'], '3 polls missed');
    t.same(await s.deviceHistory('d1'), {
      auth: { at: 5_000_000_000_002, op: 'join', user: 'u1' },
      refusal: { at: 5_000_000_000_001, code: 'password', reason: 'wrong user id or password', user: 'u1' },
      eviction: { at: 5_000_000_000_003, from: ['v1', 'v2'], why: '3 polls missed' },
    }, 'history: the last auth, refusal and eviction, with times beyond 32 bits');
    await s.noteRefusal('d1', { at: 5_000_000_000_004, code: 'mac', reason: 'MAC differs' });
    t.same((await s.deviceHistory('d1')).refusal, { at: 5_000_000_000_004, code: 'mac', reason: 'MAC differs', user: null }, 'the latest refusal replaces the last one');
    t.same((await s.deviceHistory('d1')).auth, { at: 5_000_000_000_002, op: 'join', user: 'u1' }, 'a refusal leaves the last auth alone');
    t.same(await s.deviceHistory('nobody'), { auth: null, refusal: null, eviction: null }, 'an unknown device has no history');
    await s.setJoinedAs('d1', 'u1', 3);
    await t.rejects(s.grant('v1', 'ghost'), { name: 'ConflictError' }, 'grant to a missing user refused');

    await s.putMember({ vpnId: 'v1', deviceId: 'd1', userId: 'u1', keyId: 0, networkId: 'n' });
    await s.putMember({ vpnId: 'v1', deviceId: 'd1', userId: 'u1', keyId: 2, networkId: 'n' });
    t.same(await s.members('v1'), [{ vpnId: 'v1', deviceId: 'd1', userId: 'u1', keyId: 2, networkId: 'n' }], 'membership is an upsert: one row');
    t.equal((await s.membershipsOf('d1')).length, 1, 'memberships of a device');
    await s.putMember({ vpnId: 'v1', deviceId: 'd2x', userId: 'u1', keyId: 0, networkId: 'n' }).then(() => t.fail('membership of a missing device accepted'), () => t.pass('membership needs the device'));
    await s.addDevice({ id: 'd3', mac: '02:00:00:00:00:03', publicKey: pk, kind: 'terminal' });
    await s.putMember({ vpnId: 'v1', deviceId: 'd3', userId: 'u1', keyId: 0, networkId: 'n' });
    t.equal(await s.removeMember('v1', 'd3'), true, 'removeMember removes');
    t.equal(await s.removeMember('v1', 'd3'), false, 'removeMember of an absent row is false');
    t.same((await s.members('v1')).map((m) => m.deviceId), ['d1'], 'the other membership stays');

    const book = s.channels('config');
    t.equal(await book.get('d1'), undefined, 'no channel yet');
    await book.set('d1', { send: new Uint8Array(32).fill(1), recv: new Uint8Array(32).fill(2) });
    await book.set('d1', { send: new Uint8Array(32).fill(3), recv: new Uint8Array(32).fill(4) });
    t.same([...(await book.get('d1'))!.send].slice(0, 2), [3, 3], 'channel keys: the latest set wins');
    t.equal(await s.channels('keys').get('d1'), undefined, 'channels are per service');
    await book.delete('d1');
    t.equal(await book.get('d1'), undefined, 'channel deleted');

    t.same([...(await s.notCommunicating())], [], 'every member communicates until marked');
    await s.setCommunicating('d1', false, 5);
    t.same([...(await s.notCommunicating())], ['d1'], 'marked not communicating');
    await s.setCommunicating('d1', true, 6);
    t.same([...(await s.notCommunicating())], [], 'communicating again');
    t.same(await s.missedPolls(), new Map(), 'no missed polls on record');
    await s.setCommunicating('d1', false, 7, 1);
    await s.setCommunicating('d1', false, 8, 2);
    t.same(await s.missedPolls(), new Map([['d1', 2]]), 'the latest count of missed polls is kept');
    t.same([...(await s.notCommunicating())], ['d1'], 'and the member is not communicating');
    await s.setCommunicating('d1', true, 9);
    t.same(await s.missedPolls(), new Map(), 'an answer clears the count');

    await s.putSessionKey({ vpnId: 'v1', epoch: 1, key: new Uint8Array(32).fill(1), createdAt: 1 });
    await s.putSessionKey({ vpnId: 'v1', epoch: 2, key: new Uint8Array(32).fill(2), createdAt: 2 });
    t.equal((await s.currentSessionKey('v1'))!.epoch, 2, 'current key is the highest epoch (3b)');
    await t.rejects(s.putSessionKey({ vpnId: 'v1', epoch: 2, key: new Uint8Array(32), createdAt: 3 }), { name: 'ConflictError' }, 'an epoch is written once');

    await s.putConfig({ deviceId: 'd1', body: { a: 1 } });
    t.same(await s.getConfig('d1'), { deviceId: 'd1', body: { a: 1 } }, 'config (1d)');
    await s.putNetworkInfo({ deviceId: 'd1', address: '10.0.0.1', relayId: null, relayPort: null, updatedAt: 5 });
    await s.putNetworkInfo({ deviceId: 'd1', address: '10.0.0.2', relayId: null, relayPort: null, updatedAt: 6 });
    t.match(await s.getNetworkInfo('d1'), { address: '10.0.0.2', updatedAt: 6 }, 'network info (1f) keeps the latest');
    t.same([...(await s.allNetworkInfo()).keys()], ['d1'], 'all network info in one read');
    t.match((await s.allNetworkInfo()).get('d1'), { address: '10.0.0.2' }, 'the same rows');
    await s.addDevice({ id: 'd0', mac: '02:00:00:00:00:00', publicKey: pk, kind: 'terminal' });
    await s.putMember({ vpnId: 'v1', deviceId: 'd0', userId: 'u1', keyId: 0, networkId: 'n' });
    t.same(await s.placedMembers(), new Map([['v1', [{ deviceId: 'd0', address: null, via: null }, { deviceId: 'd1', address: '10.0.0.2', via: null }]]]),
      'members with where they are, by VPN, in device order (no network info: nulls)');
    await s.putNetworkInfo({ deviceId: 'd0', address: null, relayId: 'r1', relayPort: 'p2', updatedAt: 7 });
    t.same(await s.keyHolders('v1'), [{ deviceId: 'd0', keyId: 0, relayId: 'r1', relayPort: 'p2' }, { deviceId: 'd1', keyId: (await s.membershipsOf('d1'))[0]!.keyId, relayId: null, relayPort: null }],
      'a rekey\'s one read: members, key ids and relay ports, in device order');
    t.same(await s.keyHolders('nope'), [], 'no VPN: no holders');
    t.same([await s.raiseKeyId('v1', 'd0', 3), await s.raiseKeyId('v1', 'd0', 3), await s.raiseKeyId('v1', 'd0', 2)], [true, false, false], 'a key id moves up once, never down');
    t.equal((await s.membershipsOf('d0'))[0]!.keyId, 3, 'and the row says so');
    t.equal((await s.membershipsOf('d1'))[0]!.keyId, 2, 'd1 holds epoch 2 (its row above)');
    t.same((await s.keyHolders('v1', 4)).map((h) => h.deviceId), ['d0', 'd1'], 'behind epoch 4: the members holding an epoch below it, in device order');
    t.same(await s.keyHolders('v1', 3), [{ deviceId: 'd1', keyId: 2, relayId: null, relayPort: null }], 'one at epoch 3 is not behind 3');
    await s.putMember({ vpnId: 'v1', deviceId: 'd0', userId: 'u1', keyId: 0, networkId: 'n' });
    t.notOk((await s.keyHolders('v1', 9)).some((h) => h.deviceId === 'd0'), 'key id 0 (mid-join) is never behind: its join delivers');
    await s.setCommunicating('d1', false, 10);
    t.same(await s.keyHolders('v1', 3), [], 'a member marked not communicating is not behind: it converges when back');
    t.equal((await s.keyHolders('v1')).length, 2, 'the whole read still has it');
    await s.setCommunicating('d1', true, 11);
    t.same((await s.keyHolders('v1', 3)).map((h) => h.deviceId), ['d1'], 'back: behind again');
    await s.raiseKeyId('v1', 'd0', 3);
    t.equal(await s.raiseKeyId('v1', 'nobody', 9), false, 'no member: nothing moves');
    t.equal(await s.raiseKeyId('v9', 'd0', 9), false, 'not a member of that VPN: nothing moves');
    await s.removeMember('v1', 'd0');

    await s.numbers.set('k', 5);
    t.equal(await s.numbers.get('k'), 5, 'numbers');
    t.equal(await s.numbers.get('missing'), undefined, 'missing number');

    // Replay windows: each seq once, late ones within the window, racing copies one winner.
    const claim = s.numbers.claim!.bind(s.numbers);
    const w = s.numbers.claimWindow ?? SEQ_WINDOW;
    t.same([await claim('rx:w', 10), await claim('rx:w', 12), await claim('rx:w', 11), await claim('rx:w', 11)], [true, true, true, false], `a late seq once, not twice (window ${w})`);
    t.same([await claim('rx:w', 12), await claim('rx:w', 12 - w), await claim('rx:w', 12 - w + 1)], [false, false, true], 'the top again and below the window refused; the window edge taken');
    t.equal(await claim('rx:w', 12 + w + 100), true, 'a jump past the window');
    t.equal(await claim('rx:w', 12), false, 'and what it passed is too old');
    const racing = await Promise.all([claim('rx:w', 200), claim('rx:w', 200), claim('rx:w', 199), claim('rx:w', 199)]);
    t.same(racing.filter(Boolean).length, 2, 'racing copies of two seqs: one of each wins');
    // After the racing claims landed (a process may drop landed windows from memory and read them back).
    t.same([await claim('rx:w', 200), await claim('rx:w', 199), await claim('rx:w', 198)], [false, false, true], 'landed claims still refused; an unseen seq in the window taken');
    const again = await Promise.all([claim('rx:w', 198), claim('rx:w', 201), claim('rx:w', 201)]);
    t.same([again[0], again.slice(1).filter(Boolean).length], [false, 1], 'a race on a window read back: the seen seq refused, one copy of the new one wins');

    // A channel made once, whichever first delivery gets there first.
    const first = { send: new Uint8Array(32).fill(3), recv: new Uint8Array(32).fill(4) };
    const second = { send: new Uint8Array(32).fill(5), recv: new Uint8Array(32).fill(6) };
    const kept = await Promise.all([s.channels('keys').setIfAbsent('d1', first), s.channels('keys').setIfAbsent('d1', second)]);
    t.same(kept[0], kept[1], 'both callers get the same channel');
    t.same(await s.channels('keys').get('d1'), kept[0], 'and it is the stored one');

    // Keys channels of deliveries acknowledged out of order (two key server
    // instances at once): the highest delivery seq wins, as at the holder.
    const ch = (n: number) => ({ send: new Uint8Array(32).fill(n), recv: new Uint8Array(32).fill(n + 1) });
    const kb = s.channels('keys');
    t.equal(await kb.set('h1', ch(20), 7), true, 'a first delivery channel (seq 7) is kept');
    t.equal(await kb.set('h1', ch(30), 9), true, 'a higher seq (9) replaces it');
    t.equal(await kb.set('h1', ch(40), 8), false, 'a lower seq (8) acknowledged later does not');
    t.equal(await kb.set('h1', ch(50), 9), false, 'nor does the same seq again');
    t.same([...(await kb.get('h1'))!.send], [...ch(30).send], 'the book holds the seq-9 channel');
    const raced = await Promise.all([kb.set('h2', ch(60), 12), kb.set('h2', ch(70), 11)]);
    t.same(raced, [true, raced[1]], 'two at once: the higher is kept');
    t.same([...(await kb.get('h2'))!.send], [...ch(60).send], 'whatever order they reach the store in');

    // kagi device revoke: marked, out of every VPN, channels gone.
    await s.addDevice({ id: 'gone', mac: '02:00:00:00:00:99', publicKey: pk, kind: 'terminal' });
    await s.putMember({ vpnId: 'v1', deviceId: 'gone', userId: 'u1', keyId: 1, networkId: 'x' });
    await s.channels('config').set('gone', { send: new Uint8Array(32).fill(1), recv: new Uint8Array(32).fill(2) });
    t.equal(await s.revokeDevice('gone'), true, 'revokeDevice');
    t.equal((await s.getDevice('gone'))!.revoked, true, 'the device is marked revoked');
    t.same(await s.revokedDevices(), ['gone'], 'and listed among the revoked');
    t.same(await s.membershipsOf('gone'), [], 'and is in no VPN');
    t.equal(await s.channels('config').get('gone'), undefined, 'and has no channel left');
    t.equal(await s.revokeDevice('ghost'), false, 'revoking a missing device is false');

    // Replay windows swept (windows.ts): idle era windows, CONNECT eras
    // beyond the newest K per client, windows of replaced and revoked
    // devices' channels. Era 0 windows stay.
    const T = 1_800_000_000;
    const exists = async (key: string, seq: number) => !(await claim(key, seq)); // a window that remembers seq refuses it
    const eraKey = (base: string, era: number) => `${base}~${era.toString(16).padStart(8, '0')}`;
    t.ok(await s.numbers.claim!(eraKey('rx:auth:d7', 0xa1), 5, T - ERA_IDLE_SWEEP_S - 1), 'an era window last used before the bound');
    t.ok(await s.numbers.claim!(eraKey('rx:auth:d7', 0xa2), 5, T - ERA_IDLE_SWEEP_S + 1), 'one used after it');
    t.ok(await s.numbers.claim!('rx:auth:d7', 5, T - 10 * ERA_IDLE_SWEEP_S), 'an era 0 window, older still');
    for (let e = 1; e <= CONNECT_ERAS_KEPT + 3; e++) await s.numbers.claim!(eraKey('connect:d7', e), 1, T - 100_000 + e);
    t.ok(await s.numbers.claim!(eraKey('connect:d8', 1), 1, T - 100_000), 'another client\'s one CONNECT era, old');
    const swept = await s.sweepSeqWindows({ idleBefore: T - ERA_IDLE_SWEEP_S, connectEras: CONNECT_ERAS_KEPT });
    t.same(swept, { idle: 1, connect: 3 }, 'one idle era window and three CONNECT eras beyond the cap swept');
    t.same(await s.sweepSeqWindows({ idleBefore: T - ERA_IDLE_SWEEP_S, connectEras: CONNECT_ERAS_KEPT }), { idle: 0, connect: 0 }, 'a second sweep finds nothing');
    t.equal(await exists(eraKey('rx:auth:d7', 0xa1), 5), false, 'the idle era window is gone (its seq is new again)');
    t.equal(await exists(eraKey('rx:auth:d7', 0xa2), 5), true, 'the current era window is kept');
    t.equal(await exists('rx:auth:d7', 5), true, 'era 0 windows are never swept');
    for (const e of [1, 2, 3]) t.equal(await exists(eraKey('connect:d7', e), 1), false, `CONNECT era ${e}, among the oldest, is gone`);
    t.equal(await exists(eraKey('connect:d7', 4), 1), true, 'the newest 32 are kept');
    t.equal(await exists(eraKey('connect:d7', CONNECT_ERAS_KEPT + 3), 1), true, 'the newest too');
    t.equal(await exists(eraKey('connect:d8', 1), 1), true, 'CONNECT eras are never swept by age: capped per client');

    for (const tag of ['aaaa', 'bbbb', 'cccc']) t.ok(await claim(`rx:keys:d7#${tag}`, 1), `a keys channel window ${tag}`);
    t.ok(await claim('rx:keys:d7.x#aaaa', 1), 'another device whose id starts the same');
    t.ok(await claim('rx:config:d7#dddd', 1), 'a config channel window');
    const channel = (n: number) => ({ send: new Uint8Array(32).fill(n), recv: new Uint8Array(32).fill(n + 1) });
    t.equal(await s.replaceChannel('keys', 'd7', channel(1), { replacedTag: 'aaaa' }), true, 'a channel replaced: kept');
    t.equal(await s.replaceChannel('keys', 'd7', channel(3), { seq: 5, replacedTag: 'bbbb' }), true, 'and the next, with a seq');
    t.equal(await s.replaceChannel('keys', 'd7', channel(5), { seq: 4, replacedTag: 'cccc' }), false, 'a lower seq loses the compare-and-set');
    t.same(await s.channels('keys').get('d7'), channel(3), 'the kept channel is the higher seq\'s');
    t.equal(await exists('rx:keys:d7#cccc', 1), true, 'a channel not replaced keeps its window');
    t.equal(await exists('rx:keys:d7#aaaa', 1), false, 'the window of a replaced channel is gone, with the write that replaced it');
    t.equal(await exists('rx:keys:d7#bbbb', 1), false, 'and the next');
    t.equal(await exists('rx:keys:d7.x#aaaa', 1), true, 'another device\'s stay');
    t.equal(await exists('rx:config:d7#dddd', 1), true, 'and other services\'');
    await s.addDevice({ id: 'd7', mac: '02:00:00:00:00:77', publicKey: pk, kind: 'terminal' });
    await s.revokeDevice('d7');
    t.equal(await exists('rx:keys:d7#cccc', 1), false, 'revoked: its keys channel window is gone');
    t.equal(await exists('rx:config:d7#dddd', 1), false, 'and its config channel window');
    t.equal(await exists('rx:keys:d7.x#aaaa', 1), true, 'not another device\'s');

    // Presence from the retained state topic.
    t.same(await s.presence(), new Map(), 'no presence yet');
    t.equal(await s.setPresence('d1', true, 10), true, 'a device of ours: recorded');
    t.equal(await s.setPresence('d1', false, 20), true);
    t.equal(await s.setPresence('nobody', true, 20), false, 'no device with this id: not recorded');
    t.same(await s.presence(), new Map([['d1', { online: false, changedAt: 20 }]]), 'presence: the last state wins');
    t.same([...(await s.presentOn('mqtt://127.0.0.1:1883'))], [], 'heard on no broker we named');
    await s.setPresence('d1', true, 30, 'mqtt://127.0.0.1:1883');
    await s.addDevice({ id: 'd2', mac: '02:00:00:00:00:02', publicKey: pk, kind: 'terminal' });
    await s.setPresence('d2', true, 30, 'mqtt://127.0.0.1:1884');
    t.same([...(await s.presentOn('mqtt://127.0.0.1:1883'))], ['d1'], 'presence remembers the broker it was heard on');
    await s.setPresence('d1', false, 40, 'mqtt://127.0.0.1:1884');
    t.same([...(await s.presentOn('mqtt://127.0.0.1:1883'))], [], 'the last broker wins');
    t.same([...(await s.presentOn('mqtt://127.0.0.1:1884'))].sort(), ['d1', 'd2'], 'both on the other');

    // Removals owe their VPN a rekey and the member's key holder a notice, in one write.
    await s.addVpn({ id: 'v9', protocol: 'tcp', port: 99, priority: 0, maxBandwidth: 0, flag: 0, totalRate: 0 });
    await s.addDevice({ id: 'r9', mac: '02:00:00:00:09:01', publicKey: pk, kind: 'relay' });
    await s.addDevice({ id: 'p9', mac: '02:00:00:00:09:02', publicKey: new Uint8Array(0), kind: 'plaintext', relayId: 'r9', relayPort: 'p1' });
    await s.putNetworkInfo({ deviceId: 'p9', address: null, relayId: 'r9', relayPort: 'p1', updatedAt: 1 });
    for (const d of ['d1', 'p9']) await s.putMember({ vpnId: 'v9', deviceId: d, userId: 'u1', keyId: 1, networkId: 'n' });
    const v9 = async () => (await s.owedNotices()).filter((n) => n.vpnId === 'v9');
    t.match(await s.owedNotices(), [{ vpnId: 'v1', memberId: 'gone', reason: 'revoked' }], 'the revoked device above is owed its notice');
    t.equal(await s.removeMember('v9', 'd1'), true, 'a leave');
    t.same(await v9(), [], 'a holder that leaves on its own is owed no notice');
    t.ok((await s.getVpn('v9'))!.rekeyRequestedAt > 0, 'but the VPN owes a rekey');
    t.equal(await s.removeMember('v9', 'p9', 'evicted'), true, 'an eviction');
    const owed = await v9();
    t.match(owed, [{ vpnId: 'v9', memberId: 'p9', holderId: 'r9', reason: 'evicted' }], 'owes its holder (the relay) a notice');
    await s.addDevice({ id: 'p8', mac: '02:00:00:00:00:98', publicKey: pk, kind: 'plaintext' });
    await s.putMember({ vpnId: 'v9', deviceId: 'p8', userId: 'u1', keyId: 1, networkId: 'n' });
    await s.removeMember('v9', 'p8', 'evicted');
    t.equal((await v9()).length, 2, 'another eviction owes another notice');
    await s.putMember({ vpnId: 'v9', deviceId: 'p8', userId: 'u1', keyId: 2, networkId: 'n' });
    t.same((await v9()).map((n) => n.memberId), ['p9'], 'the member is back (a re-join): its notice is moot and gone');
    await s.removeMember('v9', 'p8');
    await s.noticeDone({ ...owed[0]!, since: owed[0]!.since - 1 });
    t.equal((await v9()).length, 1, 'done for an older notice does not clear a newer one');
    await s.noticeDone(owed[0]!);
    t.same(await v9(), [], 'delivered: forgotten');
    await s.putMember({ vpnId: 'v9', deviceId: 'd1', userId: 'u1', keyId: 1, networkId: 'n' });
    await s.deleteVpn('v9');
    t.match(await v9(), [{ vpnId: 'v9', memberId: 'd1', holderId: 'd1', reason: 'deleted' }], 'a deleted VPN owes each member a notice');

    // Password failures (servers/auth/throttle.ts): a claim checks some
    // keys and counts others, atomically; a failure counts without a check.
    const delay = (f: number) => (f < 2 ? 0 : 1000 * f);
    const attempt = (user: string, dev: string, now: number) => s.claimPasswordAttempt([user, dev], [dev], now, delay);
    t.equal(await attempt('user:u1', 'device:d1', 1_000), 0, 'a first attempt goes ahead');
    t.same(await s.passwordFailures('device:d1'), { failures: 1, blockedUntil: 1_000 }, 'the counted key counts it as a failure until cleared');
    t.equal(await s.passwordFailures('user:u1'), undefined, 'a checked key is only read');
    t.equal(await attempt('user:u1', 'device:d1', 1_001), 0, 'a second, still free');
    t.same(await s.passwordFailures('device:d1'), { failures: 2, blockedUntil: 3_001 }, 'blocked for delayAfter(2) from its claim');
    t.equal(await attempt('user:u1', 'device:d1', 2_000), 3_001, 'a blocked key refuses the claim: until when');
    t.equal((await s.passwordFailures('device:d1'))!.failures, 2, 'and counts nothing');
    t.equal(await s.claimPasswordAttempt([], ['user:u1'], 2_000, delay), 0, 'a failure is counted without a check');
    t.equal(await s.claimPasswordAttempt([], ['user:u1'], 2_001, delay), 0, 'another');
    t.same(await s.passwordFailures('user:u1'), { failures: 2, blockedUntil: 4_001 }, 'the user is blocked now');
    t.equal(await s.claimPasswordAttempt([], ['user:u1'], 2_002, delay), 0, 'a failure is counted even while blocked');
    t.equal(await attempt('user:u1', 'device:d2', 2_500), 5_002, 'a blocked user, whatever the device');
    t.equal(await s.passwordFailures('device:d2'), undefined, 'a refused claim counts nothing on the other key');
    t.equal(await attempt('user:u2', 'device:d3', 2_000), 0, 'another user from another device is not affected');
    t.equal(await attempt('user:u1', 'device:d1', 5_002), 0, 'once both waits are over');
    t.same(await s.passwordFailures('device:d1'), { failures: 3, blockedUntil: 8_002 }, 'the wait grows with the failures');
    const burst = await Promise.all([1, 2, 3].map(() => attempt('user:u4', 'device:d4', 10_000)));
    t.same(burst.filter((b) => b === 0).length, 2, 'a burst at once: only the free attempts go ahead');
    await s.clearPasswordFailures(['user:u1', 'device:d1']);
    t.equal(await s.passwordFailures('user:u1'), undefined, 'a success clears the user');
    t.equal(await s.passwordFailures('device:d1'), undefined, 'and the device');
    t.equal(await attempt('user:u1', 'device:d1', 5_003), 0, 'who may try at once again');
    t.equal(await s.prunePasswordFailures(6_000), 2, 'keys quiet since before then are forgotten (d1, d3)');
    t.equal((await s.passwordFailures('device:d4'))!.failures, 2, 'the others are kept');

    // The audit table: oldest first, the newest `limit`.
    for (const [i, op] of ['vpn.add', 'vpn.grant', 'device.revoke'].entries()) await s.audit({ at: 100 + i, actor: 'local:ops@host', op, detail: JSON.stringify({ n: i }) });
    t.same((await s.auditLog(10)).map((a) => a.op), ['vpn.add', 'vpn.grant', 'device.revoke'], 'audit rows in order');
    t.same(await s.auditLog(1), [{ at: 102, actor: 'local:ops@host', op: 'device.revoke', detail: '{"n":2}' }], 'the newest one, whole');
  });
}
