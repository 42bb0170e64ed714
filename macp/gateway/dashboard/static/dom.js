/* Building DOM elements: window.MacpDom.h(tag, attrs, ...children); an attribute "onX" is a
   listener, a child a node or a string (arrays of them flattened). */
(function () {
  "use strict";

  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      if (k === "class") e.className = attrs[k];
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), attrs[k]);
      else if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== false) {
        e.setAttribute(k, attrs[k] === true ? "" : attrs[k]);
      }
    }
    for (const c of children.flat(Infinity)) {
      if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  window.MacpDom = { h };
})();
