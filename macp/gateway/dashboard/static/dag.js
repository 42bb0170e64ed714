/* A workflow run's DAG in SVG: each step a box in the column of its depth (the longest chain
   of depends_on before it), an edge from each dependency, coloured by the step's state, and
   the steps that wait listed with why. window.MacpDag.draw(run) returns the elements. */
(function () {
  "use strict";
  const h = MacpDom.h;

  function draw(run) {
    const steps = run.steps || {};
    const ids = Object.keys(steps);
    const depth = {};
    const depthOf = (id, seen) => {
      if (depth[id] !== undefined) return depth[id];
      if (seen.has(id)) return 0;
      seen.add(id);
      const deps = (steps[id].depends_on || []).filter((d) => steps[d]);
      depth[id] = deps.length ? 1 + Math.max(...deps.map((d) => depthOf(d, seen))) : 0;
      return depth[id];
    };
    ids.forEach((id) => depthOf(id, new Set()));
    const columns = [];
    ids.forEach((id) => (columns[depth[id]] = columns[depth[id]] || []).push(id));
    const NS = "http://www.w3.org/2000/svg";
    const BW = 150, BH = 34, GX = 60, GY = 18;
    const at = {};
    columns.forEach((col, c) => col.forEach((id, r) => {
      at[id] = [20 + c * (BW + GX), 20 + r * (BH + GY)];
    }));
    const height = 40 + Math.max(1, ...columns.map((c) => c.length)) * (BH + GY);
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("width", 40 + columns.length * (BW + GX));
    svg.setAttribute("height", height);
    const add = (parent, tag, attrs, text) => {
      const e = document.createElementNS(NS, tag);
      for (const k in attrs) e.setAttribute(k, attrs[k]);
      if (text !== undefined) e.textContent = text;
      parent.appendChild(e);
      return e;
    };
    for (const id of ids) {
      for (const d of steps[id].depends_on || []) {
        if (!at[d]) continue;
        add(svg, "line", { x1: at[d][0] + BW, y1: at[d][1] + BH / 2, x2: at[id][0],
          y2: at[id][1] + BH / 2, class: "edge" });
      }
    }
    for (const id of ids) {
      const g = add(svg, "g", { class: "step state-" + steps[id].state, "data-step": id });
      if (steps[id].wait) add(g, "title", {}, id + " waits: " + steps[id].wait.reason);
      add(g, "rect", { x: at[id][0], y: at[id][1], width: BW, height: BH, rx: 5 });
      add(g, "text", { x: at[id][0] + 8, y: at[id][1] + 14 }, id);
      add(g, "text", { x: at[id][0] + 8, y: at[id][1] + 28, class: "step-state" },
        steps[id].state);
    }
    const waits = ids.filter((id) => steps[id].wait).map((id) =>
      h("li", { "data-step": id }, id + ": " + steps[id].wait.reason));
    return [h("h3", {}, run.id + " (" + run.workflow + "): " + run.state), svg,
      waits.length ? h("ul", { class: "waits" }, waits) : null].filter(Boolean);
  }

  window.MacpDag = { draw };
})();
