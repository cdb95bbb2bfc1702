// airssys-storage explorer: line charts of the metrics history, drawn as SVG (no library, no CDN).
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var root = document.getElementById("charts");
  if (!root) { return; }

  function el(name, attrs, text) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function clock(seconds) {
    return new Date(seconds * 1000).toTimeString().slice(0, 8);
  }

  function draw(svg, points, names) {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var w = svg.clientWidth || 600, h = svg.clientHeight || 160, pad = 34;
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.appendChild(el("line", { "class": "axis", x1: pad, y1: h - pad / 2, x2: w, y2: h - pad / 2 }));
    svg.appendChild(el("line", { "class": "axis", x1: pad, y1: 4, x2: pad, y2: h - pad / 2 }));
    if (points.length === 0) {
      svg.appendChild(el("text", { x: pad + 8, y: h / 2 }, "no samples yet"));
      return;
    }
    var max = 1;
    points.forEach(function (p) { names.forEach(function (n) { max = Math.max(max, p[n] || 0); }); });
    var t0 = points[0].t, t1 = points[points.length - 1].t, span = Math.max(t1 - t0, 1);
    svg.appendChild(el("text", { x: 2, y: 12 }, String(max)));
    svg.appendChild(el("text", { x: 2, y: h - pad / 2 }, "0"));
    svg.appendChild(el("text", { x: pad, y: h - 2 }, clock(t0)));
    svg.appendChild(el("text", { x: w - 50, y: h - 2 }, clock(t1)));
    names.forEach(function (name, i) {
      var d = points.map(function (p, j) {
        var x = pad + (points.length === 1 ? 0 : (p.t - t0) / span) * (w - pad - 4);
        var y = (h - pad / 2) - ((p[name] || 0) / max) * (h - pad / 2 - 8);
        return (j === 0 ? "M" : "L") + x.toFixed(1) + " " + y.toFixed(1);
      }).join(" ");
      svg.appendChild(el("path", { "class": "s" + i, d: d }));
      svg.appendChild(el("text", { x: w - 110, y: 12 + 13 * i, "class": "legend l" + i }, name.replace("_", " ")));
    });
  }

  function refresh() {
    fetch(root.getAttribute("data-source"), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        root.setAttribute("data-available", String(data.available));
        root.querySelectorAll("svg.chart").forEach(function (svg) {
          draw(svg, data.points || [], svg.getAttribute("data-series").split(","));
        });
      })
      .catch(function () { root.setAttribute("data-available", "error"); });
  }

  refresh();
  var interval = parseFloat(root.getAttribute("data-interval")) || 5;
  window.setInterval(refresh, Math.max(interval, 1) * 1000);
})();
