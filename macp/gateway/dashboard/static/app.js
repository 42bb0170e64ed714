/* The dashboard: reads the gateway's REST API (/api/v1) and follows its WebSocket (/ws), with
   the page's own principal (the session cookie, or none on a gateway with no authentication).
   Every request that changes state carries X-MACP-CSRF. */
(function () {
  "use strict";
  const API = "/api/v1";
  const CAN_CONTROL = document.body.dataset.canControl === "true";
  const TASK_ROWS = 200;
  const AGENT_ROWS = 200;
  const METRICS_EVERY_MS = 3000;
  const state = {
    agents: new Map(), shape: { nodes: [], agents: {}, edges: [] }, tasks: new Map(),
    filters: { state: "", type: "", agent: "" }, run: null, runs: new Map(),
    alerts: { active: [], recent: [] }, redraw: null, ws: null, backoff: 500,
  };
  window.macpDashboard = state;  // for the browser tests and the curious

  // -- helpers ---------------------------------------------------------------------------------

  const h = MacpDom.h;

  async function api(path, options) {
    const response = await fetch(API + path, Object.assign({
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-MACP-CSRF": "1" },
    }, options || {}));
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.error ? body.error.message : response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function op(name, args) {
    return api("/operations/" + name, { method: "POST", body: JSON.stringify(args || {}) });
  }

  function notice(text, bad) {
    const n = document.getElementById("notice");
    n.textContent = text;
    n.className = bad ? "bad" : "";
    n.hidden = !text;
  }

  function when(ms) {
    return ms ? new Date(ms).toLocaleTimeString() : "";
  }

  function failed(what) {
    return (e) => notice(what + ": " + e.message, true);
  }

  // -- views (one page, a section each; the header's buttons scroll to them) -------------------

  const loaders = {};
  function show(view) {
    for (const b of document.querySelectorAll("#views button")) {
      b.classList.toggle("active", b.dataset.view === view);
    }
    document.getElementById("view-" + view).scrollIntoView({ block: "start" });
    if (loaders[view]) loaders[view]();  // and read it again
  }
  for (const b of document.querySelectorAll("#views button")) {
    b.addEventListener("click", () => show(b.dataset.view));
  }

  /* fn, called once on the next frame however often it is asked for before then. */
  function batched(fn) {
    let asked = false;
    return () => {
      if (asked) return;
      asked = true;
      requestAnimationFrame(() => { asked = false; fn(); });
    };
  }

  // -- topology and agents ---------------------------------------------------------------------

  function drawTopology() {
    state.redraw = null;
    const t0 = performance.now();
    MacpGraph.draw(document.getElementById("graph"), state.shape, state.agents);
    drawAgentTable();
    countAgents();
    state.drawnMs = performance.now() - t0;
  }

  function scheduleRedraw() {
    if (state.redraw === null) state.redraw = requestAnimationFrame(drawTopology);
  }

  function countAgents() {
    const counts = {};
    for (const a of state.agents.values()) counts[a.status] = (counts[a.status] || 0) + 1;
    document.getElementById("agent-counts").textContent = state.agents.size + " agents: " +
      Object.keys(counts).sort().map((k) => counts[k] + " " + k).join(", ");
  }

  function controlButtons(address) {
    return ["pause", "resume", "restart"].map((command) => h("button", {
      class: "control", "data-command": command, "data-target": address,
      disabled: !CAN_CONTROL,
      title: CAN_CONTROL ? command + " " + address : "needs the operator role",
      onclick: () => control(command, address),
    }, command));
  }

  function agentRow(a) {
    const done = a.succeeded === undefined ? "" : a.succeeded + " / " + a.failed;
    return h("tr", { "data-address": a.address },
      h("td", {}, a.address), h("td", {}, a.node),
      h("td", { class: "status st-" + a.status }, a.status), h("td", {}, a.load ?? ""),
      h("td", {}, [a.role, a.group].filter(Boolean).join(" / ")),
      h("td", {}, (a.capabilities || []).join(", ")), h("td", {}, done),
      h("td", {}, controlButtons(a.address)));
  }

  function drawAgentTable() {
    const needle = document.getElementById("agent-filter").value.trim().toLowerCase();
    const rows = [...state.agents.values()].filter((a) => !needle ||
      [a.address, a.status, a.role, a.group].some((v) => (v || "").toLowerCase().includes(needle)))
      .sort((a, b) => (a.address < b.address ? -1 : 1));
    document.querySelector("#agents tbody").replaceChildren(...rows.slice(0, AGENT_ROWS)
      .map(agentRow));
    document.getElementById("agent-shown").textContent = rows.length > AGENT_ROWS
      ? "showing " + AGENT_ROWS + " of " + rows.length + ": filter to narrow" : "";
  }
  document.getElementById("agent-filter").addEventListener("input", drawAgentTable);
  document.getElementById("graph").addEventListener("click", (event) => {
    const address = event.target.dataset && event.target.dataset.address;
    if (!address) return;
    document.getElementById("agent-filter").value = address;
    drawAgentTable();
  });

  async function control(command, address) {
    try {
      const answer = await op("agent_control", { command, target: address });
      notice(answer.ok ? command + " " + address + ": done" :
        command + " " + address + ": " + JSON.stringify(answer.answers), !answer.ok);
    } catch (e) {
      notice(command + " " + address + ": " + e.message, true);
    }
  }

  function agentChanged(record) {
    if (record.status === "gone") {
      state.agents.delete(record.address);
      scheduleRedraw();
      return;
    }
    const known = state.agents.get(record.address);
    state.agents.set(record.address, Object.assign({}, known || {}, record));
    if (!known || known.node !== record.node || !MacpGraph.status(record.address, record.status)) {
      scheduleRedraw();
      return;
    }
    refreshAgentRow(record.address);
    countAgents();
  }

  function refreshAgentRow(address) {
    const row = document.querySelector('#agents tr[data-address="' + CSS.escape(address) + '"]');
    if (row) row.replaceWith(agentRow(state.agents.get(address)));
  }

  /* A task that ended counts for the agent of its last attempt, as agent_list counts it. */
  function countEnded(data) {
    const agent = state.agents.get(data.agent);
    const ended = data.state === "succeeded" || data.state === "failed";
    if (!ended || !agent || agent[data.state] === undefined || data.previous === data.state) {
      return;
    }
    agent[data.state] += 1;
    refreshAgentRow(data.agent);
  }

  async function loadTopology() {
    const [shape, listed] = await Promise.all([op("topology_shape"), api("/agents")]);
    state.shape = shape;
    state.agents = new Map(listed.agents.map((a) => [a.address, a]));
    document.getElementById("topology-name").textContent = shape.recorded
      ? shape.name + " (" + (shape.kind || "no shape") + ")"
      : "no topology recorded: agents grouped by group or role";
    drawTopology();
  }

  // -- metrics -----------------------------------------------------------------------------------

  const MEASURES = ["throughput", "error_rate", "duration_p50_ms", "duration_p95_ms",
    "duration_p99_ms"];

  async function loadMetrics() {
    const since = Number(document.getElementById("metrics-window").value);
    const answer = await op("metrics_history", { prefix: "tasks.", since_s: since, limit: 200 });
    const now = Date.now();
    const types = {};
    for (const [name, points] of Object.entries(answer.series)) {
      const m = /^tasks\.([a-z0-9_]+)\{type=(.*)\}$/.exec(name);
      if (!m || !MEASURES.includes(m[1])) continue;
      (types[m[2]] = types[m[2]] || {})[m[1]] = points;
    }
    const host = document.getElementById("charts");
    const names = Object.keys(types).sort();
    if (!names.length) {
      host.replaceChildren(h("p", { class: "empty" }, "No task has finished yet."));
      return;
    }
    host.replaceChildren(...names.map((type) => {
      const s = types[type];
      const line = (name, key) => ({ name, points: s[key] || [] });
      const window = { from: now - since * 1000, to: now };
      return h("div", { class: "task-type", "data-type": type }, h("h3", {}, type),
        MacpCharts.chart("throughput", [line("tasks/s", "throughput")], "tasks/s", window),
        MacpCharts.chart("error rate", [line("errors", "error_rate")], "share",
          Object.assign({ max: 1 }, window)),
        MacpCharts.chart("latency", [line("p50", "duration_p50_ms"),
          line("p95", "duration_p95_ms"), line("p99", "duration_p99_ms")], "ms", window));
    }));
  }
  loaders.metrics = () => loadMetrics().catch(failed("metrics"));
  document.getElementById("metrics-window").addEventListener("change", loaders.metrics);

  // -- workflows ---------------------------------------------------------------------------------

  async function loadRuns() {
    const answer = await api("/pipelines");
    const runs = (answer.runs || []).slice().sort((a, b) => b.created_ms - a.created_ms);
    state.runs = new Map(runs.map((r) => [r.id, r]));
    document.querySelector("#runs tbody").replaceChildren(...runs.map((r) => h("tr", {
      "data-run": r.id, class: r.id === state.run ? "chosen" : "",
      onclick: () => chooseRun(r.id),
    }, h("td", {}, r.id), h("td", {}, r.workflow), h("td", { class: "state-" + r.state },
      r.state), h("td", {}, when(r.created_ms)))));
  }
  loaders.workflows = () => loadRuns().catch(failed("workflow runs"));
  const reloadRuns = batched(loaders.workflows);

  async function chooseRun(id) {
    state.run = id;
    for (const tr of document.querySelectorAll("#runs tr")) {
      tr.classList.toggle("chosen", tr.dataset.run === id);
    }
    const run = await op("workflow_status", { run_id: id }).catch(failed("run " + id));
    if (run) drawRun(run);
  }

  function drawRun(run) {
    document.getElementById("run-detail").replaceChildren(...MacpDag.draw(run));
  }

  function pipelineProgress(data) {
    if (data.run_id === state.run) {
      const step = document.querySelector('#run-detail g[data-step="' + CSS.escape(data.step ||
        "") + '"]');
      if (step && data.state) {
        step.setAttribute("class", "step state-" + data.state);
        step.querySelector(".step-state").textContent = data.state;
      }
      if (data.steps_done !== undefined) chooseRun(data.run_id);
    }
    reloadRuns();
  }

  // -- tasks -------------------------------------------------------------------------------------

  function taskRow(t) {
    const reason = t.wait ? t.wait.reason : t.wait_reason || (t.error ? t.error.message : "");
    return h("tr", { "data-task": t.id, class: t.id === state.task ? "chosen" : "",
      onclick: () => chooseTask(t.id) },
      h("td", {}, t.id), h("td", {}, t.type), h("td", { class: "state-" + t.state }, t.state),
      h("td", {}, t.agent || ""), h("td", {}, t.attempts ?? ""),
      h("td", {}, when(t.updated_ms || t.time_ms)), h("td", { class: "reason" }, reason || ""));
  }

  function matches(t) {
    const f = state.filters;
    return (!f.state || t.state === f.state) && (!f.type || t.type === f.type) &&
      (!f.agent || (t.agent || "") === f.agent || (t.agent || "").split("@")[0] === f.agent);
  }

  const newest = (a, b) => (b.updated_ms || b.created_ms || 0) - (a.updated_ms || a.created_ms || 0);

  function drawTasks() {
    if (state.tasks.size > 4 * TASK_ROWS) {  // live updates add rows: keep the newest only
      state.tasks = new Map([...state.tasks.values()].sort(newest).slice(0, 2 * TASK_ROWS)
        .map((t) => [t.id, t]));
    }
    const rows = [...state.tasks.values()].filter(matches).sort(newest).slice(0, TASK_ROWS);
    document.querySelector("#tasks tbody").replaceChildren(...rows.map(taskRow));
    document.getElementById("task-total").textContent = state.total === undefined ? ""
      : state.total + (state.total === 1 ? " task" : " tasks") + (state.total > rows.length
        ? ", the newest " + rows.length + " shown" : "");
  }

  const redrawTasks = batched(drawTasks);

  async function loadTasks() {
    const q = new URLSearchParams();
    const f = state.filters;
    if (f.state) q.append("state", f.state);
    if (f.type) q.append("type", f.type);
    if (f.agent) q.append("agent", f.agent);
    q.append("limit", String(TASK_ROWS));
    const answer = await api("/tasks?" + q);
    state.tasks = new Map(answer.tasks.map((t) => [t.id, t]));
    state.total = answer.total;
    drawTasks();
  }
  loaders.tasks = () => loadTasks().catch(failed("tasks"));

  let reloading = null;
  function reloadTasksSoon() {  // at most one reload a second, however many tasks queue
    if (reloading === null) {
      reloading = setTimeout(() => { reloading = null; loaders.tasks(); }, 1000);
    }
  }

  document.getElementById("task-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    state.filters = { state: form.get("state"), type: form.get("type").trim(),
      agent: form.get("agent").trim() };
    loaders.tasks();
  });

  function taskUpdate(data) {
    countEnded(data);
    let known = state.tasks.get(data.task_id);
    if (!known && state.total !== undefined && matches(data)) state.total += 1;
    known = known || { id: data.task_id, attempts: 0, created_ms: data.time_ms };
    const row = Object.assign({}, known, {
      state: data.state, type: data.type || known.type, updated_ms: data.time_ms,
      agent: data.agent || known.agent, attempts: data.attempt ?? known.attempts,
    });
    if (data.error) row.error = data.error;
    if (data.state !== "pending") delete row.wait;
    state.tasks.set(data.task_id, row);
    redrawTasks();
    if (data.state === "pending" && !row.wait) reloadTasksSoon();  // why it waits: the API's
    if (state.task === data.task_id) chooseTask(data.task_id);
  }

  async function chooseTask(id) {
    state.task = id;
    for (const tr of document.querySelectorAll("#tasks tr")) {
      tr.classList.toggle("chosen", tr.dataset.task === id);
    }
    const t = await op("task_status", { task_id: id }).catch(failed("task " + id));
    if (t) drawTask(t);
  }

  function drawTask(t) {
    document.getElementById("task-detail").replaceChildren(...MacpTask.detail(t, when));
  }

  // -- alerts ------------------------------------------------------------------------------------

  function condition(a) {
    return a.metric + " " + a.op + " " + a.threshold;
  }

  function drawAlerts() {
    const { active, recent } = state.alerts;
    document.getElementById("alert-count").textContent = active.length || "";
    document.querySelector("#alerts-active tbody").replaceChildren(...active.map((a) =>
      h("tr", { class: "firing" }, h("td", {}, a.rule || a.name), h("td", {}, a.metric),
        h("td", {}, a.value ?? ""), h("td", {}, condition(a)))));
    document.querySelector("#alerts-recent tbody").replaceChildren(...recent.map((a) =>
      h("tr", { class: a.state }, h("td", {}, when(a.time_ms || a.ts)), h("td", {}, a.rule),
        h("td", {}, a.state), h("td", {}, a.metric), h("td", {}, a.value ?? ""),
        h("td", {}, condition(a)))));
  }

  async function loadAlerts() {
    const answer = await api("/alerts");
    state.alerts = { active: answer.active, recent: answer.recent };
    drawAlerts();
  }
  loaders.alerts = () => loadAlerts().catch(failed("alerts"));

  function alertChanged(a) {
    state.alerts.recent = [a, ...state.alerts.recent].slice(0, 200);
    const others = state.alerts.active.filter((x) => (x.rule || x.name) !== a.rule);
    state.alerts.active = a.state === "firing" ? [a, ...others] : others;
    drawAlerts();
  }

  // -- the WebSocket -----------------------------------------------------------------------------

  const HANDLERS = {
    agent_update: agentChanged, task_update: taskUpdate, pipeline_progress: pipelineProgress,
    alert: alertChanged,
    authenticated: () => {
      state.backoff = 500;
      const s = document.getElementById("ws-state");
      s.textContent = "live";
      s.className = "ws-up";
    },
    error: (data) => notice("events: " + data.message, true),
  };

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/ws");
    state.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth",
      topics: ["task_update", "pipeline_progress", "agent_update", "alert"] }));
    ws.onmessage = (m) => {
      const event = JSON.parse(m.data);
      const handle = HANDLERS[event.type];
      if (handle) handle(event.data || {});
    };
    ws.onclose = (c) => {
      const s = document.getElementById("ws-state");
      s.textContent = "reconnecting" + (c.reason ? ": " + c.reason : "");
      s.className = "ws-down";
      if (c.code === 4401 || c.code === 4403) {  // a refused credential: sign in again
        if (document.body.dataset.auth === "true") location.assign("/login");
        return;
      }
      setTimeout(() => { connect(); loadTopology().catch(failed("agents")); }, state.backoff);
      state.backoff = Math.min(state.backoff * 2, 10000);
    };
  }

  // -- start -------------------------------------------------------------------------------------

  loadTopology().then(() => { state.ready = true; }, failed("topology"));
  for (const view of ["alerts", "tasks", "workflows", "metrics"]) loaders[view]();
  connect();
  setInterval(() => { if (!document.hidden) loaders.metrics(); }, METRICS_EVERY_MS);
})();
