// consultd's admin view. It speaks Socket.IO v5 over Engine.IO v4 by hand on
// one WebSocket, so the page needs no bundle and no npm install: open,
// CONNECT with `{ token }`, answer pings, `admin:subscribe` with an ack,
// then render every `admin:snapshot`. Everything shown goes through
// textContent: user ids come from tokens and are never parsed as HTML.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = 'consultd-admin-token';
  const RETRY_MS = 2000;

  let ws = null;
  let stopped = true;
  let retry = null;
  let nextAck = 0;
  const acks = new Map();
  let last = null;

  function setStatus(state, text) {
    const s = $('status');
    s.dataset.state = state;
    s.textContent = text;
  }

  function open(token) {
    stopped = false;
    clearTimeout(retry);
    setStatus('connecting', 'connecting…');
    $('disconnect').hidden = false;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(`${scheme}//${location.host}/socket.io/?EIO=4&transport=websocket`);
    ws = socket;
    socket.onmessage = (e) => {
      if (ws === socket && typeof e.data === 'string') onFrame(socket, token, e.data);
    };
    socket.onclose = () => {
      if (ws !== socket) return;
      ws = null;
      acks.clear();
      if (stopped) return;
      setStatus('closed', 'disconnected; retrying…');
      retry = setTimeout(() => open(token), RETRY_MS);
    };
  }

  function stop(state, text) {
    stopped = true;
    clearTimeout(retry);
    const socket = ws;
    ws = null;
    if (socket) socket.close();
    setStatus(state, text);
    $('disconnect').hidden = true;
  }

  // Engine.IO v4 frames: 0 open, 1 close, 2 ping, 3 pong, 4 message.
  function onFrame(socket, token, frame) {
    switch (frame[0]) {
      case '0':
        socket.send(`40${JSON.stringify({ token })}`);
        break;
      case '2':
        socket.send('3');
        break;
      case '1':
        socket.close();
        break;
      case '4':
        onPacket(socket, frame.slice(1));
        break;
      default:
        break;
    }
  }

  // Socket.IO v5 packets on the root namespace: <type>[<ack id>][<json>].
  function onPacket(socket, packet) {
    const type = packet[0];
    let i = 1;
    let id = '';
    while (i < packet.length && packet[i] >= '0' && packet[i] <= '9') id += packet[i++];
    let data = null;
    try {
      data = i < packet.length ? JSON.parse(packet.slice(i)) : null;
    } catch {
      return;
    }
    if (type === '0') {
      emit(socket, 'admin:subscribe', {}, subscribed);
    } else if (type === '4') {
      refused((data && data.message) || 'refused');
    } else if (type === '3') {
      const done = acks.get(id);
      acks.delete(id);
      if (done && Array.isArray(data)) done(data[0]);
    } else if (type === '2' && Array.isArray(data)) {
      if (data[0] === 'admin:snapshot') render(data[1]);
    } else if (type === '1') {
      socket.close();
    }
  }

  function emit(socket, name, payload, done) {
    const id = String(nextAck++);
    acks.set(id, done);
    socket.send(`42${id}${JSON.stringify([name, payload])}`);
  }

  function subscribed(ack) {
    if (!ack || ack.ok !== true) {
      refused((ack && ack.error && ack.error.code) || 'refused');
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, $('token').value);
    setStatus('live', 'live');
    render(ack.snapshot);
  }

  function refused(word) {
    sessionStorage.removeItem(TOKEN_KEY);
    $('board').hidden = true;
    last = null;
    stop('refused', `refused: ${word}`);
  }

  // ---- rendering ----

  // The tail: time-ordered ids (UUIDv7) share their first characters.
  const shortId = (id) => (id && id.length > 12 ? `…${id.slice(-8)}` : id || '—');
  const clock = (at) => (at ? new Date(at).toLocaleTimeString() : '—');

  function age(secs) {
    if (secs < 60) return `${secs}s`;
    if (secs < 3600) return `${Math.floor(secs / 60)}m ${secs % 60}s`;
    return `${Math.floor(secs / 3600)}h ${Math.floor((secs % 3600) / 60)}m`;
  }

  function cell(text, cls, title) {
    const td = document.createElement('td');
    td.textContent = text == null ? '—' : String(text);
    if (cls) td.className = cls;
    if (title) td.title = title;
    return td;
  }

  const idCell = (id) => cell(shortId(id), 'id', id);
  const statusCell = (s) => cell(s, `status-${s}`);

  function fill(table, items, cells) {
    const rows = items.map((item) => {
      const tr = document.createElement('tr');
      if (item.id != null) tr.dataset.id = item.id;
      tr.append(...cells(item));
      return tr;
    });
    $(table).tBodies[0].replaceChildren(...rows);
  }

  function total(id, list) {
    $(id).textContent = list.total > list.items.length ? `(${list.items.length} of ${list.total})` : `(${list.total})`;
  }

  function sparkline(label, values, unit) {
    const box = document.createElement('div');
    box.className = 'metric';
    box.dataset.metric = label;
    const known = values.filter((v) => v != null);
    const head = document.createElement('div');
    head.textContent = label;
    const value = document.createElement('div');
    value.className = 'value';
    value.textContent = known.length ? `${known[known.length - 1]}${unit}` : 'off';
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 100 30');
    svg.setAttribute('preserveAspectRatio', 'none');
    if (known.length > 1) {
      const max = Math.max(1, ...known);
      const step = 100 / (values.length - 1);
      const line = document.createElementNS(ns, 'polyline');
      line.setAttribute(
        'points',
        values.map((v, i) => `${(i * step).toFixed(1)},${(29 - ((v ?? 0) / max) * 28).toFixed(1)}`).join(' '),
      );
      svg.append(line);
    }
    box.append(head, value, svg);
    return box;
  }

  function render(snap) {
    if (!snap || !snap.board || !snap.node) return;
    last = snap;
    const { board, node } = snap;
    $('board').hidden = false;
    $('updated').textContent = `updated ${clock(board.at)}`;

    $('sockets-total').textContent = `(${node.sockets})`;
    fill('sockets', Object.entries(node.socketsByRole).map(([role, n]) => ({ id: role, role, n })), (r) => [
      cell(r.role),
      cell(r.n),
    ]);

    const samples = node.samples;
    const every = node.sampleEverySecs;
    $('metrics').replaceChildren(
      sparkline('Sockets', samples.map((s) => s.sockets), ''),
      sparkline(`Transitions per ${every} s`, samples.map((s) => s.transitions), ''),
      sparkline('Webhook outbox', samples.map((s) => s.outboxPending), node.outbox ? ` (${node.outbox.dead} dead)` : ''),
    );

    total('calls-total', board.calls);
    fill('calls', board.calls.items, (c) => [
      idCell(c.id),
      cell(c.kind),
      statusCell(c.status),
      cell(c.hostId),
      cell(c.guestId),
      cell(c.callType),
      cell(age(c.ageSecs)),
    ]);
    fill('schedules', board.schedules, (s) => [
      idCell(s.id),
      cell(s.hostId),
      cell(`${s.date} ${s.startTime}–${s.endTime}`),
      statusCell(s.status),
      cell(s.waiting),
      cell(s.ready),
      cell(s.inCall),
    ]);
    total('tutoring-total', board.tutoring);
    fill('tutoring', board.tutoring.items, (t) => [
      idCell(t.id),
      statusCell(t.status),
      cell(t.hostId),
      cell(t.guestId),
      cell(age(t.ageSecs)),
    ]);
    total('chats-total', board.chats);
    fill('chats', board.chats.items, (c) => [
      idCell(c.id),
      statusCell(c.status),
      cell(c.customerId),
      cell(c.mechanicId),
      cell(age(c.ageSecs)),
      cell(c.endsAt ? clock(c.endsAt) : null),
    ]);
    fill('transitions', board.transitions, (t) => [
      cell(clock(t.at), 'mono'),
      cell(t.actor ? `${t.actor} (${t.actorRole})` : 'server'),
      cell(t.action),
      cell(`${t.entity} ${shortId(t.entityId)}`, 'id', t.entityId),
      cell(`${t.from ?? '∅'} → ${t.to}`),
    ]);
  }

  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token').value.trim();
    if (!token) {
      setStatus('idle', 'paste an admin token first');
      return;
    }
    stop('idle', 'not connected');
    open(token);
  });
  $('disconnect').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    stop('idle', 'not connected');
  });

  // For tests and the curious: the latest snapshot.
  window.consultdAdmin = {
    get snapshot() {
      return last;
    },
  };

  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    $('token').value = saved;
    open(saved);
  }
})();
