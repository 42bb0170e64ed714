/* The topology graph: nodes as boxes, each node's agents as dots grouped by declared agent,
   the topology's edges between them; one SVG, each dot's colour its agent's status.
   window.MacpGraph.draw(svgHost, shape, agents) draws; .status(address, status) recolours. */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const R = 7, STEP = 18, PAD = 14, HEAD = 28, MAX_PAIRS = 400, LABELS_UP_TO = 80;
  let dots = new Map();

  function svg(tag, attrs) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  function draw(host, shape, agents) {
    dots = new Map();
    const order = new Map();  // address -> [declared name, index] (keeps a group together)
    const declared = Object.keys(shape.agents || {});
    declared.forEach((name, i) => {
      (shape.agents[name].instances || []).forEach((a) => order.set(a, [name, i]));
    });
    const nodes = (shape.nodes || []).slice();
    const byNode = new Map(nodes.map((n) => [n, []]));
    for (const rec of agents.values()) {
      if (!byNode.has(rec.node)) { byNode.set(rec.node, []); nodes.push(rec.node); }
      byNode.get(rec.node).push(rec);
    }
    const rank = (r) => (order.has(r.address) ? order.get(r.address)[1] : declared.length);
    const labels = agents.size <= LABELS_UP_TO;
    const width = Math.max(host.clientWidth || 1000, 600);
    const boxes = [];
    let x = PAD, y = PAD, rowH = 0;
    for (const node of nodes) {
      const members = byNode.get(node);
      members.sort((a, b) => rank(a) - rank(b) || (a.address < b.address ? -1 : 1));
      const cells = labels ? columns(members, rank) : grid(members);
      const w = Math.max(140, Math.max(1, ...cells.map((c) => c[0] + 1)) * (labels ? 120 : STEP)
        + 2 * PAD);
      const h = HEAD + Math.max(1, ...cells.map((c) => c[1] + 1)) * (labels ? 30 : STEP) + PAD;
      if (x + w > width && x > PAD) { x = PAD; y += rowH + PAD * 2; rowH = 0; }
      boxes.push({ node, x, y, w, h, members, cells });
      x += w + PAD * 3; rowH = Math.max(rowH, h);
    }
    const root = svg("svg", { width, height: y + rowH + PAD, id: "graph-svg" });
    const boxLayer = svg("g", { class: "boxes" });
    const edgeLayer = svg("g", { class: "edges" });
    const dotLayer = svg("g", { class: "dots" });
    root.append(boxLayer, edgeLayer, dotLayer);
    const at = new Map();
    for (const b of boxes) {
      const g = svg("g", { class: "node", "data-node": b.node });
      g.appendChild(svg("rect", { x: b.x, y: b.y, width: b.w, height: b.h, rx: 6 }));
      const title = svg("text", { x: b.x + 8, y: b.y + 17, class: "node-name" });
      title.textContent = b.node + (b.node === shape.head ? " (head)" : "") +
        " \u00b7 " + b.members.length + (b.members.length === 1 ? " agent" : " agents");
      g.appendChild(title);
      boxLayer.appendChild(g);
      b.members.forEach((rec, i) => {
        const [col, row] = b.cells[i];
        const cx = b.x + PAD + col * (labels ? 120 : STEP) + R;
        const cy = b.y + HEAD + row * (labels ? 30 : STEP) + R + 2;
        at.set(rec.address, [cx, cy]);
        const c = svg("circle", { cx, cy, r: R, class: "agent st-" + rec.status,
          "data-address": rec.address, "data-status": rec.status });
        const t = svg("title", {});
        t.textContent = rec.address + ": " + rec.status;
        c.appendChild(t);
        dotLayer.appendChild(c);
        dots.set(rec.address, c);
        if (labels) {
          const l = svg("text", { x: cx + R + 4, y: cy + 4, class: "agent-name" });
          l.textContent = rec.name || rec.address.split("@")[0];
          dotLayer.appendChild(l);
        }
      });
    }
    for (const [from, to] of shape.edges || []) {
      const a = ((shape.agents[from] || {}).instances || []).filter((i) => at.has(i));
      const b = ((shape.agents[to] || {}).instances || []).filter((i) => at.has(i));
      if (a.length * b.length <= MAX_PAIRS) {
        for (const p of a) for (const q of b) line(edgeLayer, at.get(p), at.get(q), "edge");
      } else if (a.length && b.length) {
        line(edgeLayer, centre(a.map((i) => at.get(i))), centre(b.map((i) => at.get(i))),
          "edge bundle");
      }
    }
    host.replaceChildren(root);
  }

  /* [column, row] of each agent: a column per declared agent, its instances down it. */
  function columns(members, rank) {
    const cols = [], rows = [];
    let last = null, col = -1, row = 0;
    for (const rec of members) {
      const r = rank(rec);
      if (r !== last) { col += 1; row = 0; last = r; }
      cols.push(col); rows.push(row++);
    }
    return cols.map((c, i) => [c, rows[i]]);
  }

  /* [column, row] of each agent in a square-ish grid (many agents, no labels). */
  function grid(members) {
    const perRow = Math.max(4, Math.ceil(Math.sqrt(members.length * 2)));
    return members.map((_, i) => [i % perRow, Math.floor(i / perRow)]);
  }

  function centre(points) {
    const n = points.length;
    return [points.reduce((s, p) => s + p[0], 0) / n, points.reduce((s, p) => s + p[1], 0) / n];
  }

  /* An edge from p to q, bowed downwards so that it passes under the dots of its row. */
  function line(layer, p, q, cls) {
    const bow = 12 + 0.12 * Math.hypot(q[0] - p[0], q[1] - p[1]);
    const mx = (p[0] + q[0]) / 2, my = Math.max(p[1], q[1]) + bow;
    layer.appendChild(svg("path", { d: "M" + p[0] + " " + p[1] + " Q" + mx + " " + my + " " +
      q[0] + " " + q[1], class: cls, "data-from": p.join(","), "data-to": q.join(",") }));
  }

  /* Recolour one agent's dot; false if it is not drawn (the caller redraws). */
  function status(address, value) {
    const c = dots.get(address);
    if (!c) return false;
    c.setAttribute("class", "agent st-" + value);
    c.setAttribute("data-status", value);
    c.firstChild.textContent = address + ": " + value;
    return true;
  }

  window.MacpGraph = { draw, status };
})();
