/* Line charts in SVG, drawn by hand: window.MacpCharts.chart(title, lines, unit, scale)
   returns a figure element; lines are [{name, points: [[time_ms, value], ...]}]; scale
   {from, to} (ms) is the time shown, {max} the top of the value axis (default: the data's). */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const W = 320, H = 150, L = 44, B = 20, T = 8, RIGHT = 8;

  function svg(tag, attrs) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  function fmt(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1000) return (v / 1000).toFixed(1) + "k";
    if (a >= 10) return v.toFixed(0);
    if (a >= 1) return v.toFixed(1);
    return v.toFixed(2);
  }

  function chart(title, lines, unit, scale) {
    scale = scale || {};
    const fig = document.createElement("figure");
    fig.className = "chart";
    const cap = document.createElement("figcaption");
    cap.textContent = title + (unit ? " (" + unit + ")" : "");
    fig.appendChild(cap);
    const all = lines.flatMap((l) => l.points);
    const root = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H });
    if (all.length) {
      const t0 = scale.from ?? Math.min(...all.map((p) => p[0]));
      const t1 = scale.to ?? Math.max(...all.map((p) => p[0]));
      const vmax = scale.max ?? Math.max(...all.map((p) => p[1]), 1e-9) * 1.1;
      const x = (t) => L + (t1 === t0 ? 0 : ((t - t0) / (t1 - t0)) * (W - L - RIGHT));
      const y = (v) => H - B - (v / vmax) * (H - B - T);
      for (const v of [0, vmax / 2, vmax]) {
        root.appendChild(svg("line", { x1: L, x2: W - RIGHT, y1: y(v), y2: y(v), class: "grid" }));
        const tick = svg("text", { x: L - 4, y: y(v) + 4, class: "tick", "text-anchor": "end" });
        tick.textContent = fmt(v);
        root.appendChild(tick);
      }
      const span = svg("text", { x: W - RIGHT, y: H - 4, class: "tick", "text-anchor": "end" });
      const seconds = Math.round((t1 - t0) / 1000);
      span.textContent = "last " + (seconds >= 120 ? Math.round(seconds / 60) + " min"
        : seconds + " s");
      root.appendChild(span);
      lines.forEach((l, i) => {
        if (!l.points.length) return;
        const d = l.points.map((p, j) => (j ? "L" : "M") + x(p[0]).toFixed(1) + " " +
          y(p[1]).toFixed(1)).join(" ");
        root.appendChild(svg("path", { d, class: "series s" + i }));
      });
    }
    fig.appendChild(root);
    if (lines.length > 1) {
      const key = document.createElement("div");
      key.className = "key";
      lines.forEach((l, i) => {
        const s = document.createElement("span");
        s.className = "s" + i;
        s.textContent = l.name;
        key.appendChild(s);
      });
      fig.appendChild(key);
    }
    return fig;
  }

  window.MacpCharts = { chart };
})();
