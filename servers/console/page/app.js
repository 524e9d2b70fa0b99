// The kagi console page: preact + htm from node_modules (no build step),
// uPlot for the rate charts. All data comes from /api (servers/console/
// server.ts): the fleet and the rates live over server-sent events, the
// device page on demand; actions are POSTs with the session's CSRF token.
import { html, render } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';

const api = async (path, init = {}) => {
  const r = await fetch(path, { credentials: 'same-origin', ...init });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(body.error ?? `${r.status}`), { status: r.status });
  return body;
};

/** Take a one-time login token from the URL's fragment (kagi admin login), once. */
async function signInFromFragment() {
  const m = /^#login=([A-Za-z0-9_-]+)$/.exec(location.hash);
  if (!m) return null;
  history.replaceState(null, '', '/#/'); // the token is spent either way: out of the address bar and history
  try {
    await api('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: m[1] }) });
    return null;
  } catch (e) {
    return e.message;
  }
}

const route = () => {
  const h = location.hash.replace(/^#/, '') || '/';
  const d = /^\/device\/(.+)$/.exec(h);
  if (d) return { page: 'device', id: decodeURIComponent(d[1]) };
  return { page: h === '/audit' ? 'audit' : 'fleet' };
};

function App() {
  const [session, setSession] = useState(undefined); // undefined: asking; null: signed out
  const [why, setWhy] = useState(null);
  const [fleet, setFleet] = useState(null);
  const [rates, setRates] = useState(null);
  const [where, setWhere] = useState(route());
  const [banner, setBanner] = useState(null);

  useEffect(() => {
    const on = () => setWhere(route());
    addEventListener('hashchange', on);
    (async () => {
      const refused = await signInFromFragment();
      try {
        setSession(await api('/api/session'));
      } catch (e) {
        setWhy(refused ?? (e.status === 401 ? null : e.message));
        setSession(null);
      }
    })();
    return () => removeEventListener('hashchange', on);
  }, []);

  useEffect(() => {
    if (!session) return;
    const es = new EventSource('/api/events');
    es.addEventListener('fleet', (e) => setFleet(JSON.parse(e.data)));
    es.addEventListener('rates', (e) => setRates(JSON.parse(e.data)));
    const out = (reason) => {
      es.close();
      setWhy(reason);
      setSession(null);
    };
    es.addEventListener('expired', () => out('your session expired: sign in again'));
    es.onerror = () => api('/api/session').catch((e) => e.status === 401 && out('your session ended: sign in again'));
    return () => es.close();
  }, [session]);

  if (session === undefined) return html`<p class="muted">kagi console: loading…</p>`;
  if (session === null) return html`<${SignIn} why=${why} />`;

  const act = async (op, args, what) => {
    try {
      await api('/api/op', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': session.csrf }, body: JSON.stringify({ op, args }) });
      setBanner({ ok: true, text: `${what}: done` });
    } catch (e) {
      if (e.status === 401) {
        setWhy('your session ended: sign in again');
        setSession(null);
      }
      setBanner({ ok: false, text: `${what}: ${e.message}` });
    }
  };

  return html`
    <header>
      <strong>kagi</strong>
      <a href="#/" class=${where.page === 'fleet' ? 'here' : ''}>fleet</a>
      <a href="#/audit" class=${where.page === 'audit' ? 'here' : ''}>audit log</a>
      <span class="who" id="who">signed in as ${session.admin} until ${new Date(session.expiresAt).toLocaleTimeString()}</span>
    </header>
    <main>
      ${banner && html`<div class=${`banner ${banner.ok ? 'ok' : 'error'}`} id="banner">${banner.text}</div>`}
      ${!fleet ? html`<p class="muted">waiting for the fleet…</p>`
        : where.page === 'device' ? html`<${DevicePage} id=${where.id} fleet=${fleet} act=${act} />`
        : where.page === 'audit' ? html`<${Audit} rows=${fleet.audit} />`
        : html`<${Fleet} fleet=${fleet} rates=${rates} act=${act} />`}
    </main>`;
}

function SignIn({ why }) {
  return html`<main id="signed-out">
    <section>
      <h2>Sign in</h2>
      ${why && html`<p class="banner error" id="why">${why}</p>`}
      <p>The console signs in with an admin identity, never a password. On a machine with your admin file, run</p>
      <pre><code>kagi admin login ADMIN-FILE --url ${location.origin}/</code></pre>
      <p>and open the URL it prints (within 5 minutes; it works once).</p>
    </section>
  </main>`;
}

const stateOf = (d) => (d.online === null ? 'unknown' : d.online ? 'online' : 'offline');
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '—');

function Fleet({ fleet, rates, act }) {
  const { status, recent } = fleet;
  const live = status.devices.filter((d) => !d.revoked);
  const online = live.filter((d) => d.online === true).length;
  return html`
    <section>
      <div class="counts">
        <span><strong id="count-online">${online}</strong> online</span>
        <span><strong id="count-offline">${live.length - online}</strong> offline or never seen</span>
        <span><strong>${status.devices.length - live.length}</strong> revoked</span>
        <span><strong>${status.vpns.length}</strong> VPNs</span>
      </div>
    </section>
    <section><h2>Rates</h2><${Chart} rates=${rates} /></section>
    <section>
      <h2>VPNs</h2>
      <div class="vpns">${status.vpns.map((v) => html`<${Vpn} v=${v} act=${act} key=${v.id} />`)}</div>
      ${status.vpns.length === 0 && html`<p class="muted">no VPNs yet (kagi vpn add)</p>`}
    </section>
    <section>
      <h2>Devices</h2>
      <table id="devices">
        <thead><tr><th>device</th><th>kind</th><th>state</th><th>since</th><th>address</th><th></th></tr></thead>
        <tbody>${status.devices.map((d) => html`
          <tr key=${d.id} data-device=${d.id} data-online=${stateOf(d)} data-revoked=${String(d.revoked)} class=${d.revoked ? 'revoked' : ''}>
            <td><a href=${`#/device/${encodeURIComponent(d.id)}`}>${d.id}</a></td>
            <td>${d.kind}</td>
            <td class=${stateOf(d)}>${d.revoked ? 'revoked' : stateOf(d)}${d.communicating ? '' : ' · missing polls'}</td>
            <td>${when(d.since)}</td>
            <td>${d.address ?? '—'}</td>
            <td>${!d.revoked && html`<${RevokeButton} id=${d.id} act=${act} />`}</td>
          </tr>`)}
        </tbody>
      </table>
    </section>
    <section>
      <h2>Relay ports</h2>
      ${status.ports.length === 0 ? html`<p class="muted">no plaintext terminals</p>` : html`
      <table><thead><tr><th>relay</th><th>port</th><th>terminal</th><th>state</th><th>VPNs</th></tr></thead>
        <tbody>${status.ports.map((p) => html`<tr key=${p.terminal}><td>${p.relay ?? '—'}</td><td>${p.port ?? '—'}</td><td>${p.terminal}</td><td class=${p.state}>${p.state}</td><td>${p.vpns.join(', ') || '—'}</td></tr>`)}</tbody>
      </table>`}
    </section>
    <section>
      <h2>Recent refusals and evictions</h2>
      ${recent.length === 0 ? html`<p class="muted">none since this control plane started</p>` : html`
      <table id="recent"><tbody>${recent.map((r) => html`<tr><td>${when(r.at)}</td><td>${r.kind}</td><td>${r.text}</td></tr>`)}</tbody></table>`}
    </section>`;
}

function RevokeButton({ id, act }) {
  return html`<button class="danger" data-revoke=${id} onClick=${() => confirm(`Revoke device ${id} for good? It leaves every VPN and can never authenticate again.`) && act('device.revoke', { id }, `revoke ${id}`)}>revoke</button>`;
}

function Vpn({ v, act }) {
  const [user, setUser] = useState('');
  const submit = (op, what) => (e) => {
    e.preventDefault();
    if (user) act(op, { vpn: v.id, user }, `${what} ${user} ${op === 'vpn.grant' ? 'to' : 'from'} ${v.id}`);
  };
  return html`<div class="vpn" data-vpn=${v.id}>
    <h2>${v.id} <span class="muted">${v.protocol}/${v.port}</span></h2>
    <div>epoch <strong data-epoch>${v.epoch ?? '—'}</strong>, last rekey ${when(v.lastRekey)}</div>
    <div>priority ${v.priority}; ${v.cut ? html`<span class="cut">CUT</span>` : v.rate ? `planned ${fmtRate(v.rate)}` : 'no plan (no link capacity)'}</div>
    <div>members (${v.members.length}, of ${v.users} user${v.users === 1 ? '' : 's'}):
      ${v.members.length === 0 ? html` <span class="muted">none</span>` : html`<ul>${v.members.map((m) => html`<li key=${m.device} data-member=${`${v.id}/${m.device}`}><a href=${`#/device/${encodeURIComponent(m.device)}`}>${m.device}</a> as ${m.user}, key epoch ${m.keyId}</li>`)}</ul>`}
    </div>
    <button data-rekey=${v.id} onClick=${() => act('vpn.rekey', { id: v.id }, `rekey ${v.id}`)}>rekey</button>
    <form>
      <input placeholder="user" value=${user} onInput=${(e) => setUser(e.target.value)} data-user-for=${v.id} />
      <button data-grant=${v.id} onClick=${submit('vpn.grant', 'grant')}>grant</button>
      <button data-ungrant=${v.id} onClick=${submit('vpn.revoke', 'revoke')}>revoke</button>
    </form>
  </div>`;
}

const fmtRate = (bps) => (bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mbit/s` : `${Math.round(bps / 1e3)} kbit/s`);

function Chart({ rates }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    if (!rates || !box.current) return;
    const data = [rates.t, ...rates.v];
    if (!plot.current) {
      const colors = ['#1570ef', '#b42318', '#1a7f37', '#9a6700'];
      plot.current = new uPlot({ width: Math.max(300, box.current.clientWidth), height: 180, series: [{}, ...rates.series.map((label, i) => ({ label, stroke: colors[i % colors.length] }))] }, data, box.current);
    } else plot.current.setData(data);
  }, [rates]);
  useEffect(() => () => plot.current?.destroy(), []);
  return html`<div ref=${box} id="chart">${!rates && html`<p class="muted">no samples yet</p>`}</div>`;
}

function DevicePage({ id, fleet, act }) {
  const [view, setView] = useState(undefined);
  // Read again whenever the fleet changes: the device page is live too.
  useEffect(() => {
    api(`/api/device/${encodeURIComponent(id)}`).then(setView, (e) => setView({ error: e.message }));
  }, [id, fleet]);
  if (view === undefined) return html`<p class="muted">loading ${id}…</p>`;
  if (view.error) return html`<section><h2>${id}</h2><p class="banner error">${view.error}</p></section>`;
  const l = view.liveness;
  const state = view.revoked ? 'revoked' : l.online === null ? 'unknown' : l.online ? 'online' : 'offline';
  return html`
    <section id="device" data-device-page=${view.id} data-state=${state}>
      <h2>${view.id} <span class="muted">${view.kind}, ${view.mac}</span></h2>
      <p class=${state}>${state}${l.since ? ` (${view.revoked ? 'last seen' : 'since'} ${when(l.since)})` : ''}${l.communicating ? '' : `, missing polls (${l.missedPolls})`}</p>
      <p>address ${view.address ?? '—'}; joined as ${view.joinedAs ?? '—'}</p>
      ${!view.revoked && html`<${RevokeButton} id=${view.id} act=${act} />`}
    </section>
    <section>
      <h2>Memberships</h2>
      ${view.memberships.length === 0 ? html`<p class="muted" id="no-memberships">in no VPN</p>` : html`
      <table><thead><tr><th>VPN</th><th>as user</th><th>key epoch held</th><th>current epoch</th><th>network id</th></tr></thead>
        <tbody>${view.memberships.map((m) => html`<tr key=${m.vpn} data-membership=${m.vpn}><td>${m.vpn}</td><td>${m.user}</td><td>${m.epoch}</td><td>${m.current ?? '—'}</td><td><code>${m.networkId}</code></td></tr>`)}</tbody>
      </table>`}
    </section>
    ${view.relayPorts.length > 0 && html`<section><h2>Relay ports</h2><table><tbody>${view.relayPorts.map((p) => html`<tr><td>${p.relay}</td><td>${p.port}</td><td>${p.terminal}</td><td class=${p.state}>${p.state}</td></tr>`)}</tbody></table></section>`}
    ${view.why && html`<section><h2>Why</h2><ol>${view.why.map((s) => html`<li class=${s.verdict === 'fail' ? 'offline' : ''} data-why-step=${s.step} data-verdict=${s.verdict} data-marked=${s.marked ? 'true' : 'false'}>${s.marked ? '> ' : ''}${s.step}: ${s.verdict} — ${s.evidence} ${s.hint ? html`<code>${s.hint}</code>` : ''}</li>`)}</ol></section>`}`;
}

function Audit({ rows }) {
  return html`<section><h2>Audit log (last ${rows.length}, newest first)</h2>
    <table id="audit"><thead><tr><th>when</th><th>who</th><th>what</th><th>detail</th></tr></thead>
      <tbody>${[...rows].reverse().map((r) => html`<tr data-audit=${r.op}><td>${when(new Date(r.at).toISOString())}</td><td>${r.actor}</td><td>${r.op}</td><td><code>${r.detail}</code></td></tr>`)}</tbody>
    </table></section>`;
}

render(html`<${App} />`, document.getElementById('app'));
