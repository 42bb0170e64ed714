/* A task's detail: its fields, each attempt (agent, node, outcome, times, error), its error or
   result. window.MacpTask.detail(status, when) returns the elements; ``when`` formats a time. */
(function () {
  "use strict";
  const h = MacpDom.h;

  function detail(t, when) {
    const fields = [["state", t.state], ["type", t.type], ["agent", t.agent],
      ["attempts", t.attempts], ["progress", t.progress !== undefined && t.progress !== null
        ? Math.round(t.progress * 100) + "%" + (t.progress_message ? " " +
        t.progress_message : "") : ""],
      ["waited", t.wait_ms !== undefined ? t.wait_ms + " ms" : ""],
      ["ran", t.run_ms !== undefined ? t.run_ms + " ms" : ""],
      ["created", when(t.created_ms)], ["finished", when(t.finished_ms)],
      ["why waiting", t.wait ? t.wait.reason : t.wait_reason]];
    const list = h("dl", {}, fields.filter((f) => f[1] !== undefined && f[1] !== null &&
      f[1] !== "").map((f) => [h("dt", {}, f[0]), h("dd", {}, String(f[1]))]));
    const parts = [h("h3", {}, "task " + t.id), list];
    if (t.attempt_history && t.attempt_history.length) {
      parts.push(h("table", { class: "grid attempts" },
        h("thead", {}, h("tr", {}, ["#", "agent", "node", "outcome", "started", "ended",
          "error"].map((c) => h("th", {}, c)))),
        h("tbody", {}, t.attempt_history.map((a) => h("tr", {},
          h("td", {}, a.attempt), h("td", {}, a.agent || ""), h("td", {}, a.node || ""),
          h("td", { class: "state-" + a.outcome }, a.outcome), h("td", {}, when(a.started_ms)),
          h("td", {}, when(a.ended_ms)), h("td", {}, a.error ? a.error.message || "" : ""))))));
    }
    if (t.error) parts.push(h("h4", {}, "error"), h("pre", { class: "error" },
      JSON.stringify(t.error, null, 2)));
    if (t.result !== undefined && t.result !== null) {
      parts.push(h("h4", {}, "result"), h("pre", { class: "result" },
        JSON.stringify(t.result, null, 2)));
    }
    return parts;
  }

  window.MacpTask = { detail };
})();
