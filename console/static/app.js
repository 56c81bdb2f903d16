// The sluice console: one page, no build step, no dependency. It speaks only
// the public API (Connect's JSON protocol over fetch), with the token the user
// enters, and keeps drill progress in this browser's local storage.
"use strict";

// ---------------------------------------------------------------------------
// The API

const api = {
  token: sessionStorage.getItem("sluice.token") || localStorage.getItem("sluice.token") || "",

  headers(contentType) {
    const h = { "Content-Type": contentType, "Connect-Protocol-Version": "1" };
    if (this.token) h["Authorization"] = "Bearer " + this.token;
    return h;
  },

  // call makes a unary call: service and method as in the proto, msg a plain
  // object in protobuf's JSON mapping. It throws an ApiError.
  async call(service, method, msg) {
    let res;
    try {
      res = await fetch(`/sluice.v1.${service}/${method}`, {
        method: "POST", headers: this.headers("application/json"), body: JSON.stringify(msg || {}),
      });
    } catch (e) {
      throw new ApiError("unavailable", "the server cannot be reached: " + e.message);
    }
    const text = await res.text();
    let body = {};
    try { body = text ? JSON.parse(text) : {}; } catch (e) { body = { message: text }; }
    if (!res.ok) throw new ApiError(body.code || "unknown", body.message || res.statusText);
    return body;
  },

  // stream makes a server-streaming call and calls onMessage for each message
  // until the stream ends, onMessage returns false, or signal aborts.
  async stream(service, method, msg, onMessage, signal) {
    const json = new TextEncoder().encode(JSON.stringify(msg || {}));
    const body = new Uint8Array(5 + json.length);
    new DataView(body.buffer).setUint32(1, json.length);
    body.set(json, 5);
    let res;
    try {
      res = await fetch(`/sluice.v1.${service}/${method}`, {
        method: "POST", headers: this.headers("application/connect+json"), body, signal,
      });
    } catch (e) {
      if (e.name === "AbortError") return;
      throw new ApiError("unavailable", "the server cannot be reached: " + e.message);
    }
    if (!res.ok) {
      let b = {};
      try { b = await res.json(); } catch (e) { /* not JSON */ }
      throw new ApiError(b.code || "unknown", b.message || res.statusText);
    }
    const reader = res.body.getReader();
    let buf = new Uint8Array(0);
    const dec = new TextDecoder();
    try {
      for (;;) {
        // Parse every whole frame in buf.
        while (buf.length >= 5) {
          const flags = buf[0];
          const n = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
          if (buf.length < 5 + n) break;
          const payload = JSON.parse(dec.decode(buf.subarray(5, 5 + n)) || "{}");
          buf = buf.slice(5 + n);
          if (flags & 2) { // end of stream
            if (payload.error) throw new ApiError(payload.error.code, payload.error.message);
            return;
          }
          if (onMessage(payload) === false) { reader.cancel(); return; }
        }
        const { done, value } = await reader.read();
        if (done) return;
        const next = new Uint8Array(buf.length + value.length);
        next.set(buf); next.set(value, buf.length);
        buf = next;
      }
    } catch (e) {
      if (e.name === "AbortError") return;
      throw e;
    }
  },
};

class ApiError extends Error {
  constructor(code, message) { super(message); this.code = code; }
  toString() { return `${this.code}: ${this.message}`; }
}

// ---------------------------------------------------------------------------
// Small helpers

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// h builds an element: h("td", {class: "x", onclick: f}, "text", child...).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const num = (v) => Number(v || 0);
const fmtInt = (v) => num(v).toLocaleString("en-US");
function fmtBytes(v) {
  let n = num(v);
  for (const u of ["B", "KiB", "MiB", "GiB", "TiB"]) {
    if (n < 1024 || u === "TiB") return (u === "B" ? n : n.toFixed(1)) + " " + u;
    n /= 1024;
  }
}
function fmtRate(v) { return v === null || v === undefined ? "–" : (v < 10 ? v.toFixed(1) : Math.round(v).toLocaleString("en-US")) + "/s"; }
function fmtAge(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = ms / 1000;
  if (s < 1) return Math.round(ms) + " ms";
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
const modeName = (m) => (m || "SUBSCRIPTION_MODE_QUEUE").replace("SUBSCRIPTION_MODE_", "").replace("UNSPECIFIED", "QUEUE").toLowerCase();

function b64decode(s) {
  const bin = atob(s || "");
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
function b64encode(str) {
  const bytes = new TextEncoder().encode(str);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}
// showBytes is text when the bytes are UTF-8, else hex.
function showBytes(s) {
  const b = b64decode(s);
  try { return new TextDecoder("utf-8", { fatal: true }).decode(b); } catch (e) {
    return "0x" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }
}

function banner(msg, kind = "error") {
  const el = $("#banner");
  if (!msg) { el.hidden = true; return; }
  el.hidden = false;
  el.className = "banner " + kind;
  el.textContent = msg;
}

// guard runs an action of a button, showing its error in the banner.
function guard(fn) {
  return async (ev) => {
    if (ev && ev.preventDefault) ev.preventDefault();
    const btn = ev && ev.currentTarget instanceof HTMLButtonElement ? ev.currentTarget : null;
    if (btn) btn.disabled = true;
    try {
      banner(null);
      await fn(ev);
    } catch (e) {
      showError(e);
    } finally {
      if (btn) btn.disabled = false;
    }
  };
}

function showError(e) {
  if (e.code === "unauthenticated") {
    banner("The server asks for a token: enter it at the top right. (" + e.message + ")");
    $("#token").focus();
  } else {
    banner(e.toString());
  }
}

// ---------------------------------------------------------------------------
// Rates: the console samples counters and derives rates and charts from them.

const history = new Map(); // key -> [{t, v}] of a counter or a gauge
const HISTORY_MAX = 90;

function record(key, v, t = Date.now()) {
  let a = history.get(key);
  if (!a) history.set(key, (a = []));
  a.push({ t, v });
  if (a.length > HISTORY_MAX) a.shift();
}
// rates turns a counter's samples into per-second rates between samples.
function rates(key) {
  const a = history.get(key) || [];
  const out = [];
  for (let i = 1; i < a.length; i++) {
    const dt = (a[i].t - a[i - 1].t) / 1000;
    if (dt > 0) out.push(Math.max(0, (a[i].v - a[i - 1].v) / dt));
  }
  return out;
}
function lastRate(key) { const r = rates(key); return r.length ? r[r.length - 1] : null; }
function gauge(key) { return (history.get(key) || []).map((s) => s.v); }

function spark(values, label) {
  const c = h("canvas", { class: "spark", width: 120, height: 28, title: label, "aria-label": label });
  const ctx = c.getContext("2d");
  if (!ctx || values.length < 2) return c;
  const max = Math.max(...values, 1);
  ctx.strokeStyle = "#2b6cb0";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = (i / (values.length - 1)) * (c.width - 2) + 1;
    const y = c.height - 2 - (v / max) * (c.height - 4);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  return c;
}

// ---------------------------------------------------------------------------
// Routing: #/ streams, #/s/NAME, #/s/NAME/sub/SUB, #/s/NAME/sub/SUB/dlq,
// #/drills, #/drills/N.

let refreshTimer = null;
let pageAbort = null;

function route() {
  clearInterval(refreshTimer);
  refreshTimer = null;
  if (pageAbort) pageAbort.abort();
  pageAbort = new AbortController();
  banner(null);
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent).filter((p) => p !== "");
  for (const a of $$("nav a")) a.classList.toggle("active", a.dataset.nav === (parts[0] === "drills" ? "drills" : "streams"));
  const view = $("#view");
  let page;
  if (parts[0] === "drills") page = parts[1] ? drillPage(Number(parts[1])) : drillsPage();
  else if (parts[0] === "s" && parts[1] && parts[2] === "sub" && parts[3] && parts[4] === "dlq") page = dlqPage(parts[1], parts[3]);
  else if (parts[0] === "s" && parts[1] && parts[2] === "sub" && parts[3]) page = subscriptionPage(parts[1], parts[3]);
  else if (parts[0] === "s" && parts[1]) page = streamPage(parts[1]);
  else page = streamsPage();
  view.replaceChildren(page.el);
  const tick = guardTick(page.refresh);
  tick();
  if (page.every) refreshTimer = setInterval(tick, page.every);
}

function guardTick(refresh) {
  let busy = false;
  return async () => {
    if (!refresh || busy) return;
    busy = true;
    try {
      await refresh();
      $("#status").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) {
      showError(e);
    } finally {
      busy = false;
    }
  };
}

const link = (href, text, attrs = {}) => h("a", { href, ...attrs }, text);
const streamHref = (s) => "#/s/" + encodeURIComponent(s);
const subHref = (s, sub) => streamHref(s) + "/sub/" + encodeURIComponent(sub);

// ---------------------------------------------------------------------------
// Streams

function streamsPage() {
  const tbody = h("tbody", { id: "streams-body" });
  const form = h("form", { id: "create-stream", class: "inline" },
    h("input", { name: "name", placeholder: "stream name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9._-]{0,127}", "aria-label": "stream name" }),
    h("label", {}, "partitions ", h("input", { name: "partitions", type: "number", min: 1, max: 1024, value: 1 })),
    h("button", { type: "submit" }, "Create stream"));
  form.addEventListener("submit", guard(async () => {
    const name = form.name.value.trim();
    await api.call("StreamService", "CreateStream", { config: { name, partitions: Number(form.partitions.value) } });
    location.hash = streamHref(name);
  }));
  const el = h("section", {},
    h("h1", {}, "Streams"),
    form,
    h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ["stream", "partitions", "messages", "bytes", "publish rate", "", "rejected", "duplicates"].map((t) => h("th", {}, t)))),
      tbody),
    h("p", { class: "muted" }, "Rates are sampled every 2 s by this page from the streams' counters."));
  async function refresh() {
    const res = await api.call("StreamService", "ListStreams", {});
    const streams = res.streams || [];
    const now = Date.now();
    tbody.replaceChildren(...streams.map((s) => {
      const name = s.config.name;
      record("pub:" + name, num(s.counters && s.counters.published), now);
      return h("tr", { "data-stream": name },
        h("td", {}, link(streamHref(name), name)),
        h("td", { class: "n" }, s.config.partitions),
        h("td", { class: "n", "data-field": "messages" }, fmtInt(s.messages)),
        h("td", { class: "n" }, fmtBytes(s.bytes)),
        h("td", { class: "n" }, fmtRate(lastRate("pub:" + name))),
        h("td", {}, spark(rates("pub:" + name), "publish rate")),
        h("td", { class: "n" }, fmtInt(s.counters && s.counters.rejected)),
        h("td", { class: "n" }, fmtInt(s.counters && s.counters.duplicates)));
    }));
    if (!streams.length) tbody.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No streams yet: create one above.")));
  }
  return { el, refresh, every: 2000 };
}

function streamPage(name) {
  const info = h("div", { class: "cards" });
  const parts = h("tbody");
  const subs = h("tbody", { id: "subs-body" });
  const charts = h("div", { class: "charts" });

  const pub = h("form", { id: "publish-form", class: "stack" },
    h("h2", {}, "Publish a test message"),
    h("label", {}, "key ", h("input", { name: "key", placeholder: "optional" })),
    h("label", {}, "headers ", h("input", { name: "headers", placeholder: "k=v, k2=v2" })),
    h("label", {}, "body ", h("textarea", { name: "body", rows: 3, placeholder: "message body" })),
    h("div", {}, h("button", { type: "submit" }, "Publish"), " ", h("span", { id: "publish-result", class: "muted" })));
  pub.addEventListener("submit", guard(async () => {
    const msg = { body: b64encode(pub.body.value) };
    if (pub.key.value) msg.key = b64encode(pub.key.value);
    const headers = pub.headers.value.split(",").map((x) => x.trim()).filter(Boolean).map((kv) => {
      const i = kv.indexOf("=");
      return i < 0 ? { key: kv, value: "" } : { key: kv.slice(0, i).trim(), value: b64encode(kv.slice(i + 1).trim()) };
    });
    if (headers.length) msg.headers = headers;
    const res = await api.call("PublishService", "Publish", { stream: name, message: msg });
    $("#publish-result").textContent = `stored at partition ${res.position.partition}, offset ${res.position.offset}` + (res.position.duplicate ? " (duplicate)" : "");
    await refresh();
  }));

  const peekOut = h("tbody", { id: "peek-body" });
  const peek = h("form", { id: "peek-form", class: "inline" },
    h("h2", {}, "Peek"),
    h("label", {}, "partition ", h("input", { name: "partition", type: "number", min: 0, value: 0 })),
    h("label", {}, "from ", h("select", { name: "from" }, h("option", { value: "earliest" }, "earliest"), h("option", { value: "offset" }, "offset"))),
    h("input", { name: "offset", type: "number", min: 0, value: 0, "aria-label": "offset" }),
    h("label", {}, "count ", h("input", { name: "count", type: "number", min: 1, max: 100, value: 10 })),
    h("button", { type: "submit" }, "Peek"));
  peek.addEventListener("submit", guard(async () => {
    const want = Math.min(100, Math.max(1, Number(peek.count.value)));
    const start = peek.from.value === "earliest" ? { earliest: true } : { offset: String(Number(peek.offset.value)) };
    const got = [];
    // Read follows the tail; stop at the high watermark, or when count arrive.
    const st = await api.call("StreamService", "GetStream", { name });
    const p = (st.stream.partitions || []).find((x) => x.id === Number(peek.partition.value));
    if (!p) throw new ApiError("invalid_argument", `partition ${peek.partition.value}: the stream has ${st.stream.partitions.length}`);
    const hwm = num(p.highWatermark);
    if (num(p.startOffset) < hwm) {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), 3000);
      await api.stream("ReadService", "Read", { stream: name, partition: p.id, start }, (m) => {
        for (const r of m.records || []) {
          got.push(r);
          if (got.length >= want || num(r.offset) + 1 >= hwm) return false;
        }
      }, ctl.signal);
      clearTimeout(timer);
    }
    peekOut.replaceChildren(...got.map(recordRow));
    if (!got.length) peekOut.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "nothing stored there")));
  }));

  const subForm = h("form", { id: "create-sub", class: "inline" },
    h("input", { name: "name", placeholder: "subscription name", required: true, "aria-label": "subscription name" }),
    h("select", { name: "mode", "aria-label": "mode" },
      ["QUEUE", "KEY_ORDERED", "PARTITIONED"].map((m) => h("option", { value: "SUBSCRIPTION_MODE_" + m }, m.toLowerCase()))),
    h("label", {}, "max deliveries ", h("input", { name: "maxDeliveries", type: "number", min: 1, max: 1000, value: 5 })),
    h("button", { type: "submit" }, "Create subscription"));
  subForm.addEventListener("submit", guard(async () => {
    await api.call("SubscriptionService", "CreateSubscription", {
      stream: name, config: { name: subForm.name.value.trim(), mode: subForm.mode.value, maxDeliveries: Number(subForm.maxDeliveries.value) },
    });
    subForm.reset();
    await refresh();
  }));

  const del = h("button", { class: "danger", id: "delete-stream" }, "Delete stream");
  del.addEventListener("click", guard(async () => {
    if (!confirm(`Delete stream ${name} and every message in it?`)) return;
    await api.call("StreamService", "DeleteStream", { name });
    location.hash = "#/";
  }));

  const el = h("section", {},
    h("p", { class: "crumbs" }, link("#/", "Streams"), " / ", name),
    h("h1", {}, name, " ", del),
    info, charts,
    h("h2", {}, "Subscriptions"),
    subForm,
    h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ["subscription", "mode", "backlog", "oldest", "in flight", "delayed", "parked", "redeliveries", "dead letters", "consume rate", "lag", ""].map((t) => h("th", {}, t)))),
      subs),
    h("div", { class: "two" }, pub, h("div", {}, peek, h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ["offset", "time", "key", "headers", "body"].map((t) => h("th", {}, t)))), peekOut))),
    h("h2", {}, "Partitions"),
    h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ["partition", "start", "high watermark", "bytes", "segments"].map((t) => h("th", {}, t)))), parts));

  async function refresh() {
    const [st, sl] = await Promise.all([
      api.call("StreamService", "GetStream", { name }),
      api.call("SubscriptionService", "ListSubscriptions", { stream: name }),
    ]);
    const s = st.stream;
    const now = Date.now();
    record("pub:" + name, num(s.counters.published), now);
    const c = s.config;
    info.replaceChildren(
      card("messages", fmtInt(s.messages), "stream-messages"),
      card("bytes", fmtBytes(s.bytes)),
      card("partitions", c.partitions),
      card("publish rate", fmtRate(lastRate("pub:" + name))),
      card("bounds", `${fmtInt(c.maxMessages)} msgs, ${fmtBytes(c.maxBytes)} / partition`),
      card("when full", (c.overflow || "").replace("OVERFLOW_POLICY_", "").toLowerCase()),
      card("sync", (c.sync || "").replace("SYNC_POLICY_", "").toLowerCase()),
      card("rejected / blocked / dropped", `${fmtInt(s.counters.rejected)} / ${fmtInt(s.counters.blocked)} / ${fmtInt(s.counters.dropped)}`));
    parts.replaceChildren(...(s.partitions || []).map((p) => h("tr", {},
      h("td", { class: "n" }, p.id), h("td", { class: "n" }, fmtInt(p.startOffset)), h("td", { class: "n" }, fmtInt(p.highWatermark)),
      h("td", { class: "n" }, fmtBytes(p.bytes)), h("td", { class: "n" }, p.segments))));
    const list = sl.subscriptions || [];
    charts.replaceChildren(chart("publish rate (msg/s)", rates("pub:" + name)));
    subs.replaceChildren(...list.map((x) => {
      const sub = x.config.name;
      const k = name + "/" + sub;
      record("done:" + k, (x.partitions || []).reduce((a, p) => a + num(p.floor), 0), now);
      record("lag:" + k, num(x.backlog), now);
      const oldest = x.oldestUnsettled ? now - Date.parse(x.oldestUnsettled) : null;
      charts.append(chart(`${sub}: consume rate (msg/s)`, rates("done:" + k)), chart(`${sub}: lag (msgs)`, gauge("lag:" + k)));
      return h("tr", { "data-sub": sub },
        h("td", {}, link(subHref(name, sub), sub)),
        h("td", {}, modeName(x.config.mode)),
        h("td", { class: "n", "data-field": "backlog" }, fmtInt(x.backlog)),
        h("td", { class: "n" }, oldest === null ? "–" : fmtAge(oldest)),
        h("td", { class: "n" }, fmtInt(x.inFlight)),
        h("td", { class: "n" }, fmtInt(x.delayed)),
        h("td", { class: "n" }, fmtInt(x.parked)),
        h("td", { class: "n" }, fmtInt(x.redeliveries)),
        h("td", { class: "n", "data-field": "dead-lettered" }, link(subHref(name, sub) + "/dlq", fmtInt(x.deadLettered))),
        h("td", { class: "n" }, fmtRate(lastRate("done:" + k))),
        h("td", {}, spark(gauge("lag:" + k), "lag")),
        h("td", {}, link(subHref(name, sub), "consume")));
    }));
    if (!list.length) subs.append(h("tr", {}, h("td", { colspan: 12, class: "muted" }, "No subscriptions: every subscription sees every message.")));
  }
  return { el, refresh, every: 2000 };
}

function card(label, value, id) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value", id }, value));
}

function chart(label, values) {
  const c = h("canvas", { class: "chart", width: 260, height: 70 });
  const ctx = c.getContext("2d");
  if (ctx) {
    const max = Math.max(...values, 1);
    ctx.fillStyle = "#f7fafc";
    ctx.fillRect(0, 0, c.width, c.height);
    ctx.strokeStyle = "#2b6cb0";
    ctx.lineWidth = 2;
    ctx.beginPath();
    values.forEach((v, i) => {
      const x = values.length < 2 ? 0 : (i / (values.length - 1)) * (c.width - 4) + 2;
      const y = c.height - 4 - (v / max) * (c.height - 18);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.fillStyle = "#4a5568";
    ctx.font = "11px sans-serif";
    ctx.fillText("max " + (max < 10 ? max.toFixed(1) : Math.round(max)), 4, 12);
  }
  return h("figure", { class: "chartbox" }, c, h("figcaption", {}, label));
}

function recordRow(r) {
  return h("tr", {},
    h("td", { class: "n" }, `${r.partition}:${r.offset}`),
    h("td", {}, r.time ? new Date(r.time).toLocaleString() : ""),
    h("td", {}, r.key ? showBytes(r.key) : ""),
    h("td", {}, (r.headers || []).map((x) => `${x.key}=${showBytes(x.value)}`).join(", ")),
    h("td", { class: "body" }, showBytes(r.body)));
}

// ---------------------------------------------------------------------------
// A subscription: its state, parked keys, and consuming by hand.

function subscriptionPage(stream, sub) {
  const info = h("div", { class: "cards" });
  const parked = h("tbody");
  const deliveries = h("tbody", { id: "deliveries-body" });
  const consumer = { stream, subscription: sub, name: "console" };

  const fetchForm = h("form", { id: "fetch-form", class: "inline" },
    h("label", {}, "fetch up to ", h("input", { name: "max", type: "number", min: 1, max: 100, value: 10 })),
    h("button", { type: "submit" }, "Fetch"),
    h("span", { class: "muted" }, " as consumer “console”; each delivery is leased to you until you settle it or its lease ends."));
  fetchForm.addEventListener("submit", guard(async () => {
    const res = await api.call("ConsumerService", "Fetch", { consumer, max: Number(fetchForm.max.value), wait: "1s" });
    const ds = res.deliveries || [];
    deliveries.replaceChildren(...ds.map(deliveryRow));
    if (!ds.length) deliveries.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "nothing to deliver right now")));
    await refresh();
  }));

  function deliveryRow(d) {
    const r = d.record;
    const ref = { partition: r.partition, offset: r.offset, lease: d.lease };
    const state = h("td", { class: "state" }, "leased");
    const settle = (method, extra, label) => guard(async () => {
      await api.call("ConsumerService", method, { consumer, delivery: ref, ...extra });
      state.textContent = label;
      for (const b of $$("button", row)) b.remove();
      await refresh();
    });
    const row = h("tr", { "data-offset": `${r.partition}:${r.offset}` },
      h("td", { class: "n" }, `${r.partition}:${r.offset}`),
      h("td", { class: "n" }, d.deliveries),
      h("td", {}, r.key ? showBytes(r.key) : ""),
      h("td", { class: "body" }, showBytes(r.body)),
      state,
      h("td", { class: "actions" },
        h("button", { class: "ack", onclick: settle("Ack", {}, "acked") }, "Ack"),
        h("button", { class: "nack", onclick: settle("Nack", { reason: "nacked in the console" }, "nacked: retried after backoff") }, "Nack"),
        h("button", { class: "term danger", onclick: settle("Term", { reason: "dead-lettered in the console" }, "dead-lettered") }, "Dead-letter")));
    return row;
  }

  const el = h("section", {},
    h("p", { class: "crumbs" }, link("#/", "Streams"), " / ", link(streamHref(stream), stream), " / ", sub),
    h("h1", {}, sub, " ", h("span", { class: "muted small" }, "subscription of ", stream)),
    info,
    h("p", {}, link(subHref(stream, sub) + "/dlq", "Dead letters →", { id: "dlq-link" })),
    h("h2", {}, "Consume by hand"),
    fetchForm,
    h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ["position", "deliveries", "key", "body", "state", ""].map((t) => h("th", {}, t)))), deliveries),
    h("h2", {}, "Parked keys"),
    h("p", { class: "muted" }, "In key_ordered mode a key whose oldest message failed waits for its retry; the other keys go on."),
    h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ["partition", "key", "offset", "deliveries", "retry at", "held behind", "last error"].map((t) => h("th", {}, t)))), parked));

  async function refresh() {
    const [g, pk] = await Promise.all([
      api.call("SubscriptionService", "GetSubscription", { stream, name: sub }),
      api.call("SubscriptionService", "ListParkedKeys", { stream, subscription: sub, limit: 100 }),
    ]);
    const x = g.subscription;
    const now = Date.now();
    const c = x.config;
    info.replaceChildren(
      card("mode", modeName(c.mode)),
      card("backlog", fmtInt(x.backlog), "sub-backlog"),
      card("oldest unsettled", x.oldestUnsettled ? fmtAge(now - Date.parse(x.oldestUnsettled)) : "–"),
      card("in flight", fmtInt(x.inFlight), "sub-inflight"),
      card("waiting / delayed", `${fmtInt(x.waiting)} / ${fmtInt(x.delayed)}`),
      card("parked / held", `${fmtInt(x.parked)} / ${fmtInt(x.held)}`),
      card("redeliveries", fmtInt(x.redeliveries)),
      card("dead-lettered", fmtInt(x.deadLettered), "sub-dead"),
      card("lease / max deliveries", `${c.lease} / ${c.maxDeliveries}`),
      card("backoff", `${c.backoffInitial} … ${c.backoffMax}`));
    if ((x.members || []).length) info.append(card("members", x.members.map((m) => `${m.name}: [${(m.partitions || []).join(",")}]`).join("; ")));
    parked.replaceChildren(...(pk.keys || pk.parkedKeys || []).map((k) => h("tr", {},
      h("td", { class: "n" }, k.partition), h("td", {}, showBytes(k.key)), h("td", { class: "n" }, k.offset), h("td", { class: "n" }, k.deliveries),
      h("td", {}, k.notBefore ? new Date(k.notBefore).toLocaleTimeString() : ""), h("td", { class: "n" }, k.held), h("td", {}, k.lastError))));
  }
  return { el, refresh, every: 2000 };
}

// ---------------------------------------------------------------------------
// Dead letters

function dlqPage(stream, sub) {
  const list = h("tbody", { id: "dlq-body" });
  const detail = h("div", { id: "dlq-detail", class: "detail" });
  const filter = h("form", { id: "dlq-filter", class: "inline" },
    h("input", { name: "contains", placeholder: "reason or error contains…", "aria-label": "filter" }),
    h("label", { class: "check" }, h("input", { name: "redriven", type: "checkbox" }), " include redriven"),
    h("button", { type: "submit" }, "Filter"));
  filter.addEventListener("submit", guard(() => refresh()));

  const rate = h("input", { name: "rate", type: "number", min: 0, step: "any", value: 100, "aria-label": "redrive rate per second" });
  const redriveFiltered = h("button", { id: "redrive-filtered" }, "Redrive filtered");
  const redriveAll = h("button", { id: "redrive-all" }, "Redrive all");
  const purge = h("button", { id: "purge", class: "danger" }, "Purge");
  const result = h("span", { id: "dlq-result", class: "muted" });
  const redrive = async (query) => {
    const per = Number(rate.value);
    const res = await api.call("SubscriptionService", "RedriveDeadLetters", { stream, subscription: sub, query, perSecond: per > 0 ? per : 0 });
    result.textContent = `${res.redriven} redriven`;
    await refresh();
  };
  redriveFiltered.addEventListener("click", guard(() => redrive({ contains: filter.contains.value, limit: 1000 })));
  redriveAll.addEventListener("click", guard(() => redrive({ limit: 1000 })));
  purge.addEventListener("click", guard(async () => {
    if (!confirm(`Purge every dead letter of ${sub}? They cannot be redriven after this.`)) return;
    const res = await api.call("SubscriptionService", "PurgeDeadLetters", { stream, subscription: sub });
    result.textContent = `purged up to offset ${res.start}`;
    detail.replaceChildren();
    await refresh();
  }));

  const el = h("section", {},
    h("p", { class: "crumbs" }, link("#/", "Streams"), " / ", link(streamHref(stream), stream), " / ", link(subHref(stream, sub), sub), " / dead letters"),
    h("h1", {}, "Dead letters of ", sub),
    h("p", { class: "muted" }, "Messages this subscription gave up on, with the reason and every attempt. Redriving puts them back into this subscription only, at the rate you set."),
    filter,
    h("div", { class: "inline" }, h("label", {}, "rate ", rate, " msg/s (0: no bound) "), redriveFiltered, " ", redriveAll, " ", purge, " ", result),
    h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ["dlq offset", "source", "deliveries", "reason", "state", ""].map((t) => h("th", {}, t)))), list),
    detail);

  async function refresh() {
    const res = await api.call("SubscriptionService", "ListDeadLetters", {
      stream, subscription: sub, query: { contains: filter.contains.value, includeRedriven: filter.redriven.checked, limit: 200 },
    });
    const dls = res.deadLetters || [];
    list.replaceChildren(...dls.map((d) => {
      const one = h("button", { class: "redrive-one" }, "Redrive");
      one.addEventListener("click", guard(() => redrive({ from: d.offset, limit: 1 })));
      const open = h("button", { class: "open" }, "Open");
      open.addEventListener("click", guard(() => showDeadLetter(d.offset)));
      return h("tr", { "data-dlq-offset": d.offset },
        h("td", { class: "n" }, d.offset),
        h("td", { class: "n" }, `${d.source.partition}:${d.source.offset}`),
        h("td", { class: "n" }, d.deliveries),
        h("td", {}, d.reason),
        h("td", {}, d.redriven ? "redriven" : "dead"),
        h("td", { class: "actions" }, open, d.redriven ? null : one));
    }));
    if (!dls.length) list.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No dead letters" + (filter.contains.value ? " match the filter." : "."))));
  }

  async function showDeadLetter(offset) {
    const res = await api.call("SubscriptionService", "GetDeadLetter", { stream, subscription: sub, offset: String(offset) });
    const d = res.deadLetter;
    const m = d.message;
    detail.replaceChildren(
      h("h2", {}, `Dead letter ${d.offset}`),
      h("dl", {},
        h("dt", {}, "source"), h("dd", {}, `${stream} partition ${d.source.partition}, offset ${d.source.offset}`),
        h("dt", {}, "reason"), h("dd", {}, d.reason),
        h("dt", {}, "deliveries"), h("dd", {}, d.deliveries),
        h("dt", {}, "key"), h("dd", {}, m.key ? showBytes(m.key) : "–"),
        h("dt", {}, "headers"), h("dd", {}, (m.headers || []).map((x) => `${x.key}=${showBytes(x.value)}`).join(", ") || "–"),
        h("dt", {}, "body"), h("dd", {}, h("pre", {}, showBytes(m.body)))),
      h("h3", {}, "Attempts"),
      h("table", { class: "grid" },
        h("thead", {}, h("tr", {}, ["#", "at", "consumer", "error"].map((t) => h("th", {}, t)))),
        h("tbody", {}, (d.attempts || []).map((a, i) => h("tr", {},
          h("td", { class: "n" }, i + 1), h("td", {}, new Date(a.at).toLocaleString()), h("td", {}, a.consumer), h("td", {}, a.error))))));
  }
  return { el, refresh, every: 5000 };
}

// ---------------------------------------------------------------------------
// Drills: the whiteboard timer, the checklist, the live run. Progress is kept
// in local storage under PROGRESS_KEY.

const PROGRESS_KEY = "sluice.drills.v1";
let drillsCache = null;

function loadProgress() {
  try { return JSON.parse(localStorage.getItem(PROGRESS_KEY) || "{}") || {}; } catch (e) { return {}; }
}
function saveProgress(n, change) {
  const all = loadProgress();
  all[n] = { ...(all[n] || {}), ...change, updated: new Date().toISOString() };
  localStorage.setItem(PROGRESS_KEY, JSON.stringify(all));
  return all[n];
}

async function drills() {
  if (!drillsCache) drillsCache = await api.call("DrillService", "ListDrills", {});
  return drillsCache;
}

function drillsPage() {
  const list = h("ol", { class: "drills", id: "drill-list" });
  const el = h("section", {},
    h("h1", {}, "Design drills"),
    h("p", {}, "Four questions about queues. For each: sketch your answer against a timer, tick what it covered, then watch it happen on this broker with real figures."),
    list);
  async function refresh() {
    const d = await drills();
    const prog = loadProgress();
    list.replaceChildren(...d.drills.map((x) => {
      const p = prog[x.number] || {};
      const ticks = (p.ticks || []).length;
      return h("li", { "data-drill": x.number },
        link("#/drills/" + x.number, x.title),
        " ",
        h("span", { class: "muted" }, p.done ? `done ${new Date(p.doneAt).toLocaleDateString()}, ${ticks}/${x.checklist.length} covered` : (p.revealed ? `${ticks}/${x.checklist.length} covered` : "not started")));
    }));
  }
  return { el, refresh };
}

function drillPage(n) {
  const el = h("section", { id: "drill" }, h("p", { class: "muted" }, "Loading…"));
  let countdown = null;
  async function refresh() {
    const all = await drills();
    const d = all.drills.find((x) => x.number === n);
    if (!d) throw new ApiError("not_found", `drill ${n}: there are drills 1 to ${all.drills.length}`);
    const minMin = Math.round(parseFloat(all.minTimer) / 60), maxMin = Math.round(parseFloat(all.maxTimer) / 60);
    render(d, minMin, maxMin);
  }

  function render(d, minMin, maxMin) {
    const p = loadProgress()[n] || {};
    const timerBox = h("div", { class: "timer", id: "timer" });
    const reveal = h("div", { id: "reveal" });
    el.replaceChildren(
      h("p", { class: "crumbs" }, link("#/drills", "Drills"), ` / ${n}`),
      h("h1", {}, `${n}. ${d.title}`),
      h("blockquote", { class: "question" }, d.question),
      timerBox, reveal);

    const showReveal = () => {
      clearInterval(countdown);
      timerBox.replaceChildren(h("p", { class: "muted" }, "Timer done. Compare your sketch with the checklist: tick what you covered."));
      renderReveal(d, reveal);
    };
    if (p.revealed) { showReveal(); return; }
    const minutes = h("select", { id: "timer-minutes", "aria-label": "minutes" });
    for (let m = minMin; m <= maxMin; m++) minutes.append(h("option", { value: m, selected: m === (p.timerMinutes || minMin) }, `${m} min`));
    const start = h("button", { id: "timer-start" }, "Start the timer");
    timerBox.replaceChildren(h("p", {}, "Sketch your answer on a whiteboard or paper first. Nothing below is shown until the timer ends."),
      h("div", { class: "inline" }, minutes, " ", start));
    start.addEventListener("click", () => {
      const total = Number(minutes.value) * 60;
      const began = Date.now();
      saveProgress(n, { timerMinutes: Number(minutes.value), timerStarted: new Date().toISOString() });
      const clock = h("span", { class: "clock", id: "clock" });
      const early = h("button", { id: "timer-stop" }, "I'm done: reveal now");
      early.addEventListener("click", () => { saveProgress(n, { revealed: true }); showReveal(); });
      timerBox.replaceChildren(clock, " ", early);
      const tick = () => {
        const left = Math.max(0, total - Math.floor((Date.now() - began) / 1000));
        clock.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
        if (left === 0) { saveProgress(n, { revealed: true }); showReveal(); }
      };
      tick();
      countdown = setInterval(tick, 1000);
    });
  }

  function renderReveal(d, box) {
    const p = loadProgress()[n] || {};
    const ticks = new Set(p.ticks || []);
    const study = h("ul", { id: "study-list" });
    const updateStudy = () => {
      const left = d.checklist.filter((_, i) => !ticks.has(i));
      study.replaceChildren(...(left.length ? left.map((t) => h("li", {}, t)) : [h("li", { class: "muted" }, "Nothing: your sketch covered every point.")]));
    };
    const items = d.checklist.map((text, i) => {
      const cb = h("input", { type: "checkbox", "data-item": i, checked: ticks.has(i) });
      cb.addEventListener("change", () => {
        if (cb.checked) ticks.add(i); else ticks.delete(i);
        saveProgress(n, { ticks: [...ticks].sort((a, b) => a - b) });
        updateStudy();
      });
      return h("li", {}, h("label", {}, cb, " ", text));
    });
    updateStudy();
    const log = h("div", { id: "live-log", class: "live" });
    const run = h("button", { id: "run-live" }, "Run it live");
    run.addEventListener("click", guard(async () => {
      log.replaceChildren(h("p", { class: "muted" }, "Running on scratch streams of this server…"));
      const got = [];
      await api.stream("DrillService", "RunDrill", { number: n }, (e) => {
        if (!got.length) log.replaceChildren();
        got.push(e);
        log.append(eventEl(e));
      }, pageAbort.signal);
      if (got.some((e) => e.kind === "done")) {
        saveProgress(n, { done: true, doneAt: new Date().toISOString() });
        log.append(h("p", { class: "ok", id: "live-done" }, "Done. Progress saved in this browser."));
      }
    }));
    box.replaceChildren(
      h("h2", {}, "What a strong answer covers"),
      h("ol", { class: "checklist", id: "checklist" }, items),
      h("h3", {}, "Your study list"), study,
      h("h2", {}, "Run it live"),
      h("p", {}, d.live),
      run, log);
  }

  function eventEl(e) {
    const at = e.at ? `${parseFloat(e.at).toFixed(1)} s` : "";
    const figs = (e.figures || []).length ? h("table", { class: "figures" }, h("tbody", {}, e.figures.map((f) => h("tr", {},
      h("td", {}, f.name), h("td", { class: "n" }, fmtFigure(f.value)), h("td", {}, f.unit))))) : null;
    return h("div", { class: "event " + e.kind }, h("span", { class: "at" }, at), h("div", {}, h("p", {}, e.text), figs));
  }
  return { el, refresh };
}

function fmtFigure(v) {
  if (v === undefined || v === null) return "0";
  const x = Number(v);
  if (Number.isInteger(x)) return x.toLocaleString("en-US");
  return Math.abs(x) < 10 ? x.toFixed(2) : x.toFixed(1);
}

// ---------------------------------------------------------------------------
// Start

$("#token").value = api.token;
$("#token-remember").checked = !!localStorage.getItem("sluice.token");
$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  api.token = $("#token").value.trim();
  sessionStorage.removeItem("sluice.token");
  localStorage.removeItem("sluice.token");
  if (api.token) ($("#token-remember").checked ? localStorage : sessionStorage).setItem("sluice.token", api.token);
  drillsCache = null;
  route();
});
window.addEventListener("hashchange", route);
route();
