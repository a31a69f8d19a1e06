// demls-node web UI. Plain JavaScript, no build step. Every call goes to this page's own
// origin with the token in the Authorization header; the token never goes into a URL
// (the link `demls-node ui` prints carries it in the fragment, which the browser does
// not send, and the page removes it from the address bar at once). Text from the
// network is only ever put into the page with textContent.
"use strict";

const TOKEN_KEY = "demls-api-token";
const $ = (id) => document.getElementById(id);

const st = {
  token: null,
  me: null,
  current: null,          // selected conversation name
  convs: [],              // ConversationSummary[]
  view: null,             // ConversationView of the current conversation
  proposals: [],          // ProposalView[] of the current conversation
  lastSeq: 0,             // last message seq shown
  lastEventId: null,      // for resuming the event stream
  streamAbort: null,
  removeTarget: null,
};

// ---- API --------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { "Authorization": "Bearer " + st.token };
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body === undefined ? {} : body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "the node does not answer (" + e.message + ")");
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!resp.ok) {
    if (resp.status === 401) { showLogin("The node refused the token: " + ((data && data.error) || "401")); }
    throw new ApiError(resp.status, (data && data.error) || (resp.status + " " + resp.statusText));
  }
  return data;
}

const enc = encodeURIComponent;
const convPath = (name, rest) => "/conversations/" + enc(name) + (rest || "");

// ---- small helpers ----------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function short(addr) {
  return addr && addr.length > 14 ? addr.slice(0, 8) + "…" + addr.slice(-6) : (addr || "");
}

function fmtTime(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const today = new Date();
  const t = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return d.toDateString() === today.toDateString() ? t : d.toLocaleDateString() + " " + t;
}

function setError(id, msg) { $(id).textContent = msg || ""; }

// Runs `fn` for a user action: the error is shown next to where the user acted.
async function act(errorId, fn) {
  setError(errorId, "");
  try { return await fn(); } catch (e) { setError(errorId, e.message); return undefined; }
}

function logEvent(kind, conversation, detail) {
  const li = el("li", {},
    el("span", { class: "muted" }, new Date().toLocaleTimeString() + " "),
    el("span", { class: "kind" }, kind), " ",
    conversation ? el("b", {}, conversation + " ") : null,
    detail || "");
  const log = $("event-log");
  log.prepend(li);
  while (log.children.length > 200) log.lastChild.remove();
}

// ---- login ------------------------------------------------------------------------

function showLogin(message) {
  stopStream();
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  setError("login-error", message || "");
}

function takeTokenFromFragment() {
  const m = /^#token=([^&]+)/.exec(location.hash);
  if (!m) return null;
  // Out of the address bar and history at once.
  history.replaceState(null, "", location.pathname);
  try { return decodeURIComponent(m[1]); } catch (_) { return null; }
}

async function connect(token) {
  st.token = token;
  try {
    const status = await api("GET", "/status");
    localStorage.setItem(TOKEN_KEY, token);
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    st.me = status.address;
    $("me").textContent = status.address;
    $("peers").textContent = status.peers;
    await refreshConversations();
    refreshHealth();
    startStream();
  } catch (e) {
    if (e.status !== 401) showLogin(e.message);
    localStorage.removeItem(TOKEN_KEY);
  }
}

// ---- header -----------------------------------------------------------------------

async function refreshStatus() {
  try {
    const s = await api("GET", "/status");
    $("peers").textContent = s.peers;
  } catch (_) { /* shown by health */ }
}

async function refreshHealth() {
  // /health answers 503 when not ready, with the reasons in the body.
  let h;
  try {
    const resp = await fetch("/health", { cache: "no-store", credentials: "omit" });
    h = await resp.json();
  } catch (e) {
    h = { status: "down", error: "the node does not answer" };
  }
  const b = $("health");
  b.textContent = h.status === "ok" ? "ready" : h.status.replace("_", " ");
  b.className = "badge " + (h.status === "ok" ? "ok" : h.status === "down" ? "bad" : "warn");
  b.title = (h.reasons && h.reasons.length ? h.reasons.join("\n") : h.error) || "ready";
  if (typeof h.peers === "number") $("peers").textContent = h.peers;
}

// ---- conversations ----------------------------------------------------------------

async function refreshConversations() {
  st.convs = await api("GET", "/conversations");
  const ul = $("conversations");
  ul.replaceChildren();
  for (const c of st.convs) {
    ul.append(el("li", {
      "data-name": c.name,
      class: c.name === st.current ? "on" : "",
      onclick: () => select(c.name),
    }, el("span", { class: "name" }, c.name),
    el("span", { class: "meta" }, c.state.replace("_", " ") + " · epoch " + c.epoch + " · " + c.members)));
  }
  if (!st.current && st.convs.length) await select(st.convs[0].name);
  if (st.current && !st.convs.some((c) => c.name === st.current)) {
    st.current = null;
    renderConversation();
  }
}

async function select(name) {
  if (st.current !== name) {
    st.current = name;
    st.lastSeq = 0;
    st.view = null;
    st.proposals = [];
    $("messages").replaceChildren();
    $("active-votes").replaceChildren();
    $("proposal-history").replaceChildren();
    setError("send-error", ""); setError("leave-error", "");
  }
  for (const li of $("conversations").children) li.classList.toggle("on", li.dataset.name === name);
  showTab("chat");
  await Promise.all([refreshConversation(), refreshMessages(), refreshProposals()]);
}

async function refreshConversation() {
  const name = st.current;
  if (!name) return renderConversation();
  try {
    st.view = await api("GET", convPath(name));
  } catch (e) {
    if (e.status === 404) { st.view = null; await refreshConversations(); return; }
    throw e;
  }
  if (name === st.current) renderConversation();
}

const COMPOSER_BLOCKED = {
  pending_join: "Waiting to be admitted: a steward adds us after the members vote.",
  freezing: "The group is collecting commit candidates for the next epoch; chat resumes when it is applied.",
  selection: "The group is applying the selected commit; chat resumes in a moment.",
};

function renderConversation() {
  const v = st.view;
  $("conv-title").textContent = v ? v.name : "No conversation selected";
  $("conv-state").textContent = v ? v.state.replace("_", " ") : "";
  $("conv-state").className = "badge " + (v ? (v.state === "working" ? "ok" : "warn") : "");
  $("conv-epoch").textContent = v ? "epoch " + v.epoch : "";
  $("leave-btn").hidden = !v;
  const f = v && v.freeze;
  $("freeze").hidden = !f;
  if (f) {
    const left = Math.max(0, Math.round((f.deadline - Date.now()) / 1000));
    $("freeze").textContent = "Freeze: " + f.candidates + " of " + f.expected +
      " commit candidates seen" + (left ? " · selection in at most " + left + " s" : "");
  }
  const reason = !v ? "Select or create a conversation." : COMPOSER_BLOCKED[v.state];
  $("msg-input").disabled = !!reason;
  $("send-btn").disabled = !!reason;
  $("composer-reason").textContent = reason || "";
  renderMembers();
}

function renderMembers() {
  const ul = $("member-list");
  ul.replaceChildren();
  const v = st.view;
  if (!v) return;
  for (const m of v.members) {
    const mine = m.address === st.me;
    ul.append(el("li", { class: "member", "data-address": m.address },
      el("code", { title: m.address }, m.address),
      el("span", { class: "badge role" }, m.role.replace("_", " ")),
      el("span", { class: "score" }, "score " + m.score),
      m.pending_leave ? el("span", { class: "badge warn badge-leaving" }, "leaving") : null,
      mine ? el("span", { class: "muted" }, "(you)") : null,
      !mine && v.state !== "pending_join" ? el("button", {
        type: "button", class: "remove-btn danger",
        onclick: () => openRemove(m.address),
      }, "Remove…") : null));
  }
}

// ---- chat -------------------------------------------------------------------------

async function refreshMessages() {
  const name = st.current;
  if (!name) return;
  for (;;) {
    let page;
    try {
      page = await api("GET", convPath(name, "/messages?after=" + st.lastSeq + "&limit=200"));
    } catch (e) {
      if (e.status === 404) return;
      throw e;
    }
    if (name !== st.current) return;
    for (const m of page) addMessage(m);
    if (page.length < 200) break;
  }
}

function deliveryText(d) {
  if (!d) return "";
  const s = { sent: "sent", delivered_to_some: "delivered to some", delivered: "delivered", unconfirmed: "unconfirmed" }[d.state] || d.state;
  return s + " " + d.acked + "/" + d.of;
}

function addMessage(m) {
  const ol = $("messages");
  const existing = ol.querySelector('[data-seq="' + m.seq + '"]');
  const mine = m.sender === st.me;
  const li = el("li", { class: "msg" + (mine ? " mine" : ""), "data-seq": String(m.seq) },
    el("div", { class: "head" },
      el("span", { class: "sender", title: m.sender }, mine ? "you" : short(m.sender)),
      el("span", { class: "time" }, fmtTime(m.timestamp)),
      m.delivery ? el("span", { class: "delivery" }, deliveryText(m.delivery)) : null),
    el("div", { class: "text" }, m.text));
  if (existing) existing.replaceWith(li); else ol.append(li);
  st.lastSeq = Math.max(st.lastSeq, m.seq || 0);
  ol.scrollTop = ol.scrollHeight;
}

async function send(ev) {
  ev.preventDefault();
  const name = st.current;
  const text = $("msg-input").value;
  if (!name || !text.trim()) return;
  await act("send-error", async () => {
    await api("POST", convPath(name, "/messages"), { text });
    $("msg-input").value = "";
    await refreshMessages();
  });
}

// ---- proposals --------------------------------------------------------------------

async function refreshProposals() {
  const name = st.current;
  if (!name) return;
  try {
    st.proposals = await api("GET", convPath(name, "/proposals"));
  } catch (e) {
    if (e.status === 404 || e.status === 409) { st.proposals = []; } else throw e;
  }
  if (name === st.current) renderProposals();
}

const KIND = { add_member: "Add member", remove_member: "Remove member", steward_election: "Steward election", emergency: "Emergency" };

function renderProposals() {
  const open = st.proposals.filter((p) => p.status === "voting");
  const decided = st.proposals.filter((p) => p.status !== "voting")
    .sort((a, b) => (b.decided_at || 0) - (a.decided_at || 0) || b.id - a.id);
  const box = $("active-votes");
  // Keep cards (and their error lines) that are still open; drop the others.
  for (const card of [...box.querySelectorAll(".vote-card")]) {
    if (!open.some((p) => String(p.id) === card.dataset.id)) card.remove();
  }
  box.querySelector(".empty")?.remove();
  if (!open.length) box.append(el("p", { class: "muted empty" }, "No open proposal."));
  for (const p of open) {
    let card = box.querySelector('.vote-card[data-id="' + p.id + '"]');
    if (!card) {
      card = el("div", { class: "vote-card", "data-id": String(p.id) },
        el("div", { class: "title" }),
        el("div", { class: "sub" }),
        el("div", { class: "tally" }),
        el("div", { class: "bar" }, el("div", { class: "y" }), el("div", { class: "n" })),
        el("div", { class: "buttons" },
          el("button", { type: "button", class: "vote-yes", onclick: () => vote(p.id, "yes") }, "YES"),
          el("button", { type: "button", class: "vote-no", onclick: () => vote(p.id, "no") }, "NO"),
          el("span", { class: "countdown" })),
        el("p", { class: "error card-error", role: "alert" }));
      box.append(card);
    }
    card.querySelector(".title").textContent = (KIND[p.kind] || p.kind) + " #" + p.id + ": " + p.summary;
    card.querySelector(".sub").textContent = "proposed by " + (p.owner === st.me ? "you" : p.owner);
    card.querySelector(".tally").textContent = "YES " + p.yes + " · NO " + p.no + " · of " + p.expected +
      (p.our_vote ? " · you voted " + p.our_vote.toUpperCase() : "");
    const total = Math.max(1, p.expected);
    card.querySelector(".bar .y").style.width = (100 * p.yes / total) + "%";
    card.querySelector(".bar .n").style.width = (100 * p.no / total) + "%";
    card.dataset.autoAt = p.auto_vote_at || "";
    card.dataset.autoVote = p.auto_vote || "";
    for (const b of card.querySelectorAll("button")) b.disabled = !!p.our_vote;
  }
  tickCountdowns();
  const hist = $("proposal-history");
  hist.replaceChildren();
  for (const p of decided) {
    hist.append(el("li", { class: "decided", "data-id": String(p.id), "data-status": p.status },
      el("span", { class: "status-" + p.status }, p.status), " ",
      (KIND[p.kind] || p.kind) + " #" + p.id + ": " + p.summary,
      el("span", { class: "muted" }, " · YES " + p.yes + " NO " + p.no + " of " + p.expected +
        (p.our_vote ? " · you " + p.our_vote.toUpperCase() : "") +
        (p.decided_at ? " · " + fmtTime(p.decided_at) : ""))));
  }
  const count = $("vote-count");
  const mine = open.filter((p) => !p.our_vote).length;
  count.hidden = !mine;
  count.textContent = mine;
}

function tickCountdowns() {
  for (const card of document.querySelectorAll(".vote-card")) {
    const at = Number(card.dataset.autoAt || 0);
    const c = card.querySelector(".countdown");
    if (!at) { c.textContent = ""; continue; }
    const left = Math.max(0, Math.ceil((at - Date.now()) / 1000));
    c.textContent = left > 0
      ? "automatic " + (card.dataset.autoVote || "yes").toUpperCase() + " in " + left + " s"
      : "voting automatically…";
  }
  if (st.view && st.view.freeze) renderConversationFreeze();
}

function renderConversationFreeze() {
  const f = st.view.freeze;
  const left = Math.max(0, Math.round((f.deadline - Date.now()) / 1000));
  $("freeze").textContent = "Freeze: " + f.candidates + " of " + f.expected +
    " commit candidates seen" + (left ? " · selection in at most " + left + " s" : "");
}

async function vote(id, value) {
  const name = st.current;
  const card = document.querySelector('.vote-card[data-id="' + id + '"]');
  const errorLine = card && card.querySelector(".card-error");
  if (errorLine) errorLine.textContent = "";
  try {
    await api("POST", convPath(name, "/proposals/" + id + "/vote"), { vote: value });
  } catch (e) {
    if (errorLine) errorLine.textContent = e.message;
  }
  await refreshProposals();
}

// ---- members: remove dialog -------------------------------------------------------

function openRemove(address) {
  st.removeTarget = address;
  $("remove-target").textContent = address;
  $("remove-conv").textContent = st.current;
  setError("remove-error", "");
  $("remove-dialog").showModal();
}

async function confirmRemove() {
  const name = st.current;
  const address = st.removeTarget;
  const ok = await act("remove-error", async () => {
    await api("POST", convPath(name, "/remove"), { address });
    return true;
  });
  if (ok) {
    $("remove-dialog").close();
    showTab("votes");
    await refreshProposals();
  }
}

// ---- live events ------------------------------------------------------------------

function stopStream() {
  if (st.streamAbort) st.streamAbort.abort();
  st.streamAbort = null;
}

function setStream(on) {
  $("stream").textContent = on ? "live" : "offline";
  $("stream").className = "badge " + (on ? "ok" : "off");
}

async function startStream() {
  stopStream();
  const ctrl = new AbortController();
  st.streamAbort = ctrl;
  for (;;) {
    if (ctrl.signal.aborted) return;
    try {
      const headers = { "Authorization": "Bearer " + st.token, "Accept": "text/event-stream" };
      if (st.lastEventId) headers["Last-Event-ID"] = st.lastEventId;
      const resp = await fetch("/events", { headers, signal: ctrl.signal, cache: "no-store", credentials: "omit" });
      if (resp.status === 401) { showLogin("The node refused the token."); return; }
      if (!resp.ok || !resp.body) throw new Error("HTTP " + resp.status);
      setStream(true);
      // Catch up on what may have changed while we were away.
      scheduleRefresh({ list: true, conv: true, messages: true, proposals: true });
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          onSseBlock(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } catch (e) {
      if (ctrl.signal.aborted) return;
    }
    setStream(false);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function onSseBlock(block) {
  let kind = "message", id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const c = line.indexOf(":");
    const field = c < 0 ? line : line.slice(0, c);
    const value = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
    if (field === "event") kind = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (id) st.lastEventId = id;
  if (!data.length) return;
  let ev;
  try { ev = JSON.parse(data.join("\n")); } catch (_) { return; }
  onEvent(kind, ev);
}

function describe(kind, e) {
  switch (kind) {
    case "chat": return short(e.sender) + ": " + e.text;
    case "state": return e.state;
    case "proposal": return "#" + e.id + " " + e.kind + " " + e.summary;
    case "vote_requested": return "#" + e.id + " automatic vote at " + fmtTime(e.auto_vote_at);
    case "decided": return "#" + e.id + (e.accepted ? " accepted" : " rejected");
    case "commit": return "epoch " + e.epoch + " by " + short(e.committer) +
      (e.added.length ? " +" + e.added.map(short).join(",") : "") +
      (e.removed.length ? " −" + e.removed.map(short).join(",") : "");
    case "lagged": return "missed " + e.missed + " events";
    default: return JSON.stringify(e);
  }
}

function onEvent(kind, ev) {
  if (kind === "lagged") {
    logEvent("lagged", "", describe(kind, ev));
    scheduleRefresh({ list: true, conv: true, messages: true, proposals: true });
    return;
  }
  const name = ev.conversation;
  const e = (ev.data && ev.data.event) || {};
  if (!["chat_delivery", "chat_sent", "rejected"].includes(kind)) logEvent(kind, name, describe(kind, e));
  const here = name === st.current;
  switch (kind) {
    case "chat": case "chat_sent": case "chat_delivery":
      if (here) scheduleRefresh({ messages: true, redeliver: kind === "chat_delivery" });
      break;
    case "proposal": case "vote_requested": case "decided":
      if (here) scheduleRefresh({ proposals: true, conv: true });
      break;
    case "state": case "joined": case "commit": case "left": case "rejoining": case "error":
      scheduleRefresh({ list: true, conv: here, proposals: here, messages: here });
      break;
    default: break;
  }
}

let pending = null;
function scheduleRefresh(what) {
  if (pending) { for (const k of Object.keys(what)) pending[k] = pending[k] || what[k]; return; }
  pending = { ...what };
  setTimeout(async () => {
    const w = pending;
    pending = null;
    try {
      if (w.list) await refreshConversations();
      const jobs = [];
      if (w.conv) jobs.push(refreshConversation());
      if (w.redeliver) { st.lastSeq = 0; }
      if (w.messages || w.redeliver) jobs.push(refreshMessages());
      if (w.proposals) jobs.push(refreshProposals());
      await Promise.all(jobs);
    } catch (_) { /* the next event or poll retries */ }
  }, 120);
}

// ---- tabs (narrow screens) --------------------------------------------------------

function showTab(tab) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("on", b.dataset.tab === tab);
  for (const p of document.querySelectorAll(".pane")) p.classList.toggle("on", p.id === tab);
}

// ---- start ------------------------------------------------------------------------

function wire() {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    connect($("token-input").value.trim());
    $("token-input").value = "";
  });
  $("logout").addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    st.token = null;
    showLogin("");
  });
  $("create-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = $("create-name").value.trim();
    await act("conv-error", async () => {
      await api("POST", "/conversations", { name });
      $("create-name").value = "";
      await refreshConversations();
      await select(name);
    });
  });
  $("join-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = $("join-name").value.trim();
    await act("conv-error", async () => {
      await api("POST", convPath(name, "/join"));
      $("join-name").value = "";
      await refreshConversations();
      await select(name);
    });
  });
  $("leave-btn").addEventListener("click", async () => {
    const name = st.current;
    if (!name || !confirm("Leave " + name + "? The group removes us with its next commit.")) return;
    await act("leave-error", async () => {
      await api("POST", convPath(name, "/leave"));
      await refreshConversation();
    });
  });
  $("composer").addEventListener("submit", send);
  $("msg-input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("composer").requestSubmit(); }
  });
  $("remove-cancel").addEventListener("click", () => $("remove-dialog").close());
  $("remove-confirm").addEventListener("click", confirmRemove);
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));

  setInterval(tickCountdowns, 250);
  // Votes of other members arrive without an event: poll open proposals' tallies.
  setInterval(() => {
    if (st.token && st.current && (st.proposals.some((p) => p.status === "voting") || (st.view && st.view.state !== "working"))) {
      refreshProposals().catch(() => {});
      refreshConversation().catch(() => {});
    }
  }, 1000);
  setInterval(() => { if (st.token && !$("app").hidden) { refreshStatus(); refreshHealth(); } }, 5000);
}

wire();
const fromLink = takeTokenFromFragment();
const saved = fromLink || localStorage.getItem(TOKEN_KEY);
if (saved) connect(saved); else showLogin("");
