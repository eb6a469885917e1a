// The stats page's charts: polls this instance's /api/stats every second and draws its last
// minute as plain SVG. No library: the demo works offline.
//
// The requests go without cookies, so that they load no session: the page keeps updating
// while Redis is down. Through the load balancer, the page asks the instance that served it,
// on its own port (/api/stats allows that).
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var WINDOW_MS = 60 * 1000;
  var POLL_MS = 1000;
  var WIDTH = 320, HEIGHT = 120, LEFT = 34, RIGHT = 6, TOP = 8, BOTTOM = 16;

  var port = document.body.getAttribute("data-instance");
  var status = document.getElementById("stats-status");
  if (!port || !document.getElementById("charts")) {
    return;
  }
  var source = window.location.port === port ? "/api/stats"
    : window.location.protocol + "//" + window.location.hostname + ":" + port + "/api/stats";

  function perSecond(value) {
    return format(value) + "/s";
  }

  function millis(value) {
    return value === null ? "–" : format(value) + " ms";
  }

  function format(value) {
    if (value === null || value === undefined) {
      return "–";
    }
    if (value === 0) {
      return "0";
    }
    if (Math.abs(value) < 1) {
      return value.toFixed(2);
    }
    return Math.abs(value) < 10 ? value.toFixed(1) : Math.round(value).toString();
  }

  function sum(values) {
    return values.reduce(function (total, value) { return total + (value || 0); }, 0);
  }

  var CHARTS = [
    {
      id: "requests",
      unit: perSecond,
      series: [
        { key: "ok", label: "1xx–3xx", color: "#2e7d32", value: function (p) { return p.requests.ok; } },
        { key: "client_error", label: "4xx", color: "#c77700", value: function (p) { return p.requests.client_error; } },
        { key: "server_error", label: "5xx", color: "#c62828", value: function (p) { return p.requests.server_error; } }
      ],
      now: function (p) {
        return format(p.requests.ok + p.requests.client_error + p.requests.server_error) + " req/s";
      }
    },
    {
      id: "operations",
      unit: perSecond,
      series: [
        { key: "ok", label: "ok", color: "#2e7d32", value: function (p) { return p.operations.ok; } },
        { key: "not_found", label: "not found", color: "#7a8a99", value: function (p) { return p.operations.not_found; } },
        { key: "unavailable", label: "unavailable", color: "#c62828", value: function (p) { return p.operations.unavailable; } },
        { key: "too_large", label: "too large", color: "#c77700", value: function (p) { return p.operations.too_large; } },
        { key: "dropped", label: "dropped", color: "#6a1b9a", value: function (p) { return p.operations.dropped; } },
        { key: "error", label: "error", color: "#222222", value: function (p) { return p.operations.error; } }
      ],
      now: function (p) {
        var all = Object.keys(p.operations).map(function (key) { return p.operations[key]; });
        return format(sum(all)) + " ops/s";
      }
    },
    {
      id: "durations",
      unit: millis,
      series: [
        { key: "p50", label: "p50", color: "#2f5d8a", value: function (p) { return p.duration_ms.p50; } },
        { key: "p99", label: "p99", color: "#c77700", value: function (p) { return p.duration_ms.p99; } }
      ],
      now: function (p) { return "p99 " + millis(p.duration_ms.p99); }
    },
    {
      id: "reads",
      unit: perSecond,
      series: [
        { key: "from_memory", label: "from memory", color: "#2e7d32", value: function (p) { return p.reads.from_memory; } },
        { key: "from_redis", label: "from Redis", color: "#2f5d8a", value: function (p) { return p.reads.from_redis; } }
      ],
      now: function (p) { return format(p.round_trips_per_request) + " Redis round trips/request"; }
    },
    {
      id: "pool",
      unit: format,
      series: [
        { key: "in_use", label: "in use", color: "#2f5d8a", value: function (p) { return p.pool.in_use; } },
        { key: "idle", label: "idle", color: "#7a8a99", value: function (p) { return p.pool.idle; } },
        { key: "waiters", label: "waiting", color: "#c62828", value: function (p) { return p.pool.waiters; } }
      ],
      now: function (p) { return format(p.pool.in_use) + " in use"; }
    }
  ];

  function element(name, attributes, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attributes).forEach(function (key) {
      node.setAttribute(key, attributes[key]);
    });
    if (parent) {
      parent.appendChild(node);
    }
    return node;
  }

  // Builds each chart's SVG and legend once; draw() only changes them.
  CHARTS.forEach(function (chart) {
    var figure = document.getElementById("chart-" + chart.id);
    chart.svg = element("svg", {
      viewBox: "0 0 " + WIDTH + " " + HEIGHT,
      role: "img",
      "aria-label": figure.querySelector("figcaption").firstChild.textContent.trim()
    }, figure);
    chart.grid = element("g", { "class": "grid" }, chart.svg);
    chart.legend = document.createElement("ul");
    chart.legend.className = "legend";
    chart.series.forEach(function (series) {
      // Each line goes beneath the ones before it: the first (ok) is drawn on top.
      series.path = element("path", {
        "class": "line",
        stroke: series.color,
        id: "line-" + chart.id + "-" + series.key
      });
      chart.svg.insertBefore(series.path, chart.grid.nextSibling);
      var item = document.createElement("li");
      var swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = series.color;
      series.reading = document.createElement("span");
      series.reading.className = "reading";
      series.reading.id = "reading-" + chart.id + "-" + series.key;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(series.label + " "));
      item.appendChild(series.reading);
      chart.legend.appendChild(item);
    });
    figure.appendChild(chart.legend);
    chart.nowElement = document.getElementById("now-" + chart.id);
  });

  // A round top for the y axis: 1, 2 or 5 times a power of ten.
  function niceCeiling(value) {
    if (!(value > 0)) {
      return 1;
    }
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (value <= steps[i] * power) {
        return steps[i] * power;
      }
    }
    return 10 * power;
  }

  function drawGrid(chart, top) {
    while (chart.grid.firstChild) {
      chart.grid.removeChild(chart.grid.firstChild);
    }
    [0, top / 2, top].forEach(function (value) {
      var y = yOf(value, top);
      element("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: y, y2: y }, chart.grid);
      element("text", { x: LEFT - 4, y: y + 3, "text-anchor": "end" }, chart.grid)
        .textContent = format(value);
    });
    element("text", { x: LEFT, y: HEIGHT - 3, "text-anchor": "start" }, chart.grid)
      .textContent = "−60 s";
    element("text", { x: WIDTH - RIGHT, y: HEIGHT - 3, "text-anchor": "end" }, chart.grid)
      .textContent = "now";
  }

  function yOf(value, top) {
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value / top);
  }

  function xOf(t, end) {
    return LEFT + (WIDTH - LEFT - RIGHT) * (1 - (end - t) / WINDOW_MS);
  }

  function draw(points) {
    if (points.length === 0) {
      return;
    }
    var end = points[points.length - 1].t;
    var latest = points[points.length - 1];
    CHARTS.forEach(function (chart) {
      var highest = 0;
      points.forEach(function (point) {
        chart.series.forEach(function (series) {
          highest = Math.max(highest, series.value(point) || 0);
        });
      });
      var top = niceCeiling(highest);
      drawGrid(chart, top);
      chart.series.forEach(function (series) {
        // A point without a value (no operation to time) breaks the line.
        var d = "", pen = "M";
        points.forEach(function (point) {
          var value = series.value(point);
          if (value === null || value === undefined) {
            pen = "M";
            return;
          }
          d += pen + xOf(point.t, end).toFixed(1) + " " + yOf(value, top).toFixed(1) + " ";
          pen = "L";
        });
        series.path.setAttribute("d", d);
        series.reading.textContent = chart.unit(series.value(latest));
      });
      chart.nowElement.textContent = chart.now(latest);
    });
  }

  function poll() {
    fetch(source, { credentials: "omit", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (body) {
        draw(body.points);
        status.textContent = body.points.length === 0 ? "Waiting for the first second…"
          : "Updated " + new Date().toLocaleTimeString() + ".";
        status.className = "stats-status";
      })
      .catch(function (err) {
        status.textContent = "Instance :" + port + " does not answer (" + err.message + ").";
        status.className = "stats-status failing";
      })
      .then(function () {
        window.setTimeout(poll, POLL_MS);
      });
  }

  poll();
})();
