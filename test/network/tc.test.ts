/**
 * Embodiment 5 enforced by tc, measured: two VPNs' TCP flows compete on a
 * veth link between two namespaces of the test's own; the plan gives the
 * high-priority VPN its maximum and the low-priority one what is left, and
 * the measured throughputs match the plan within 15%.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { makeNetns, netnsUnavailable } from '../helpers/netns.js';
import { TcDriver } from '../../network/tc.js';
import { planBandwidth } from '../../servers/config/bandwidth-plan.js';
import type { DesiredState } from '../../network/driver.js';

const why = netnsUnavailable();
if (why) console.error(`\n*** ${why} ***\n`);

const M = 1_000_000;
const HI = 5101;
const LO = 5102;

/** Run node code in a namespace; resolves with its stdout. */
function nodeIn(ns: string, js: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', js], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}: ${err}`))));
  });
}

t.test('tc holds each VPN to its planned rate (two competing flows, namespaces)', { skip: why ?? false }, async (t) => {
  const ns = makeNetns();
  t.teardown(() => ns.destroy());
  const capacity = 20 * M;
  const table = [
    { id: 'plant', priority: 5, maxBandwidth: 12 * M, members: 1 },
    { id: 'office', priority: 1, maxBandwidth: 12 * M, members: 1 },
  ];
  const plan = planBandwidth(table, capacity);
  t.same(plan.map((a) => [a.id, a.rate, a.state]), [['plant', 12 * M, 'full'], ['office', 8 * M, 'partial']], 'the plan: plant its maximum, office what is left');
  const state: DesiredState = {
    vpns: [
      { id: 'plant', protocol: 'tcp', port: HI, priority: 5, rate: plan[0]!.rate, cut: false, members: [{ deviceId: 'a', address: ns.a, via: null }] },
      { id: 'office', protocol: 'tcp', port: LO, priority: 1, rate: plan[1]!.rate, cut: false, members: [{ deviceId: 'b', address: ns.a, via: null }] },
    ],
  };
  const tc = new TcDriver({ dev: ns.cliDev, netns: ns.cli, capacity });
  await tc.check();
  await tc.apply(state);
  await tc.apply(state); // idempotent: unchanged plan, nothing rebuilt

  // Receiver in fw: bytes per port between 1.5 s and 4.5 s after the first byte.
  const receiver = nodeIn(ns.fw, `
    const net = require('net'); const got = {}; let t0 = 0;
    for (const port of [${HI}, ${LO}]) {
      got[port] = 0;
      net.createServer((s) => s.on('data', (d) => {
        const now = Date.now(); if (!t0) t0 = now;
        if (now - t0 >= 1500 && now - t0 < 4500) got[port] += d.length;
      })).listen(port, '0.0.0.0');
    }
    setTimeout(() => { console.log(JSON.stringify(got)); process.exit(0); }, 7000);`);
  await new Promise((r) => setTimeout(r, 500));
  // Senders in cli: both flows as fast as TCP goes, for 5 s.
  await nodeIn(ns.cli, `
    const net = require('net'); const buf = Buffer.alloc(64 * 1024, 1);
    for (const port of [${HI}, ${LO}]) {
      const s = net.connect(port, '${ns.fwAddr}');
      const pump = () => { while (s.write(buf)) {} };
      s.on('connect', pump); s.on('drain', pump); s.on('error', () => {});
    }
    setTimeout(() => process.exit(0), 5500);`);
  const got = JSON.parse(await receiver) as Record<string, number>;
  const rate = (port: number) => (got[port]! * 8) / 3;
  const within = (measured: number, planned: number) => Math.abs(measured - planned) / planned <= 0.15;
  t.ok(within(rate(HI), plan[0]!.rate), `plant (high priority) measured ${(rate(HI) / M).toFixed(2)} Mbit/s, planned 12`);
  t.ok(within(rate(LO), plan[1]!.rate), `office (low priority) measured ${(rate(LO) / M).toFixed(2)} Mbit/s, planned 8`);

  // Cut: the office VPN's packets are dropped.
  await tc.apply({ vpns: [state.vpns[0]!, { ...state.vpns[1]!, rate: 0, cut: true }] });
  const filters = await new Promise<string>((resolve) => {
    const p = spawn('ip', ['netns', 'exec', ns.cli, 'tc', 'filter', 'show', 'dev', ns.cliDev], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('close', () => resolve(out));
  });
  t.match(filters, /flowid 1:ffff/, 'a cut VPN is classified into the blackhole class');
});

t.test('tc driver refuses bad settings before touching anything', async (t) => {
  t.throws(() => new TcDriver({ dev: 'eth0; rm -rf /', capacity: 1 }), /bad interface name/, 'interface names are checked');
  t.throws(() => new TcDriver({ dev: 'eth0', capacity: 0 }), /link capacity must be given/, 'a capacity is required');
  const s = new TcDriver({ dev: 'veth0', capacity: 10 * M }).script({ vpns: [
    { id: 'a', protocol: 'udp', port: 53, priority: 1, rate: 4 * M, cut: false, members: [{ deviceId: 'x', address: null, via: null }] },
    { id: 'idle', protocol: 'tcp', port: 80, priority: 9, rate: 0, cut: false, members: [] },
  ] });
  t.match(s, /class add dev veth0 parent 1:1 classid 1:10 htb rate 4000000bit ceil 4000000bit prio 0 /, 'a class at the planned rate');
  t.match(s, /match ip protocol 17 0xff match ip dport 53 0xffff flowid 1:10/, 'udp/53 classified into it');
  t.notMatch(s, /dport 80/, 'a VPN without members gets nothing');
});
